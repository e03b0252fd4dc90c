"""The simulated disk's own model: what survives a power loss, its errors and its faults.

Each durability rule is checked both ways: with `crash_keeps_unsynced=False` a crash loses
every unsynced change (so "lost" is certain), and with the default random prefix the
seeds are swept until every outcome the model allows has been seen.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Callable

import pytest
from storage_helpers import child_environment

from raftkv.storage.simulated_disk import DiskFaults, SimulatedCrash, SimulatedFileSystem

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL
SWEEP_SEEDS = 200


def disk(seed: int = 1, faults: DiskFaults | None = None) -> SimulatedFileSystem:
    return SimulatedFileSystem(random.Random(seed), faults)


def strict_disk() -> SimulatedFileSystem:
    """A disk whose crashes lose every unsynced change."""
    return disk(faults=DiskFaults(crash_keeps_unsynced=False))


def durable_file(filesystem: SimulatedFileSystem, path: str, data: bytes) -> None:
    """Create `path` holding `data`, durably (file and directory fsynced)."""
    descriptor = filesystem.open(path, CREATE)
    filesystem.write(descriptor, data)
    filesystem.fsync(descriptor)
    filesystem.close(descriptor)
    filesystem.fsync_directory(os.path.dirname(path))


def outcomes(run: Callable[[SimulatedFileSystem], object]) -> set[object]:
    """What `run(disk)` returns over the sweep seeds (each a fresh disk with its own seed)."""
    return {run(disk(seed)) for seed in range(SWEEP_SEEDS)}


# --- file data -----------------------------------------------------------------------------
def test_synced_data_survives_and_unsynced_data_is_lost() -> None:
    filesystem = strict_disk()
    durable_file(filesystem, "/f", b"synced")
    descriptor = filesystem.open("/f", os.O_WRONLY | os.O_APPEND)
    filesystem.write(descriptor, b"+unsynced")
    assert filesystem.read_bytes("/f") == b"synced+unsynced"  # the page cache
    filesystem.crash()
    assert filesystem.read_bytes("/f") == b"synced"


def test_fdatasync_makes_data_durable_too() -> None:
    filesystem = strict_disk()
    durable_file(filesystem, "/f", b"a")
    descriptor = filesystem.open("/f", os.O_RDWR | os.O_APPEND)
    filesystem.write(descriptor, b"b")
    filesystem.fdatasync(descriptor)
    filesystem.crash()
    assert filesystem.read_bytes("/f") == b"ab"


def test_a_crash_keeps_a_prefix_of_the_unsynced_writes_possibly_torn() -> None:
    def crash_after_two_writes(filesystem: SimulatedFileSystem) -> bytes:
        durable_file(filesystem, "/f", b"base|")
        descriptor = filesystem.open("/f", os.O_WRONLY | os.O_APPEND)
        filesystem.write(descriptor, b"first|")
        filesystem.write(descriptor, b"second")
        filesystem.crash()
        return filesystem.read_bytes("/f")

    seen = outcomes(crash_after_two_writes)
    full = b"base|first|second"
    # Always a prefix of what was written, never shorter than what was synced.
    assert all(full.startswith(data) and data.startswith(b"base|") for data in seen)
    assert {b"base|", b"base|first|", full} <= seen
    assert any(len(b"base|") < len(data) < len(b"base|first|") for data in seen), "torn first"
    assert any(len(b"base|first|") < len(data) < len(full) for data in seen), "torn second"


def test_a_torn_write_may_leave_zeros_where_the_file_grew() -> None:
    def crash_mid_write(filesystem: SimulatedFileSystem) -> bytes:
        filesystem.faults.torn_write_zeros_rate = 0.5
        durable_file(filesystem, "/f", b"base")
        descriptor = filesystem.open("/f", os.O_WRONLY | os.O_APPEND)
        filesystem.write(descriptor, b"x" * 20)
        filesystem.crash()
        return filesystem.read_bytes("/f")

    seen = outcomes(crash_mid_write)
    assert all(data.startswith(b"base") and len(data) <= 24 for data in seen)
    assert all(set(data[4:]) <= {0, ord("x")} for data in seen)
    assert any(data.endswith(b"\0") for data in seen), "no zero-filled tail seen"
    assert any(data.rstrip(b"x") == b"base" and len(data) > 4 for data in seen)


def test_truncation_is_volatile_until_fsync() -> None:
    filesystem = strict_disk()
    durable_file(filesystem, "/f", b"0123456789")
    descriptor = filesystem.open("/f", os.O_RDWR)
    filesystem.ftruncate(descriptor, 4)
    assert filesystem.read_bytes("/f") == b"0123"
    filesystem.crash()
    assert filesystem.read_bytes("/f") == b"0123456789"
    descriptor = filesystem.open("/f", os.O_RDWR)
    filesystem.ftruncate(descriptor, 4)
    filesystem.fsync(descriptor)
    filesystem.crash()
    assert filesystem.read_bytes("/f") == b"0123"


def test_writes_at_the_position_and_pwrite_and_pread() -> None:
    filesystem = disk()
    descriptor = filesystem.open("/f", os.O_RDWR | os.O_CREAT)
    assert filesystem.write(descriptor, b"hello") == 5
    assert filesystem.write(descriptor, b" world") == 6
    assert filesystem.pwrite(descriptor, b"J", 0) == 1
    assert filesystem.pread(descriptor, 5, 0) == b"Jello"
    assert filesystem.pread(descriptor, 100, 6) == b"world"
    assert filesystem.pread(descriptor, 10, 50) == b""
    filesystem.pwrite(descriptor, b"!", 13)  # past the end: a hole of zeros
    assert filesystem.read_bytes("/f") == b"Jello world\0\0!"
    truncating = filesystem.open("/f", os.O_WRONLY | os.O_TRUNC)
    assert filesystem.read_bytes("/f") == b""
    filesystem.close(truncating)


# --- directory entries ---------------------------------------------------------------------
def test_a_new_file_needs_its_directory_fsynced() -> None:
    filesystem = strict_disk()
    filesystem.makedirs("/d")
    filesystem.fsync_directory("/")
    descriptor = filesystem.open("/d/f", CREATE)
    filesystem.write(descriptor, b"data")
    filesystem.fsync(descriptor)  # the data, not the name
    filesystem.crash()
    assert not filesystem.exists("/d/f")
    descriptor = filesystem.open("/d/f", CREATE)
    filesystem.write(descriptor, b"data")
    filesystem.fsync(descriptor)
    filesystem.fsync_directory("/d")
    filesystem.crash()
    assert filesystem.read_bytes("/d/f") == b"data"


def test_a_new_directory_needs_its_parent_fsynced() -> None:
    filesystem = strict_disk()
    filesystem.makedirs("/a/b")
    filesystem.fsync_directory("/a")  # makes b durable in a, but a is not durable in /
    filesystem.crash()
    assert not filesystem.exists("/a")
    filesystem.makedirs("/a/b")
    filesystem.fsync_directory("/")
    filesystem.fsync_directory("/a")
    filesystem.crash()
    assert filesystem.isdir("/a/b")


def test_an_unsynced_rename_or_unlink_may_be_reverted() -> None:
    filesystem = strict_disk()
    durable_file(filesystem, "/old", b"old")
    durable_file(filesystem, "/new.tmp", b"new")
    filesystem.replace("/new.tmp", "/old")
    assert filesystem.listdir("/") == ["old"] and filesystem.read_bytes("/old") == b"new"
    filesystem.crash()
    assert filesystem.files() == {"/new.tmp": b"new", "/old": b"old"}
    filesystem.unlink("/new.tmp")
    filesystem.crash()
    assert filesystem.exists("/new.tmp")
    filesystem.replace("/new.tmp", "/old")
    filesystem.fsync_directory("/")
    filesystem.crash()
    assert filesystem.files() == {"/old": b"new"}


def test_unsynced_directory_changes_survive_as_a_prefix() -> None:
    def crash_after_three_changes(filesystem: SimulatedFileSystem) -> tuple[str, ...]:
        durable_file(filesystem, "/a", b"a")
        filesystem.close(filesystem.open("/b", CREATE))  # 1: create b
        filesystem.replace("/a", "/c")  # 2: a becomes c
        filesystem.unlink("/b")  # 3: b goes
        filesystem.crash()
        return tuple(filesystem.listdir("/"))

    assert outcomes(crash_after_three_changes) == {
        ("a",),  # nothing survived
        ("a", "b"),  # the creation
        ("b", "c"),  # the creation and the rename
        ("c",),  # all three
    }


# --- descriptors, locks, errors ------------------------------------------------------------
def test_descriptors_and_locks_die_with_the_process() -> None:
    filesystem = disk()
    first = filesystem.open("/LOCK", os.O_RDWR | os.O_CREAT)
    filesystem.fsync_directory("/")
    filesystem.lock(first)
    filesystem.lock(first)  # again by the holder: fine
    second = filesystem.open("/LOCK", os.O_RDWR)
    with pytest.raises(BlockingIOError):
        filesystem.lock(second)
    filesystem.close_all()  # the process exits; the disk keeps its page cache
    third = filesystem.open("/LOCK", os.O_RDWR)
    filesystem.lock(third)
    filesystem.crash()
    with pytest.raises(OSError) as caught:
        filesystem.write(third, b"x")
    assert caught.value.errno == errno.EBADF
    filesystem.lock(filesystem.open("/LOCK", os.O_RDWR))
    assert filesystem.open_descriptors() == 1


def test_posix_errors() -> None:
    filesystem = disk()
    filesystem.makedirs("/d")
    durable_file(filesystem, "/d/f", b"x")
    cases: list[tuple[Callable[[], object], int]] = [
        (lambda: filesystem.open("/d/missing", os.O_RDONLY), errno.ENOENT),
        (lambda: filesystem.open("/missing/f", os.O_CREAT | os.O_WRONLY), errno.ENOENT),
        (lambda: filesystem.open("/d/f", CREATE), errno.EEXIST),
        (lambda: filesystem.open("/d", os.O_RDONLY), errno.EISDIR),
        (lambda: filesystem.read_file("/d/missing"), errno.ENOENT),
        (lambda: filesystem.read_file("/d"), errno.EISDIR),
        (lambda: filesystem.unlink("/d/missing"), errno.ENOENT),
        (lambda: filesystem.unlink("/d"), errno.EISDIR),
        (lambda: filesystem.replace("/d/missing", "/d/g"), errno.ENOENT),
        (lambda: filesystem.replace("/d/f", "/g"), errno.EXDEV),
        (lambda: filesystem.listdir("/d/f"), errno.ENOTDIR),
        (lambda: filesystem.makedirs("/d/f"), errno.EEXIST),
        (lambda: filesystem.fsync_directory("/nowhere"), errno.ENOENT),
        (lambda: filesystem.close(999), errno.EBADF),
        (lambda: filesystem.write(filesystem.open("/d/f", os.O_RDONLY), b"x"), errno.EBADF),
        (lambda: filesystem.pread(filesystem.open("/d/f", os.O_WRONLY), 1, 0), errno.EBADF),
    ]
    for call, code in cases:
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == code, call
    with pytest.raises(FileNotFoundError):
        filesystem.read_file("/d/missing")
    with pytest.raises(ValueError, match="absolute"):
        filesystem.open("relative", os.O_RDONLY)
    assert filesystem.isdir("/d") and not filesystem.isdir("/d/f") and not filesystem.isdir("/x")


def test_listdir_is_sorted() -> None:
    filesystem = disk()
    for name in ["b", "a", "c10", "c9"]:
        filesystem.close(filesystem.open(f"/{name}", CREATE))
    assert filesystem.listdir("/") == ["a", "b", "c10", "c9"]


# --- faults --------------------------------------------------------------------------------
def test_a_scheduled_crash_strikes_before_the_nth_operation_and_holds() -> None:
    filesystem = strict_disk()
    durable_file(filesystem, "/f", b"a")
    descriptor = filesystem.open("/f", os.O_WRONLY | os.O_APPEND)
    filesystem.schedule_crash(2)
    filesystem.write(descriptor, b"b")  # operation 1 runs
    with pytest.raises(SimulatedCrash):
        filesystem.fsync(descriptor)  # operation 2: the power is gone
    assert filesystem.powered_off
    with pytest.raises(SimulatedCrash):
        filesystem.close(descriptor)  # nothing runs any more
    filesystem.crash()
    assert not filesystem.powered_off and filesystem.read_bytes("/f") == b"a"


def test_scripted_failures_strike_the_matching_operation_once() -> None:
    filesystem = disk()
    filesystem.fail_next("fsync", errno.EIO, path_contains="wal")
    filesystem.fail_next("open", errno.ENOSPC)
    with pytest.raises(OSError) as caught:
        filesystem.open("/other", CREATE)
    assert caught.value.errno == errno.ENOSPC
    other = filesystem.open("/other", CREATE)
    filesystem.fsync(other)  # not a wal path: not this one
    wal = filesystem.open("/wal-1", CREATE)
    with pytest.raises(OSError) as caught:
        filesystem.fsync(wal)
    assert caught.value.errno == errno.EIO
    filesystem.fsync(wal)


def test_a_failed_fsync_drops_the_unsynced_data_which_a_later_fsync_does_not_bring_back() -> None:
    filesystem = strict_disk()
    durable_file(filesystem, "/f", b"synced")
    descriptor = filesystem.open("/f", os.O_WRONLY | os.O_APPEND)
    filesystem.write(descriptor, b"+lost")
    filesystem.fail_next("fsync", errno.EIO)
    with pytest.raises(OSError):
        filesystem.fsync(descriptor)
    assert filesystem.read_bytes("/f") == b"synced+lost"  # still in the page cache
    filesystem.write(descriptor, b"+later")
    filesystem.fsync(descriptor)  # succeeds, as Linux's does
    filesystem.crash()
    assert filesystem.read_bytes("/f") == b"synced\0\0\0\0\0+later"


def test_write_faults_may_write_a_part_first() -> None:
    def failing_write(filesystem: SimulatedFileSystem) -> tuple[int, int | None]:
        filesystem.faults.write_eio_rate = 1.0
        descriptor = filesystem.open("/f", CREATE)
        try:
            written = filesystem.write(descriptor, b"0123456789")
        except OSError as error:
            return 0, error.errno
        with pytest.raises(OSError) as caught:
            filesystem.write(descriptor, b"more")
        return written, caught.value.errno

    seen = outcomes(failing_write)
    assert (0, errno.EIO) in seen
    assert any(0 < written < 10 for written, _code in seen)
    assert {code for _written, code in seen} == {errno.EIO}


def test_a_full_disk_writes_what_fits_then_refuses() -> None:
    filesystem = SimulatedFileSystem(random.Random(1), capacity_bytes=10)
    descriptor = filesystem.open("/f", CREATE)
    assert filesystem.write(descriptor, b"12345678") == 8
    assert filesystem.write(descriptor, b"abcdef") == 2
    with pytest.raises(OSError) as caught:
        filesystem.write(descriptor, b"x")
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as caught:
        filesystem.open("/g", CREATE)
    assert caught.value.errno == errno.ENOSPC
    filesystem.pwrite(descriptor, b"overwrite", 0)  # no growth: fits
    filesystem.unlink("/f")
    filesystem.close(descriptor)  # unlinked and closed: the space is free again
    filesystem.close(filesystem.open("/g", CREATE))


def test_fsync_and_read_faults_and_slow_fsyncs() -> None:
    filesystem = disk(faults=DiskFaults(fsync_enospc_rate=1.0))
    descriptor = filesystem.open("/f", os.O_RDWR | os.O_CREAT)
    with pytest.raises(OSError) as caught:
        filesystem.fsync(descriptor)
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        filesystem.fsync_directory("/")
    filesystem.faults = DiskFaults(read_eio_rate=1.0)
    with pytest.raises(OSError) as caught:
        filesystem.pread(descriptor, 1, 0)
    assert caught.value.errno == errno.EIO
    with pytest.raises(OSError):
        filesystem.read_file("/f")
    filesystem.faults = DiskFaults(slow_fsync_rate=1.0, slow_fsync_ticks_max=5)
    filesystem.fsync(descriptor)
    filesystem.fdatasync(descriptor)
    delay = filesystem.take_fsync_delay_ticks()
    assert 2 <= delay <= 10
    assert filesystem.take_fsync_delay_ticks() == 0
    assert filesystem.take_fsync_seconds() == 0.0  # ordinary fsyncs take no time by default
    filesystem.faults = DiskFaults(fsync_seconds_max=0.004)
    filesystem.fsync(descriptor)
    filesystem.fsync_directory("/")
    taken = filesystem.take_fsync_seconds()
    assert 0.0 < taken <= 0.008
    assert filesystem.take_fsync_seconds() == 0.0


def test_bit_flips_strike_wal_and_snapshot_files_by_default() -> None:
    filesystem = disk()
    filesystem.makedirs("/n/wal")
    for path in ["/n/meta.json", "/n/wal/wal-0000000000000001.log", "/n/snapshot-1-1.snap"]:
        durable_file(filesystem, path, bytes(64))
    flipped = {filesystem.flip_bit() for _ in range(50)}
    paths = {flip[0] for flip in flipped if flip is not None}
    assert paths == {"/n/wal/wal-0000000000000001.log", "/n/snapshot-1-1.snap"}
    assert filesystem.read_bytes("/n/meta.json") == bytes(64)
    assert filesystem.flip_bit("/n/meta.json", 3, 2) == ("/n/meta.json", 3, 2)
    filesystem.crash()  # the flip is on the medium
    assert filesystem.read_bytes("/n/meta.json")[3] == 4


def test_a_crash_may_flip_a_bit() -> None:
    def crash(filesystem: SimulatedFileSystem) -> bool:
        filesystem.faults.crash_bit_flip_rate = 0.5
        durable_file(filesystem, "/wal-0000000000000001.log", bytes(32))
        filesystem.crash()
        return filesystem.read_bytes("/wal-0000000000000001.log") != bytes(32)

    assert outcomes(crash) == {True, False}


# --- determinism ---------------------------------------------------------------------------
SCENARIO = """
import hashlib, os, random, sys
from raftkv.core.messages import Entry, HardState
from raftkv.storage import open_data_dir
from raftkv.storage.simulated_disk import DiskFaults, SimulatedCrash, SimulatedFileSystem

seed = int(sys.argv[1])
faults = DiskFaults(torn_write_zeros_rate=0.3, crash_bit_flip_rate=0.0, slow_fsync_rate=0.3)
filesystem = SimulatedFileSystem(random.Random(seed), faults)
rng = random.Random(seed + 1)
lines = []
for round in range(6):
    try:
        data_dir = open_data_dir("/cluster/node-1", 1, "c", filesystem=filesystem)
        storage = data_dir.open_storage(segment_bytes_max=400)
        snapshots = data_dir.open_snapshots()
        filesystem.schedule_crash(rng.randint(1, 60))
        while True:
            first = storage.last_index() + 1
            storage.append([Entry(round + 1, i, 0, b"v%d" % i * rng.randint(1, 5))
                            for i in range(first, first + rng.randint(1, 4))])
            storage.set_hard_state(HardState(round + 1, 1, first))
            if rng.random() < 0.2 and storage.last_index() > 5:
                through = storage.last_index() - 3
                snapshots.save(__import__("storage_helpers").snapshot_meta(through, 1), b"s")
                storage.compact(through, storage.term(through))
            storage.sync()
    except SimulatedCrash:
        pass
    filesystem.crash()
    lines.append(f"{round} {filesystem.operations} {filesystem.take_fsync_delay_ticks()}")
image = filesystem.files()
for path, data in image.items():
    lines.append(f"{path} {hashlib.sha256(data).hexdigest()}")
print("\\n".join(lines))
"""


def run_scenario(seed: int, hash_seed: str) -> str:
    environment = child_environment()
    environment["PYTHONHASHSEED"] = hash_seed
    environment["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(__file__), environment["PYTHONPATH"]]
    )
    return subprocess.run(
        [sys.executable, "-c", SCENARIO, str(seed)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def test_same_seed_same_bytes_whatever_the_hash_seed() -> None:
    first = run_scenario(5, "0")
    assert first == run_scenario(5, "4242")
    assert first == run_scenario(5, "random")
    assert first != run_scenario(6, "0")
    assert hashlib.sha256(first.encode()).hexdigest()  # a non-empty image
    assert "/cluster/node-1/wal/" in first
