"""Shared helpers of the storage tests: entries with checkable data, and stores to compare.

A uniquely named module rather than conftest.py, so that tests elsewhere with their own
conftest.py can never shadow it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import raftkv
from raftkv.core.membership import Membership
from raftkv.core.messages import Entry, HardState
from raftkv.core.ready import SnapshotMeta
from raftkv.errors import StorageError
from raftkv.storage.base import LogStore, SnapshotStore, StableStore
from raftkv.storage.file_log import FileStorage
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.storage.simulated_disk import DiskFaults, SimulatedFileSystem
from raftkv.storage.snapshot_files import FileSnapshotStore

# Small enough that a few dozen entries span several segments.
SMALL_SEGMENT_BYTES = 512
SMALL_CACHE_ENTRIES = 4
SOURCE_ROOT = Path(raftkv.__file__).resolve().parent.parent


def unsynced_write(storage: FileStorage) -> tuple[bytes, int]:
    """What `storage.sync()` would write, and where, captured instead of written (the sync
    fails as a crash before the write would); the store is closed."""
    captured: list[tuple[bytes, int]] = []

    def crash_before_writing(descriptor: int, data: bytes, offset: int) -> int:
        captured.append((bytes(data), offset))
        raise OSError(5, "simulated crash")

    real_pwrite = os.pwrite
    os.pwrite = crash_before_writing
    try:
        storage.sync()
    except StorageError:
        pass
    finally:
        os.pwrite = real_pwrite
        storage.close()
    (write,) = captured
    return write


def assert_synced_or_rewritten(recovered: FileStorage, rewritten: HardState) -> None:
    """The log of the torn-write tests, as recovered: entries 1-20 of term 1 synced with
    HardState(1, 1, 5), then a write never synced replacing 15 onwards with term 2 entries
    tagged "new" and `rewritten`; recovery keeps the first or a prefix of the second."""
    last = recovered.last_index()
    entries = recovered.entries(1, last + 1)
    assert entries[:14] == make_entries(1, 14, term=1)
    assert entries[14:] in (
        make_entries(15, 6, term=1),
        make_entries(15, last - 14, term=2, tag="new"),
    )
    assert recovered.hard_state() in (HardState(1, 1, 5), rewritten)


def entry_data(index: int, tag: str = "") -> bytes:
    """Data that names its own index, so a misplaced entry cannot go unnoticed."""
    return f"{tag}entry-{index}".encode() * (1 + index % 3)


def make_entries(first: int, count: int, term: int, tag: str = "") -> list[Entry]:
    return [Entry(term, index, 0, entry_data(index, tag)) for index in range(first, first + count)]


def snapshot_meta(index: int, term: int) -> SnapshotMeta:
    return SnapshotMeta(index, term, Membership(voters=frozenset({1, 2, 3})))


def child_environment() -> dict[str, str]:
    """The environment of a child Python that must import this very raftkv."""
    environment = dict(os.environ)
    paths = [str(SOURCE_ROOT), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return environment


class StoreHarness:
    """A log, a stable store and a snapshot store of one kind, and a way to restart them."""

    log: LogStore
    stable: StableStore
    snapshots: SnapshotStore

    def reopen(self) -> None:
        """Restart from what is durable, as after a crash at this point."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources at the end of a test."""


class MemoryHarness(StoreHarness):
    def __init__(self) -> None:
        self.memory_log = MemoryLogStore()
        self.memory_stable = MemoryStableStore()
        self.memory_snapshots = MemorySnapshotStore()
        self.log, self.stable, self.snapshots = (
            self.memory_log,
            self.memory_stable,
            self.memory_snapshots,
        )

    def reopen(self) -> None:
        self.memory_log.crash()
        self.memory_stable.crash()
        self.memory_snapshots.crash()


class FileHarness(StoreHarness):
    def __init__(self, directory: Path, segment_bytes_max: int, cache_entries_max: int) -> None:
        self.wal_directory = directory / "wal"
        self.snapshot_directory = directory / "snapshots"
        self.options = {
            "segment_bytes_max": segment_bytes_max,
            "cache_entries_max": cache_entries_max,
        }
        self._open()

    def _open(self) -> None:
        self.storage = FileStorage(self.wal_directory, **self.options)
        self.log = self.stable = self.storage
        self.snapshots = FileSnapshotStore(self.snapshot_directory)

    def reopen(self) -> None:
        self.storage.close()
        self._open()

    def close(self) -> None:
        self.storage.close()


class SimulatedHarness(StoreHarness):
    """The file stores on a simulated disk; `reopen()` is a power loss (`crash()`), then
    the stores are opened again on the same disk."""

    def __init__(self, seed: int, segment_bytes_max: int, cache_entries_max: int) -> None:
        self.filesystem = SimulatedFileSystem(random.Random(seed), DiskFaults())
        self.wal_directory = "/node/wal"
        self.snapshot_directory = "/node/snapshots"
        self.options = {
            "segment_bytes_max": segment_bytes_max,
            "cache_entries_max": cache_entries_max,
        }
        self._open()

    def _open(self) -> None:
        self.storage = FileStorage(self.wal_directory, filesystem=self.filesystem, **self.options)
        self.log = self.stable = self.storage
        self.snapshots = FileSnapshotStore(self.snapshot_directory, filesystem=self.filesystem)

    def reopen(self) -> None:
        self.filesystem.crash()
        self._open()

    def close(self) -> None:
        if not self.filesystem.powered_off:
            self.storage.close()
