"""Durable state of a node: the log, the hard state and snapshots, with in-memory twins."""

from raftkv.storage.base import LogStore, SnapshotStore, StableStore
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore

__all__ = [
    "LogStore",
    "MemoryLogStore",
    "MemorySnapshotStore",
    "MemoryStableStore",
    "SnapshotStore",
    "StableStore",
]
