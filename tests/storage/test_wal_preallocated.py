"""The active segment's preallocated tail of zeros: records are written over it in place, and
recovery tells its clean end from a torn write and from a flipped bit (file_log,
wal_recovery, wal_bit_flips)."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import pytest
from storage_helpers import assert_synced_or_rewritten, make_entries, unsynced_write

from raftkv.core.messages import Entry, HardState
from raftkv.errors import Corruption
from raftkv.storage.file_log import FileStorage
from raftkv.storage.simulated_disk import SimulatedFileSystem
from raftkv.storage.wal_records import RECORD_HEADER, RECORD_HEADER_BYTES, records_end
from raftkv.storage.wal_recovery import segment_file_name

STEP = 4096  # the tail's step in these tests
SEGMENT_BYTES = 2000
CUT_STEP_BYTES = 1


def open_wal(directory: Path, **options: int) -> FileStorage:
    return FileStorage(
        directory, segment_bytes_max=SEGMENT_BYTES, preallocate_bytes=STEP, **options
    )


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def last_record_offset(data: bytes) -> int:
    offset, last = 0, 0
    end = records_end(data)
    while offset < end:
        last = offset
        _checksum, length, _type = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER_BYTES + length
    return last


def build_wal(directory: Path, last: Entry | None = None) -> list[Entry]:
    """Several segments, each batch synced; `last` is appended alone at the end."""
    entries: list[Entry] = []
    with open_wal(directory) as storage:
        for _ in range(12):
            new = make_entries(len(entries) + 1, 5, term=1)
            storage.append(new)
            storage.set_hard_state(HardState(1, 1, len(entries)))
            storage.sync()
            entries += new
        if last is not None:
            storage.append([last])
            storage.sync()
            entries.append(last)
    return entries


def reopen_entries(directory: Path) -> list[Entry]:
    with open_wal(directory) as storage:
        return storage.entries(storage.first_index(), storage.last_index() + 1)


def test_the_active_segment_is_kept_ahead_and_older_ones_are_cut_to_their_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = build_wal(tmp_path)
    *older, active = segment_paths(tmp_path)
    assert older, "the WAL rotated"
    for path in older:
        data = path.read_bytes()
        assert len(data) == records_end(data), f"{path.name} kept zeros after its records"
    data = active.read_bytes()
    assert len(data) % STEP == 0 and records_end(data) < len(data)
    with caplog.at_level(logging.WARNING, logger="raftkv.storage"):
        assert reopen_entries(tmp_path) == entries
    assert caplog.text == "", "a clean end is not a torn tail"
    assert active.stat().st_size == len(data), "the tail stays for the writer"
    # The reopened store writes over the zeros, in place.
    more = make_entries(len(entries) + 1, 2, term=2)
    with open_wal(tmp_path) as storage:
        storage.append(more)
        storage.sync()
    assert active.stat().st_size == len(data)
    assert records_end(active.read_bytes()) > records_end(data)
    assert reopen_entries(tmp_path) == entries + more


def test_preallocation_off_appends(tmp_path: Path) -> None:
    with FileStorage(tmp_path, preallocate_bytes=0) as storage:
        storage.append(make_entries(1, 3, term=1))
        storage.sync()
    (path,) = segment_paths(tmp_path)
    data = path.read_bytes()
    assert len(data) == records_end(data)
    with pytest.raises(ValueError, match="preallocate_bytes"):
        FileStorage(tmp_path / "other", preallocate_bytes=-1)


def test_an_unsynced_write_torn_anywhere_in_place_never_corrupts(
    tmp_path: Path,
) -> None:
    """Every prefix of a write that never synced, landed over the zeros (the rest still
    zeros): recovery cuts it as a torn tail and keeps everything synced. Its last record
    ends in a commit of 16 (one set bit, then zeros): a cut just before that byte leaves a
    record one flipped bit away from whole, which must still read as torn."""
    synced = tmp_path / "synced"
    storage = open_wal(synced)
    storage.append(make_entries(1, 20, term=1))
    storage.set_hard_state(HardState(1, 1, 5))
    storage.sync()
    offset = records_end((synced / segment_file_name(1)).read_bytes())
    storage.append(make_entries(15, 6, term=2, tag="new"))
    storage.set_hard_state(HardState(2, 2, 16))
    pending, at = unsynced_write(storage)
    assert at == offset
    synced_segment = (synced / segment_file_name(1)).read_bytes()
    assert len(synced_segment) >= offset + len(pending), "the write fits in the tail"
    for cut in [*range(0, len(pending), CUT_STEP_BYTES), len(pending)]:
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        torn = bytearray(synced_segment)
        torn[offset : offset + cut] = pending[:cut]
        (directory / segment_file_name(1)).write_bytes(bytes(torn))
        with open_wal(directory) as recovered:
            assert_synced_or_rewritten(recovered, HardState(2, 2, 16))
        shutil.rmtree(directory)


@pytest.mark.parametrize(
    ("last", "ambiguous_flips"),
    [
        (Entry(3, 61, 0, b""), 0),  # its index, 61, then zeros: no single bit before them
        (Entry(3, 61, 0, b"a command"), 0),
        (Entry(3, 61, 0, b"x\x01\x00\x00"), 1),  # one set bit, then zeros
    ],
    ids=["empty", "data", "ends-in-one-bit"],
)
def test_a_bit_flip_in_the_last_record_before_the_tail_is_corruption(
    tmp_path: Path, last: Entry, ambiguous_flips: int
) -> None:
    """Every bit of the last record, flipped in turn. The record is followed by zeros (the
    tail) and an empty entry's own bytes end in zeros, so zeros alone no longer say torn; a
    flipped bit found before the zeros does say written whole. The one flip that cannot be
    told from a torn write clears the last set bit (the bytes after it held nothing but
    that bit, and a torn write leaves zeros there too): judged torn, as before the tail."""
    pristine = tmp_path / "pristine"
    build_wal(pristine, last)
    path = segment_paths(pristine)[-1]
    data = path.read_bytes()
    record = last_record_offset(data)
    end = records_end(data)
    refused = ambiguous = 0
    for position in range(record, end):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            directory = tmp_path / "damaged"
            shutil.copytree(pristine, directory)
            (directory / path.name).write_bytes(bytes(damaged))
            if not bytes(damaged[position:]).strip(b"\x00"):
                ambiguous += 1
                assert reopen_entries(directory)[-1].index == last.index - 1
            else:
                with pytest.raises(Corruption) as caught:
                    reopen_entries(directory)
                assert caught.value.offset == record
                assert (directory / path.name).read_bytes() == bytes(damaged), "left as found"
                refused += 1
            shutil.rmtree(directory)
    assert ambiguous == ambiguous_flips
    assert refused == (end - record) * 8 - ambiguous_flips


def test_a_bit_flip_in_the_tail_past_the_records_is_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = build_wal(tmp_path)
    path = segment_paths(tmp_path)[-1]
    data = bytearray(path.read_bytes())
    end = records_end(data)
    data[random.Random(1).randrange(end, len(data))] ^= 0x08
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="raftkv.storage"):
        assert reopen_entries(tmp_path) == entries
    assert "torn tail" in caplog.text
    assert path.stat().st_size >= end


def test_no_room_for_the_zeros_writes_the_records_alone() -> None:
    """A nearly full disk: the zeros ahead do not fit (some may have been written), the
    records do, and nothing fails."""
    filesystem = SimulatedFileSystem(random.Random(2), capacity_bytes=3000)
    entries = make_entries(1, 20, term=1)
    with FileStorage("/node/wal", filesystem=filesystem, preallocate_bytes=STEP) as storage:
        storage.append(entries)
        storage.sync()
    (path,) = [name for name in filesystem.files() if "wal-" in name]
    data = filesystem.read_bytes(path)
    assert records_end(data) < len(data) <= 3000
    with FileStorage("/node/wal", filesystem=filesystem) as storage:
        assert storage.entries(1, 21) == entries
