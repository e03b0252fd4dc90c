"""Disk faults on the simulated disk: what the storage code claims to handle, exercised.

- ENOSPC and EIO on writes and fsyncs (random, short writes included, and a full disk):
  `StorageError`, then a store that refuses every write; nothing is ever reported durable
  that a crash can take away (checked against `wal_model` after a power loss).
- EIO on reads: `StorageError` naming the file, never `Corruption`, and no harm done.
- A bit flip in a WAL segment before its last record: `Corruption` naming the segment and
  the record's offset, the WAL left as found (what `raft-node` turns into exit code 4).
- A bit flip in a snapshot: `recover()`'s rule (fallback only when the WAL holds every
  entry after the older snapshot, else `Corruption` naming the damaged file).
- A crash at any point of a snapshot save: the old snapshots or the new one, never a
  damaged file.
"""

from __future__ import annotations

import errno
import random

import pytest
from storage_helpers import make_entries, snapshot_meta
from wal_model import TrackedStorage, describe, observed

from raftkv.core.messages import Entry, HardState
from raftkv.errors import Corruption, StorageError
from raftkv.storage.file_log import FileStorage
from raftkv.storage.recovery import recover
from raftkv.storage.simulated_disk import DiskFaults, SimulatedCrash, SimulatedFileSystem
from raftkv.storage.snapshot_files import FileSnapshotStore, snapshot_file_name
from raftkv.storage.wal_records import (
    CHECKSUM_BYTES,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    records_end,
)
from raftkv.storage.wal_recovery import segment_file_name

WAL_DIRECTORY = "/node/wal"
SNAPSHOT_DIRECTORY = "/node/snapshots"
SEGMENT_BYTES = 512
SEEDS = 60


def open_storage(filesystem: SimulatedFileSystem) -> FileStorage:
    return FileStorage(
        WAL_DIRECTORY, segment_bytes_max=SEGMENT_BYTES, cache_entries_max=2, filesystem=filesystem
    )


def every_write_refused(storage: FileStorage) -> None:
    for write in [
        lambda: storage.append(make_entries(storage.last_index() + 1, 1, term=9)),
        lambda: storage.set_hard_state(HardState(9, 9, 9)),
        lambda: storage.compact(storage.last_index(), 9),
        lambda: storage.reset(1000, 9),
        storage.sync,
    ]:
        with pytest.raises(StorageError, match="failed earlier"):
            write()


# --- ENOSPC and EIO while writing ------------------------------------------------------------
def run_until_the_disk_fails(
    filesystem: SimulatedFileSystem,
    rng: random.Random,
    batches: int,
    faults: DiskFaults | None = None,
) -> tuple[TrackedStorage, StorageError | None]:
    """Open the WAL, then (with `faults` from then on) append and sync until a sync
    fails or `batches` are done."""
    tracked = TrackedStorage(open_storage(filesystem))
    if faults is not None:
        filesystem.faults = faults
    for batch in range(batches):
        first = tracked.model.last_index + 1
        tracked.append(make_entries(first, rng.randint(1, 6), term=1 + batch // 10, tag="f"))
        tracked.set_hard_state(HardState(1 + batch // 10, 1, first))
        if rng.random() < 0.1 and tracked.model.last_index > 5:
            through = tracked.model.last_index - 2
            tracked.compact(through, tracked.term_at(through))
        try:
            tracked.sync()
        except StorageError as error:
            return tracked, error
    return tracked, None


@pytest.mark.parametrize(
    "faults",
    [
        DiskFaults(write_enospc_rate=0.05),
        DiskFaults(write_eio_rate=0.05),
        DiskFaults(fsync_enospc_rate=0.05),
        DiskFaults(fsync_eio_rate=0.05, torn_write_zeros_rate=0.5),
    ],
    ids=["write-enospc", "write-eio", "fsync-enospc", "fsync-eio"],
)
def test_a_failing_disk_never_loses_what_was_acknowledged(faults: DiskFaults) -> None:
    failures = 0
    for seed in range(SEEDS):
        filesystem = SimulatedFileSystem(random.Random(seed))
        tracked, error = run_until_the_disk_fails(filesystem, random.Random(seed), 200, faults)
        if error is None:
            continue
        failures += 1
        enospc = faults.write_enospc_rate or faults.fsync_enospc_rate
        expected = "disk full (ENOSPC)" if enospc else "I/O error"
        assert expected in str(error) and WAL_DIRECTORY in str(error)
        assert tracked.storage.failed == str(error)
        every_write_refused(tracked.storage)
        # Power loss; the disk is healthy again. Everything acknowledged is there, and at
        # most a prefix of the failed sync's records (never reported durable) survived.
        filesystem.faults = DiskFaults()
        filesystem.crash()
        storage = open_storage(filesystem)
        state = observed(storage)
        assert state in tracked.candidates(), f"seed {seed}: {describe(state)}"
        storage.append(make_entries(storage.last_index() + 1, 3, term=99))
        storage.sync()
    assert failures > SEEDS // 2


def test_a_failed_fsync_is_never_retried_into_a_false_success() -> None:
    """fsync EIO drops the dirty data (Linux); a store that synced again would be told
    success for data that is gone. It refuses instead, and the crash shows why."""
    filesystem = SimulatedFileSystem(random.Random(1), DiskFaults(crash_keeps_unsynced=False))
    tracked = TrackedStorage(open_storage(filesystem))
    tracked.append(make_entries(1, 5, term=1))
    tracked.sync()
    tracked.append(make_entries(6, 5, term=1))
    filesystem.fail_next("fsync", errno.EIO, path_contains="wal-")
    with pytest.raises(StorageError, match="I/O error while writing"):
        tracked.sync()
    every_write_refused(tracked.storage)
    assert tracked.storage.entries(6, 11) == make_entries(6, 5, term=1)  # still readable
    filesystem.crash()
    assert observed(open_storage(filesystem)) == tracked.acknowledged


def test_a_full_disk_fails_the_sync_then_space_freed_lets_a_reopened_store_continue() -> None:
    filesystem = SimulatedFileSystem(random.Random(3), capacity_bytes=3000)
    tracked, error = run_until_the_disk_fails(filesystem, random.Random(3), 1000)
    assert error is not None and "disk full (ENOSPC)" in str(error)
    every_write_refused(tracked.storage)
    filesystem.crash()
    filesystem.capacity_bytes = None
    storage = open_storage(filesystem)
    assert observed(storage) in tracked.candidates()
    storage.append(make_entries(storage.last_index() + 1, 50, term=7))
    storage.sync()


def test_a_rotation_that_cannot_create_its_segment_fails_the_store() -> None:
    filesystem = SimulatedFileSystem(random.Random(4))
    tracked = TrackedStorage(open_storage(filesystem))
    filesystem.fail_next("open", errno.ENOSPC, path_contains="wal-0000000000000002")
    with pytest.raises(StorageError, match="disk full"):
        for first in range(1, 1000, 5):
            tracked.append(make_entries(first, 5, term=1))
            tracked.sync()
    every_write_refused(tracked.storage)
    filesystem.crash()
    assert observed(open_storage(filesystem)) in tracked.candidates()


# --- EIO while reading ------------------------------------------------------------------------
def test_read_errors_are_storage_errors_naming_the_file() -> None:
    filesystem = SimulatedFileSystem(random.Random(5))
    storage = open_storage(filesystem)
    entries = make_entries(1, 40, term=1)
    storage.append(entries)
    storage.sync()
    filesystem.faults = DiskFaults(read_eio_rate=1.0)
    with pytest.raises(StorageError, match=r"I/O error while reading /node/wal/wal-") as caught:
        storage.entries(1, 10)  # not in the cache: read from the file
    assert not isinstance(caught.value, Corruption)
    assert storage.entries(40, 41) == entries[39:]  # the cache needs no disk
    filesystem.faults = DiskFaults()
    assert storage.entries(1, 41) == entries  # a read error does not fail the store
    storage.close()
    filesystem.faults = DiskFaults(read_eio_rate=1.0)
    with pytest.raises(StorageError, match="I/O error while reading") as caught:
        open_storage(filesystem)
    assert not isinstance(caught.value, Corruption)


# --- bit flips in the WAL ---------------------------------------------------------------------
def record_ends(data: bytes) -> list[int]:
    """The end offset of every record of an undamaged segment."""
    ends, offset = [], 0
    end = records_end(data)
    while offset < end:
        _checksum, length, _type = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER_BYTES + length
        ends.append(offset)
    return ends


def build_wal(seed: int) -> tuple[SimulatedFileSystem, dict[int, Entry]]:
    filesystem = SimulatedFileSystem(random.Random(seed))
    rng = random.Random(seed)
    entries: dict[int, Entry] = {}
    storage = open_storage(filesystem)
    while storage.last_index() < 120:
        batch = make_entries(storage.last_index() + 1, rng.randint(1, 5), term=2)
        storage.append(batch)
        storage.set_hard_state(HardState(2, 1, batch[0].index))
        storage.sync()
        entries.update((entry.index, entry) for entry in batch)
    storage.close()
    return filesystem, entries


def test_a_bit_flip_before_the_tail_is_corruption_naming_the_segment() -> None:
    outcomes = {"corruption": 0}
    for seed in range(SEEDS):
        filesystem, _entries = build_wal(seed)
        segments = [path for path in filesystem.files() if path.startswith(WAL_DIRECTORY)]
        assert len(segments) >= 4
        path = random.Random(seed).choice(segments)
        data = filesystem.read_bytes(path)
        ends = record_ends(data)
        _path, offset, _bit = filesystem.flip_bit(path) or ("", 0, 0)
        damaged = filesystem.files()
        in_last_record = path == segments[-1] and offset >= ends[-2]
        try:
            storage = open_storage(filesystem)
        except Corruption as corruption:
            outcomes["corruption"] += 1
            assert corruption.path == path
            assert corruption.offset is not None and corruption.offset <= offset
            assert filesystem.files() == damaged, "a refused WAL is left as found"
            continue
        raise AssertionError(
            f"seed {seed}: a flip at {offset} of {path} went unnoticed"
            f" (last record: {in_last_record}; last index {storage.last_index()})"
        )
    assert outcomes["corruption"] == SEEDS, outcomes


@pytest.mark.parametrize("bit", range(32))
def test_a_flip_in_the_last_records_length_is_corruption_not_a_torn_tail(bit: int) -> None:
    """The last record was synced; one bit of its length field flips (making it claim more
    than the file holds, or an impossible size). A torn write never leaves such a length,
    and cutting the record would drop an acknowledged entry: in the whole-node simulator a
    single voter then won a later term without it (Leader Completeness, seed 1509)."""
    filesystem, _entries = build_wal(0)
    last_segment = max(path for path in filesystem.files() if path.startswith(WAL_DIRECTORY))
    data = filesystem.read_bytes(last_segment)
    last_record = record_ends(data)[-2]
    length_offset = last_record + CHECKSUM_BYTES  # little-endian u32
    filesystem.flip_bit(last_segment, length_offset + bit // 8, bit % 8)
    with pytest.raises(Corruption) as refused:
        open_storage(filesystem)
    assert refused.value.path == last_segment and refused.value.offset == last_record


def test_a_bit_flipped_on_a_crash_is_never_silently_accepted() -> None:
    """Flips on crashes, anywhere in the WAL: the store opens with the acknowledged log (the
    flip hit nothing the log still needs, or hit the unsynced record a crash left torn and
    that record is cut), or refuses with Corruption naming a segment."""
    outcomes: dict[str, int] = {}
    for seed in range(SEEDS):
        filesystem = SimulatedFileSystem(random.Random(seed), DiskFaults(crash_bit_flip_rate=1.0))
        tracked, error = run_until_the_disk_fails(filesystem, random.Random(seed), 40)
        assert error is None
        filesystem.crash()
        try:
            state = observed(open_storage(filesystem))
        except Corruption as corruption:
            assert corruption.path is not None and corruption.path.startswith(WAL_DIRECTORY)
            outcomes["corruption"] = outcomes.get("corruption", 0) + 1
            continue
        assert state == tracked.acknowledged, f"seed {seed}: opened without what it synced"
        outcomes["intact"] = outcomes.get("intact", 0) + 1
    assert outcomes.get("corruption", 0) > SEEDS // 2, outcomes


# --- bit flips in snapshots -------------------------------------------------------------------
def snapshots_and_wal(
    filesystem: SimulatedFileSystem, keep_after_older: bool
) -> tuple[FileStorage, FileSnapshotStore]:
    """A WAL of 60 entries, snapshots at 20 and 50; the WAL is compacted to 15 (so it still
    holds everything after snapshot 20) or to 30 (it does not)."""
    storage = open_storage(filesystem)
    snapshots = FileSnapshotStore(SNAPSHOT_DIRECTORY, filesystem=filesystem)
    storage.append(make_entries(1, 60, term=1))
    storage.set_hard_state(HardState(1, 1, 60))
    storage.sync()
    for index, compact_through in [(20, 10), (50, 15 if keep_after_older else 30)]:
        snapshots.save(snapshot_meta(index, 1), b"state at %d" % index)
        storage.compact(compact_through, 1)
        storage.sync()
    return storage, snapshots


@pytest.mark.parametrize("keep_after_older", [True, False], ids=["fallback", "refused"])
def test_a_bit_flip_in_the_newest_snapshot_follows_the_recovery_rule(
    keep_after_older: bool,
) -> None:
    newest = f"{SNAPSHOT_DIRECTORY}/{snapshot_file_name(50, 1)}"
    for seed in range(SEEDS):
        filesystem = SimulatedFileSystem(random.Random(seed))
        storage, snapshots = snapshots_and_wal(filesystem, keep_after_older)
        assert filesystem.flip_bit(newest) is not None  # anywhere: header, meta or data
        filesystem.crash()
        storage, snapshots = (
            open_storage(filesystem),
            FileSnapshotStore(SNAPSHOT_DIRECTORY, filesystem=filesystem),
        )
        with pytest.raises(Corruption) as caught:
            snapshots.latest()
        assert caught.value.path == newest
        before = filesystem.files()
        if keep_after_older:
            recovered = recover(storage, storage, snapshots)
            assert recovered.snapshot == (snapshot_meta(20, 1), b"state at 20")
            assert recovered.entries == make_entries(21, 40, term=1)
            assert any(newest in warning for warning in recovered.warnings)
        else:
            with pytest.raises(Corruption, match="damaged snapshot") as caught:
                recover(storage, storage, snapshots)
            assert caught.value.path == newest
            assert filesystem.files() == before, "nothing changed on a refusal"


def test_a_crash_at_any_point_of_a_snapshot_save_leaves_old_or_new_never_damage() -> None:
    def save_three(filesystem: SimulatedFileSystem, saved: list[int]) -> None:
        snapshots = FileSnapshotStore(SNAPSHOT_DIRECTORY, keep=2, filesystem=filesystem)
        for index in (10, 20, 30):
            snapshots.save(snapshot_meta(index, 1), b"state %d" % index * 50)
            saved.append(index)

    counting = SimulatedFileSystem(random.Random(0))
    save_three(counting, [])
    seen: set[tuple[int, ...]] = set()
    for crash_point in range(1, counting.operations + 1):
        for seed in range(4):
            filesystem = SimulatedFileSystem(random.Random(seed * 1000 + crash_point))
            filesystem.schedule_crash(crash_point)
            saved: list[int] = []
            with pytest.raises(SimulatedCrash):
                save_three(filesystem, saved)
            filesystem.crash()
            snapshots = FileSnapshotStore(SNAPSHOT_DIRECTORY, keep=2, filesystem=filesystem)
            indexes = tuple(ref.index for ref in snapshots.stored())
            if saved:  # a save that returned is durable (the log may be compacted on it)
                assert indexes and indexes[0] >= saved[-1], (crash_point, seed, indexes)
            for ref in snapshots.stored():
                assert snapshots.load(ref) == (
                    snapshot_meta(ref.index, 1),
                    b"state %d" % ref.index * 50,
                )
            assert not [name for name in filesystem.files() if name.endswith(".tmp")]
            seen.add(indexes)
    # Every stage: none yet, 10, 10 and 20, 20 and 30, and the deletions' windows.
    assert {(), (10,), (20, 10), (30, 20)} <= seen, seen


def test_segment_names_follow_the_wal() -> None:
    """The tests above find segments by name; keep them honest."""
    assert segment_file_name(2) == "wal-0000000000000002.log"
