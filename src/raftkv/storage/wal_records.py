"""The write-ahead log's record format: framing, record types, encoding and validation.

A segment file is a sequence of records, each framed as (little-endian)::

    offset 0  u32  crc      zlib.crc32 (CRC-32/ISO-HDLC) of bytes 4 .. end of the record
    offset 4  u32  length   payload length in bytes
    offset 8  u8   type     a RecordType
    offset 9  ...  payload  `length` bytes, laid out per type:

    SEGMENT_HEADER  8s magic b"RAFTKVWL", u32 format version, i64 segment number,
                    i64 size of the previous segment in bytes (0 for the first),
                    i64 snapshot index, i64 snapshot term, i64 last index
                    (the log's state when the segment was started; always the first record)
    ENTRY           i64 term, i64 index, u8 kind, then the entry's data (the rest)
    HARD_STATE      i64 term, u8 has_vote, i64 voted_for, i64 commit
    TRUNCATE        i64 index       entries at index and after are discarded
    COMPACT         i64 index, i64 term   entries up to index are discarded (snapshot taken)
    RESET           i64 index, i64 term   every entry is discarded, the log restarts after it

The checksum covers the length and type, so a damaged length cannot pass for a short record.
zlib.crc32 is used rather than CRC-32C because the standard library offers no CRC-32C and
zlib's runs in C; both detect every burst error up to 32 bits.
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum

from raftkv.core.messages import Entry, HardState

RECORD_HEADER = struct.Struct("<IIB")  # crc, payload length, type
RECORD_HEADER_BYTES = RECORD_HEADER.size
CHECKSUM_BYTES = 4  # the crc field, the only bytes the checksum does not cover
# Larger payloads are refused on write and taken as damage on read: a random length field
# then almost never looks plausible, which keeps the tail scan of recovery fast.
RECORD_PAYLOAD_BYTES_MAX = 128 << 20

SEGMENT_MAGIC = b"RAFTKVWL"
WAL_FORMAT_VERSION = 1


class RecordType(IntEnum):
    SEGMENT_HEADER = 1
    ENTRY = 2
    HARD_STATE = 3
    TRUNCATE = 4
    COMPACT = 5
    RESET = 6


RECORD_TYPES = frozenset(int(record_type) for record_type in RecordType)

# An ENTRY record's length, type and fixed fields: what the crc covers before the data,
# packed in one call on the hot path.
ENTRY_CHECKED_PREFIX = struct.Struct("<IBqqB")  # length, type, term, index, kind
ENTRY_FIELDS = struct.Struct("<qqB")  # term, index, kind
ENTRY_FIELDS_BYTES = ENTRY_FIELDS.size
CRC_FIELD = struct.Struct("<I")

SEGMENT_HEADER_FIELDS = struct.Struct("<8sIqqqqq")
HARD_STATE_FIELDS = struct.Struct("<qBqq")
TRUNCATE_FIELDS = struct.Struct("<q")
POINT_FIELDS = struct.Struct("<qq")  # (index, term) of COMPACT and RESET


class RecordDamage(Exception):
    """A record that does not parse or whose checksum fails; `offset` is where it starts."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


def encode_record(record_type: RecordType, payload: bytes) -> bytes:
    if len(payload) > RECORD_PAYLOAD_BYTES_MAX:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds the limit")
    checked = RECORD_HEADER.pack(0, len(payload), record_type)[CHECKSUM_BYTES:]
    checksum = zlib.crc32(payload, zlib.crc32(checked))
    return CRC_FIELD.pack(checksum) + checked + payload


def encode_entry(entry: Entry) -> bytes:
    """One ENTRY record (the batch path in file_log inlines the same steps)."""
    data = entry.data
    length = ENTRY_FIELDS_BYTES + len(data)
    if length > RECORD_PAYLOAD_BYTES_MAX:
        raise ValueError(f"entry {entry.index} of {len(data)} bytes exceeds the record limit")
    checked = ENTRY_CHECKED_PREFIX.pack(
        length, RecordType.ENTRY, entry.term, entry.index, entry.kind
    )
    return CRC_FIELD.pack(zlib.crc32(data, zlib.crc32(checked))) + checked + data


def encode_segment_header(
    segment_number: int,
    previous_segment_bytes: int,
    snapshot_index: int,
    snapshot_term: int,
    last_index: int,
) -> bytes:
    payload = SEGMENT_HEADER_FIELDS.pack(
        SEGMENT_MAGIC,
        WAL_FORMAT_VERSION,
        segment_number,
        previous_segment_bytes,
        snapshot_index,
        snapshot_term,
        last_index,
    )
    return encode_record(RecordType.SEGMENT_HEADER, payload)


def encode_hard_state(hard_state: HardState) -> bytes:
    voted_for = hard_state.voted_for
    payload = HARD_STATE_FIELDS.pack(
        hard_state.term,
        voted_for is not None,
        voted_for if voted_for is not None else 0,
        hard_state.commit,
    )
    return encode_record(RecordType.HARD_STATE, payload)


def decode_hard_state(payload: memoryview) -> HardState:
    term, has_vote, voted_for, commit = HARD_STATE_FIELDS.unpack(payload)
    return HardState(term=term, voted_for=voted_for if has_vote else None, commit=commit)


def encode_truncate(index: int) -> bytes:
    return encode_record(RecordType.TRUNCATE, TRUNCATE_FIELDS.pack(index))


def encode_point(record_type: RecordType, index: int, term: int) -> bytes:
    return encode_record(record_type, POINT_FIELDS.pack(index, term))


def parse_record(view: memoryview, offset: int) -> tuple[int, int]:
    """Validate the record at `offset`: its (type, end offset), or raise RecordDamage."""
    available = len(view) - offset
    if available < RECORD_HEADER_BYTES:
        raise RecordDamage(
            f"short record header ({available} of {RECORD_HEADER_BYTES} bytes)", offset
        )
    checksum, length, record_type = RECORD_HEADER.unpack_from(view, offset)
    if length > RECORD_PAYLOAD_BYTES_MAX:
        raise RecordDamage(f"record length {length} out of range", offset)
    end = offset + RECORD_HEADER_BYTES + length
    if end > len(view):
        raise RecordDamage(
            f"short record payload ({available} bytes left, {length} needed)", offset
        )
    if zlib.crc32(view[offset + CHECKSUM_BYTES : end]) != checksum:
        raise RecordDamage("record checksum mismatch", offset)
    if record_type not in RECORD_TYPES:
        raise RecordDamage(f"unknown record type {record_type}", offset)
    return record_type, end


def records_end(data: bytes | bytearray) -> int:
    """Where the records of an undamaged segment end: at its end, or where the zeros of its
    preallocated tail begin (no record's header is all zeros). For tools and tests."""
    offset = 0
    while offset < len(data) and data[offset : offset + RECORD_HEADER_BYTES].strip(b"\x00"):
        _checksum, length, _type = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER_BYTES + length
    return offset


def find_valid_record(view: memoryview, start: int) -> int | None:
    """The first offset at or after `start` where a valid record begins, or None.

    Recovery asks this after a damaged record: valid data beyond it means the damage is
    not a torn tail but corruption of records that were already durable.
    """
    size = len(view)
    type_offset = RECORD_HEADER_BYTES - 1
    last_candidate = size - RECORD_HEADER_BYTES
    # A tail of zeros (a file system's zero-filled blocks after a crash) holds no record.
    if start > last_candidate or not view[start:].tobytes().strip(b"\x00"):
        return None
    for offset in range(start, last_candidate + 1):
        # Cheap filters first: most offsets fail on the type byte or the length.
        if view[offset + type_offset] not in RECORD_TYPES:
            continue
        try:
            parse_record(view, offset)
        except RecordDamage:
            continue
        return offset
    return None


def decode_entry(view: memoryview, offset: int, end: int) -> Entry:
    """The entry in the ENTRY record spanning [offset, end) of `view` (already validated)."""
    fields_start = offset + RECORD_HEADER_BYTES
    term, index, kind = ENTRY_FIELDS.unpack_from(view, fields_start)
    return Entry(
        term=term, index=index, kind=kind, data=bytes(view[fields_start + ENTRY_FIELDS_BYTES : end])
    )
