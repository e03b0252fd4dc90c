"""Recovery of the WAL on open: torn tails are cut, damage before the tail is Corruption."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from storage_helpers import assert_synced_or_rewritten, make_entries, unsynced_write

from raftkv.core.messages import Entry, HardState
from raftkv.errors import Corruption
from raftkv.storage.file_log import FileStorage
from raftkv.storage.wal_records import (
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RecordType,
    encode_entry,
    encode_hard_state,
    encode_record,
    records_end,
)
from raftkv.storage.wal_recovery import segment_file_name

SEGMENT_BYTES = 600
UNSYNCED_CUT_STEP_BYTES = 5


def build_wal(directory: Path, batches: int = 10, per_batch: int = 5) -> list[Entry]:
    """A WAL over several segments, every batch synced; returns its entries. Without the
    preallocated tail (as older versions wrote it): each file ends with its last record, so
    a torn write is bytes after it. test_wal_preallocated.py has the same cases in place."""
    entries: list[Entry] = []
    with FileStorage(directory, segment_bytes_max=SEGMENT_BYTES, preallocate_bytes=0) as storage:
        for batch in range(batches):
            new = make_entries(len(entries) + 1, per_batch, term=1)
            storage.append(new)
            storage.set_hard_state(HardState(1, 1, len(entries) + per_batch - batch))
            storage.sync()
            entries += new
    return entries


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def record_offsets(path: Path) -> list[int]:
    """Start offsets of the records of an undamaged segment."""
    data = path.read_bytes()
    offsets, offset = [], 0
    end = records_end(data)
    while offset < end:
        offsets.append(offset)
        _checksum, length, _type = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER_BYTES + length
    return offsets


def reopen_entries(directory: Path) -> list[Entry]:
    with FileStorage(directory, segment_bytes_max=SEGMENT_BYTES) as storage:
        return storage.entries(storage.first_index(), storage.last_index() + 1)


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "tail",
    [
        b"\x01\x02\x03\x04\x05",  # a short header
        RECORD_HEADER.pack(0, 100, RecordType.ENTRY) + b"only ten b",  # a short payload
        RECORD_HEADER.pack(0, 100, RecordType.ENTRY) + b"\x00" * 4096,  # blocks of zeros
    ],
    ids=["short-header", "short-payload", "zeros"],
)
def test_a_torn_tail_is_cut_and_logged(
    tmp_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    entries = build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    size = last_segment.stat().st_size
    with last_segment.open("ab") as file:
        file.write(tail)
    with caplog.at_level(logging.WARNING, logger="raftkv.storage"):
        assert reopen_entries(tmp_path) == entries
    assert "torn tail" in caplog.text
    assert last_segment.stat().st_size == size
    # The repaired store takes new writes and keeps them.
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as storage:
        storage.append(make_entries(len(entries) + 1, 3, term=2))
        storage.sync()
    assert reopen_entries(tmp_path) == entries + make_entries(len(entries) + 1, 3, term=2)


def test_zeros_after_the_last_record_are_a_clean_end_kept_for_writes_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a preallocated tail looks like (and a file that grew whose data never landed,
    from a record boundary on): the log ends there, and the writer fills the zeros."""
    entries = build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    size = last_segment.stat().st_size
    with last_segment.open("ab") as file:
        file.write(bytes(4096))
    with caplog.at_level(logging.WARNING, logger="raftkv.storage"):
        assert reopen_entries(tmp_path) == entries
    assert caplog.text == ""
    assert last_segment.stat().st_size == size + 4096
    more = make_entries(len(entries) + 1, 3, term=2)
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES, preallocate_bytes=0) as storage:
        storage.append(more)
        storage.sync()
    assert last_segment.stat().st_size == size + 4096, "written in place, over the zeros"
    assert reopen_entries(tmp_path) == entries + more


def test_a_bit_flip_in_a_complete_last_record_is_corruption_not_a_torn_tail(
    tmp_path: Path,
) -> None:
    """A record that is all there yet fails its checksum was written whole and synced:
    cutting it as a torn write would silently drop an entry or a vote this node
    acknowledged (found by the whole-node simulator)."""
    build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    last_record = record_offsets(last_segment)[-1]
    size = last_segment.stat().st_size
    flip_bit(last_segment, size - 1)
    with pytest.raises(Corruption, match="not a torn write") as caught:
        reopen_entries(tmp_path)
    assert caught.value.offset == last_record
    assert last_segment.stat().st_size == size, "a refused WAL is left as found"


def test_a_last_record_cut_short_is_a_torn_tail(tmp_path: Path) -> None:
    entries = build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    last_record = record_offsets(last_segment)[-1]
    with open(last_segment, "r+b") as file:
        file.truncate(last_segment.stat().st_size - 3)
    recovered = reopen_entries(tmp_path)
    assert recovered == entries[: len(recovered)]
    assert last_segment.stat().st_size == last_record


def test_a_last_record_whose_data_never_landed_is_a_torn_tail(tmp_path: Path) -> None:
    """The file grew but the write's data did not reach the disk: zeros from inside the
    record to the end of the file."""
    entries = build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    last_record = record_offsets(last_segment)[-1]
    data = bytearray(last_segment.read_bytes())
    data[last_record + RECORD_HEADER_BYTES :] = bytes(len(data) - last_record - RECORD_HEADER_BYTES)
    last_segment.write_bytes(bytes(data))
    recovered = reopen_entries(tmp_path)
    assert recovered == entries[: len(recovered)]
    assert last_segment.stat().st_size == last_record


def test_a_bad_checksum_before_valid_records_is_corruption(tmp_path: Path) -> None:
    build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    damaged_record = record_offsets(last_segment)[-3]
    flip_bit(last_segment, damaged_record + RECORD_HEADER_BYTES + 3)
    with pytest.raises(Corruption) as caught:
        reopen_entries(tmp_path)
    assert caught.value.path == str(last_segment)
    assert caught.value.offset == damaged_record
    assert f"at offset {damaged_record}" in str(caught.value)


def test_a_damaged_length_before_valid_records_is_corruption(tmp_path: Path) -> None:
    build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    damaged_record = record_offsets(last_segment)[1]
    data = bytearray(last_segment.read_bytes())
    data[damaged_record + 4 : damaged_record + 8] = (10**6).to_bytes(4, "little")
    last_segment.write_bytes(bytes(data))
    with pytest.raises(Corruption) as caught:
        reopen_entries(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(last_segment), damaged_record)


def test_damage_in_an_older_segment_is_corruption_even_at_its_end(tmp_path: Path) -> None:
    build_wal(tmp_path)
    older = segment_paths(tmp_path)[0]
    size = older.stat().st_size
    os.truncate(older, size - 1)
    with pytest.raises(Corruption) as caught:
        reopen_entries(tmp_path)
    assert caught.value.path == str(older)
    assert caught.value.offset == record_offsets(older)[-1]


def test_an_older_segment_cut_at_a_record_boundary_is_corruption(tmp_path: Path) -> None:
    build_wal(tmp_path)
    paths = segment_paths(tmp_path)
    os.truncate(paths[0], record_offsets(paths[0])[-1])
    with pytest.raises(Corruption, match="does not continue the previous segment") as caught:
        reopen_entries(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(paths[1]), 0)


def test_an_impossible_index_sequence_is_corruption(tmp_path: Path) -> None:
    entries = build_wal(tmp_path)
    last_segment = segment_paths(tmp_path)[-1]
    size = last_segment.stat().st_size
    with last_segment.open("ab") as file:
        file.write(encode_entry(Entry(1, len(entries) + 5, 0, b"skips four")))
    with pytest.raises(Corruption, match="does not follow") as caught:
        reopen_entries(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(last_segment), size)


def test_a_missing_segment_in_the_middle_is_corruption(tmp_path: Path) -> None:
    build_wal(tmp_path)
    paths = segment_paths(tmp_path)
    assert len(paths) >= 3
    paths[1].unlink()
    with pytest.raises(Corruption, match="missing") as caught:
        reopen_entries(tmp_path)
    assert caught.value.path == str(paths[2])


def test_a_missing_first_segment_is_corruption(tmp_path: Path) -> None:
    build_wal(tmp_path)
    paths = segment_paths(tmp_path)
    paths[0].unlink()
    with pytest.raises(Corruption, match="missing") as caught:
        reopen_entries(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(paths[1]), 0)


def test_a_segment_under_another_name_is_corruption(tmp_path: Path) -> None:
    build_wal(tmp_path)
    paths = segment_paths(tmp_path)
    paths[1].write_bytes(paths[0].read_bytes())
    with pytest.raises(Corruption, match="names segment 1") as caught:
        reopen_entries(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(paths[1]), 0)


def test_an_empty_last_segment_from_a_crash_at_rotation_is_removed(tmp_path: Path) -> None:
    entries = build_wal(tmp_path)
    paths = segment_paths(tmp_path)
    empty = tmp_path / segment_file_name(len(paths) + 1)
    empty.touch()
    assert reopen_entries(tmp_path) == entries
    assert not empty.exists()


@pytest.mark.parametrize("first_record", ["hard-state", "entry"])
def test_a_first_record_that_is_not_a_header_is_corruption(
    tmp_path: Path, first_record: str
) -> None:
    entries = build_wal(tmp_path)
    paths = segment_paths(tmp_path)
    record = (
        encode_hard_state(HardState(1, 1, 1))
        if first_record == "hard-state"
        else encode_entry(Entry(1, len(entries) + 1, 0, b"no header before me"))
    )
    (tmp_path / segment_file_name(len(paths) + 1)).write_bytes(
        record + encode_record(RecordType.TRUNCATE, b"\0" * 8)
    )
    with pytest.raises(Corruption, match="does not start with a header"):
        reopen_entries(tmp_path)


def test_the_hard_state_outlives_the_deletion_of_its_segment(tmp_path: Path) -> None:
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as storage:
        storage.set_hard_state(HardState(4, 2, 0))
        for first in range(1, 200, 10):
            storage.append(make_entries(first, 10, term=4))
            storage.sync()
        storage.compact(200, 4)
        storage.sync()
        assert len(storage.segment_numbers) == 1
        storage.append(make_entries(201, 5, term=4))
        storage.sync()
    assert len(segment_paths(tmp_path)) == 1
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as storage:
        assert storage.hard_state() == HardState(4, 2, 0)
        assert storage.first_index() == 201
        assert storage.term(200) == 4
        assert storage.entries(201, 206) == make_entries(201, 5, term=4)


def test_reads_come_from_the_files_and_check_their_checksums(tmp_path: Path) -> None:
    entries = build_wal(tmp_path)
    storage = FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES, cache_entries_max=0)
    try:
        assert storage.entries(1, len(entries) + 1) == entries
        first_segment = segment_paths(tmp_path)[0]
        flip_bit(first_segment, record_offsets(first_segment)[3] + RECORD_HEADER_BYTES + 2)
        with pytest.raises(Corruption) as caught:
            storage.entries(1, len(entries) + 1)
        assert caught.value.path == str(first_segment)
    finally:
        storage.close()


def test_reads_of_unsynced_entries_beyond_the_cache(tmp_path: Path) -> None:
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES, cache_entries_max=2) as storage:
        storage.append(make_entries(1, 10, term=1))
        storage.sync()
        storage.append(make_entries(11, 10, term=1))  # in the write buffer, mostly not cached
        assert storage.entries(1, 21) == make_entries(1, 20, term=1)
        assert storage.entries(9, 13) == make_entries(9, 4, term=1)


def test_an_unsynced_write_cut_anywhere_never_corrupts(
    tmp_path: Path,
) -> None:
    synced = tmp_path / "synced"
    storage = FileStorage(synced, preallocate_bytes=0)
    storage.append(make_entries(1, 20, term=1))
    storage.set_hard_state(HardState(1, 1, 5))
    storage.sync()
    storage.append(make_entries(15, 16, term=2, tag="new"))
    storage.set_hard_state(HardState(2, 2, 20))
    pending, _offset = unsynced_write(storage)
    synced_segment = (synced / segment_file_name(1)).read_bytes()
    # Every few bytes: each record is cut in its header, its payload and at its end.
    for cut in [*range(0, len(pending), UNSYNCED_CUT_STEP_BYTES), len(pending)]:
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        (directory / segment_file_name(1)).write_bytes(synced_segment + pending[:cut])
        with FileStorage(directory) as recovered:
            assert_synced_or_rewritten(recovered, HardState(2, 2, 20))
        shutil.rmtree(directory)


def test_a_headerless_only_segment_after_compaction_is_refused_untouched(tmp_path: Path) -> None:
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as storage:
        for first in range(1, 100, 10):
            storage.append(make_entries(first, 10, term=1))
            storage.sync()
        storage.compact(100, 1)
        storage.sync()
    (only,) = segment_paths(tmp_path)
    assert only.name != segment_file_name(1)
    os.truncate(only, 5)
    with pytest.raises(Corruption, match="no valid header"):
        reopen_entries(tmp_path)
    assert only.stat().st_size == 5
