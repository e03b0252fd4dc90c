"""WAL records and recovery (storage/wal_records.py, storage/wal_recovery.py): a damaged
segment — bytes flipped, cut, extended or spliced, or a record rewritten with a valid
checksum around impossible fields (negative or huge indexes and terms, wrong sizes) — makes
`recover` return or raise `StorageError` (`Corruption` for damage), never anything else;
record parsing raises only `RecordDamage`; undamaged logs recover what was written."""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass

from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.core.messages import Entry, HardState
from raftkv.errors import StorageError
from raftkv.storage.filesystem import OS_FILE_SYSTEM
from raftkv.storage.wal_records import (
    HARD_STATE_FIELDS,
    POINT_FIELDS,
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_FIELDS,
    SEGMENT_MAGIC,
    TRUNCATE_FIELDS,
    WAL_FORMAT_VERSION,
    RecordDamage,
    RecordType,
    decode_entry,
    decode_hard_state,
    encode_entry,
    encode_hard_state,
    encode_point,
    encode_record,
    encode_segment_header,
    encode_truncate,
    find_valid_record,
    parse_record,
)
from raftkv.storage.wal_recovery import looks_torn, recover, segment_file_name

from .fuzzing import EDGE_INTEGERS, fuzz, mutated, raises_only

# Integers a rewritten record may carry. Counts between 2**20 and 2**40 are left out: a
# first header announcing that many entries of deleted segments is believed (the index
# then holds them, 24 bytes each, as it would have in memory before the restart), and
# allocating gigabytes is no test for a shared CI machine. Larger ones fail at once.
wal_integers = st.sampled_from([i for i in EDGE_INTEGERS if not 2**20 < i < 2**40]) | st.integers(
    min_value=-(2**20), max_value=2**20
)


@dataclass(frozen=True)
class Wal:
    segments: list[bytes]
    entries: list[Entry]
    hard_state: HardState


@st.composite
def wals(draw: st.DrawFn) -> Wal:
    count = draw(st.integers(min_value=0, max_value=8))
    entries = [
        Entry(
            term=1 + n // 3,
            index=n + 1,
            kind=draw(st.integers(0, 1)),
            data=draw(st.binary(max_size=12)),
        )
        for n in range(count)
    ]
    hard_state = HardState(
        term=entries[-1].term if entries else 0,
        voted_for=draw(st.none() | st.integers(1, 5)),
        commit=draw(st.integers(0, count)),
    )
    split = draw(st.integers(min_value=0, max_value=count))
    first = encode_segment_header(1, 0, 0, 0, 0) + encode_hard_state(hard_state)
    first += b"".join(encode_entry(entry) for entry in entries[:split])
    segments = [first]
    if draw(st.booleans()):
        second = encode_segment_header(2, len(first), 0, 0, split) + encode_hard_state(hard_state)
        second += b"".join(encode_entry(entry) for entry in entries[split:])
        segments.append(second)
    else:
        segments[0] += b"".join(encode_entry(entry) for entry in entries[split:])
    return Wal(segments, entries, hard_state)


def _payloads(draw: st.DrawFn) -> bytes:
    """A payload for a rewritten record: one of the fixed layouts with any integers."""
    layout = draw(st.sampled_from(["header", "hard", "truncate", "point", "entry", "raw"]))
    n = wal_integers.map(lambda i: i % 2**64 - 2**64 if i >= 2**63 else i)
    if layout == "header":
        return SEGMENT_HEADER_FIELDS.pack(
            draw(st.sampled_from([SEGMENT_MAGIC, b"RAFTKVXX"])),
            draw(st.sampled_from([WAL_FORMAT_VERSION, 0, 2**32 - 1])),
            *(draw(n) for _ in range(5)),
        )
    if layout == "hard":
        return HARD_STATE_FIELDS.pack(draw(n), draw(st.integers(0, 255)), draw(n), draw(n))
    if layout == "truncate":
        return TRUNCATE_FIELDS.pack(draw(n))
    if layout == "point":
        return POINT_FIELDS.pack(draw(n), draw(n))
    if layout == "entry":
        return struct.pack("<qqB", draw(n), draw(n), draw(st.integers(0, 255))) + draw(
            st.binary(max_size=8)
        )
    return draw(st.binary(max_size=60))


@st.composite
def damaged_wals(draw: st.DrawFn) -> list[bytes]:
    wal = draw(wals())
    segments = list(wal.segments)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        which = draw(st.integers(0, len(segments) - 1))
        how = draw(st.sampled_from(["bytes", "record", "append", "drop"]))
        if how == "bytes":
            segments[which] = draw(mutated(st.just(segments[which])))
        elif how in ("record", "append"):
            record = encode_record(
                RecordType(draw(st.integers(1, 6))) if draw(st.booleans()) else RecordType.ENTRY,
                _payloads(draw),
            )
            if how == "append":
                segments[which] += record
            else:  # in place of the record at a record boundary near a drawn offset
                offsets = _record_offsets(segments[which])
                if offsets:
                    start, end = offsets[draw(st.integers(0, len(offsets) - 1))]
                    segments[which] = segments[which][:start] + record + segments[which][end:]
        elif len(segments) > 1:
            del segments[which]
    return segments


def _record_offsets(segment: bytes) -> list[tuple[int, int]]:
    spans, offset = [], 0
    while offset + RECORD_HEADER_BYTES <= len(segment):
        length = struct.unpack_from("<I", segment, offset + 4)[0]
        end = offset + RECORD_HEADER_BYTES + length
        if end > len(segment):
            break
        spans.append((offset, end))
        offset = end
    return spans


def _recover(segments: list[bytes], first_number: int = 1) -> tuple[int, HardState] | None:
    with tempfile.TemporaryDirectory() as directory:
        for number, segment in enumerate(segments, start=first_number):
            with open(os.path.join(directory, segment_file_name(number)), "wb") as file:
                file.write(segment)
        recovered = raises_only(recover, StorageError, directory, OS_FILE_SYSTEM)
        if recovered is None:
            return None
        return recovered.index.last_index, recovered.hard_state


@fuzz
@given(wal=wals())
def test_an_undamaged_wal_recovers_what_was_written(wal: Wal) -> None:
    assert _recover(wal.segments) == (len(wal.entries), wal.hard_state)
    whole = b"".join(wal.segments)
    for entry in wal.entries:
        encoded = encode_entry(entry)
        at = whole.index(encoded)
        _type, end = parse_record(memoryview(whole), at)
        assert decode_entry(memoryview(whole), at, end) == entry


_HUGE_FIRST_HEADER = [
    encode_record(
        RecordType.SEGMENT_HEADER,
        SEGMENT_HEADER_FIELDS.pack(SEGMENT_MAGIC, WAL_FORMAT_VERSION, 1, 0, 0, 0, 2**62),
    )
    + encode_hard_state(HardState())
]
_NEGATIVE_TRUNCATE = [
    encode_segment_header(1, 0, 0, 0, 0)
    + encode_hard_state(HardState())
    + encode_entry(Entry(1, 1))
    + encode_truncate(-(2**63))
]


@fuzz
@given(segments=damaged_wals(), first_number=st.sampled_from([1, 1, 1, 2, 0]))
@example(segments=_HUGE_FIRST_HEADER, first_number=1)
@example(segments=_NEGATIVE_TRUNCATE, first_number=1)
@example(
    segments=[encode_segment_header(1, 0, -5, 3, -9) + encode_hard_state(HardState())],
    first_number=1,
)
@example(
    segments=[
        encode_segment_header(1, 0, 0, 0, 0)
        + encode_hard_state(HardState())
        + encode_point(RecordType.COMPACT, 2**63 - 1, -1)
    ],
    first_number=1,
)
def test_a_damaged_wal_recovers_or_raises_storage_error(
    segments: list[bytes], first_number: int
) -> None:
    _recover(segments, first_number)


@fuzz
@given(
    data=st.binary(max_size=300) | mutated(wals().map(lambda wal: b"".join(wal.segments))),
    start=st.integers(0, 400),
)
def test_record_parsing_raises_only_record_damage(data: bytes, start: int) -> None:
    view = memoryview(data)
    offset = start % (len(data) + 1)
    raises_only(parse_record, RecordDamage, view, offset)
    found = find_valid_record(view, offset)
    if found is not None:
        parse_record(view, found)
    if offset < len(data):
        assert looks_torn(view, offset) in (True, False)


@fuzz
@given(
    hard_state=st.builds(
        HardState,
        term=st.integers(0, 2**62 - 1),
        voted_for=st.none() | st.integers(1, 2**31 - 1),
        commit=st.integers(0, 2**62 - 1),
    )
)
def test_hard_states_round_trip(hard_state: HardState) -> None:
    record = encode_hard_state(hard_state)
    assert decode_hard_state(memoryview(record)[RECORD_HEADER_BYTES:]) == hard_state
