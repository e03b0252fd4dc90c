"""Durable state of a node: the log, the hard state and snapshots, with in-memory twins."""

from raftkv.storage.base import LogStore, SnapshotStore, StableStore
from raftkv.storage.datadir import DataDir, open_data_dir
from raftkv.storage.file_log import FileStorage
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.storage.snapshot_files import FileSnapshotStore

__all__ = [
    "DataDir",
    "FileSnapshotStore",
    "FileStorage",
    "LogStore",
    "MemoryLogStore",
    "MemorySnapshotStore",
    "MemoryStableStore",
    "SnapshotStore",
    "StableStore",
    "open_data_dir",
]
