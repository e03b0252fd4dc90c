"""The data dir on the simulated disk: a crash at any point of its first use, or of a
meta.json update, never leaves a data dir that refuses to open or that forgot its ids."""

from __future__ import annotations

import random

import pytest
from storage_helpers import make_entries
from wal_model import ModelLog, TrackedStorage, observed

from raftkv.core.messages import HardState
from raftkv.errors import DataDirMismatch
from raftkv.storage.datadir import DataDir, open_data_dir
from raftkv.storage.simulated_disk import SimulatedCrash, SimulatedFileSystem

DATA_DIR = "/cluster/node-3"  # its parent is new too: both must be made durable
SEEDS_PER_POINT = 3


def first_use(filesystem: SimulatedFileSystem, tracked: list[TrackedStorage]) -> None:
    """What a new node does first: open its data dir, its stores, and save a vote."""
    data_dir = open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem)
    storage = TrackedStorage(data_dir.open_storage(segment_bytes_max=300))
    tracked.append(storage)
    data_dir.open_snapshots()
    storage.set_hard_state(HardState(1, 2, 0))
    storage.sync()
    storage.append(make_entries(1, 10, term=1))
    storage.sync()


def test_a_crash_at_any_point_of_the_first_use_leaves_a_usable_data_dir() -> None:
    counting = SimulatedFileSystem(random.Random(0))
    first_use(counting, [])
    for crash_point in range(1, counting.operations + 1):
        for seed in range(SEEDS_PER_POINT):
            filesystem = SimulatedFileSystem(random.Random(seed * 10_000 + crash_point))
            filesystem.schedule_crash(crash_point)
            tracked: list[TrackedStorage] = []
            with pytest.raises(SimulatedCrash):
                first_use(filesystem, tracked)
            filesystem.crash()
            with open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem) as data_dir:
                assert (data_dir.node_id, data_dir.cluster_id) == (3, "cluster-a")
                candidates = tracked[0].candidates() if tracked else [ModelLog().freeze()]
                state = observed(data_dir.open_storage(segment_bytes_max=300))
                assert state in candidates, f"crash point {crash_point}, seed {seed}"


def test_a_crash_while_recording_ids_keeps_the_old_or_the_new_meta() -> None:
    def record(filesystem: SimulatedFileSystem) -> None:
        with open_data_dir(DATA_DIR, 3, None, filesystem=filesystem) as data_dir:
            data_dir.record_joined_index(17)
            data_dir.record_cluster_id("cluster-b")

    def meta(filesystem: SimulatedFileSystem) -> tuple[str | None, int]:
        with open_data_dir(DATA_DIR, 3, None, filesystem=filesystem) as data_dir:
            return data_dir.cluster_id, data_dir.joined_index

    counting = SimulatedFileSystem(random.Random(0))
    open_data_dir(DATA_DIR, 3, None, filesystem=counting).close()
    start = counting.operations
    record(counting)
    seen = set()
    for crash_point in range(1, counting.operations - start + 1):
        for seed in range(SEEDS_PER_POINT):
            filesystem = SimulatedFileSystem(random.Random(seed * 10_000 + crash_point))
            open_data_dir(DATA_DIR, 3, None, filesystem=filesystem).close()
            filesystem.schedule_crash(crash_point)
            with pytest.raises(SimulatedCrash):
                record(filesystem)
            filesystem.crash()
            seen.add(meta(filesystem))
    assert seen == {(None, 0), (None, 17), ("cluster-b", 17)}


def test_the_lock_excludes_a_second_opener_until_the_holder_dies() -> None:
    filesystem = SimulatedFileSystem(random.Random(1))
    holder = open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem)
    with pytest.raises(DataDirMismatch, match="in use by another process"):
        open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem)
    assert filesystem.read_bytes(f"{DATA_DIR}/LOCK") == b"1\n"  # the simulated pid
    filesystem.crash()  # the holder's process is gone with the power
    open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem).close()
    holder.close()  # a dead process's descriptor: nothing to release, no harm


def test_recording_a_cluster_id_on_open_keeps_the_joined_index() -> None:
    filesystem = SimulatedFileSystem(random.Random(1))
    with open_data_dir(DATA_DIR, 3, None, filesystem=filesystem) as data_dir:
        data_dir.record_joined_index(42)
    with open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem) as data_dir:
        assert (data_dir.cluster_id, data_dir.joined_index) == ("cluster-a", 42)
    with open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem) as data_dir:
        assert data_dir.joined_index == 42


def test_stores_of_a_data_dir_use_its_file_system() -> None:
    filesystem = SimulatedFileSystem(random.Random(1))
    with open_data_dir(DATA_DIR, 3, "cluster-a", filesystem=filesystem) as data_dir:
        assert isinstance(data_dir, DataDir) and data_dir.filesystem is filesystem
        storage = data_dir.open_storage()
        assert storage.filesystem is filesystem
        assert data_dir.open_snapshots().filesystem is filesystem
        storage.close()
    assert sorted(filesystem.files()) == [
        f"{DATA_DIR}/LOCK",
        f"{DATA_DIR}/meta.json",
        f"{DATA_DIR}/wal/wal-0000000000000001.log",
    ]
