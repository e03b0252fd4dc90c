"""The storage seams (ARCHITECTURE.md): the runtime writes through these, the core never does.

Writes become durable at `sync()`; a crash loses exactly the writes since the last sync.
Implementations: the in-memory twins in `memory.py` (for the simulator and tests, with a
`crash()` that models that loss) and the file stores in `file*.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from raftkv.core.messages import Entry, HardState
from raftkv.core.ready import SnapshotMeta


class LogStore(Protocol):
    def append(self, entries: Sequence[Entry]) -> None:
        """Drop every stored entry at or after `entries[0].index`, then append `entries`.

        `entries` are consecutive and `entries[0].index <= last_index() + 1`.
        """

    def entries(self, low: int, high: int) -> list[Entry]:
        """The entries with `low <= index < high`, all of them present."""

    def term(self, index: int) -> int | None:
        """The term at `index`; at `first_index() - 1` the compaction point's term; else None."""

    def first_index(self) -> int:
        """The first index present (one past the compaction point)."""

    def last_index(self) -> int:
        """The last index present (`first_index() - 1` when empty)."""

    def compact(self, through_index: int, through_term: int) -> None:
        """Discard entries up to `through_index` after a snapshot covering them."""

    def reset(self, index: int, term: int) -> None:
        """Discard every entry; the log continues after (index, term) (snapshot installed)."""

    def sync(self) -> None:
        """Make every earlier write durable."""


class StableStore(Protocol):
    def set_hard_state(self, hard_state: HardState) -> None:
        """Record the hard state; durable at the next `sync()`."""

    def hard_state(self) -> HardState:
        """The last hard state set (`HardState()` for a new node)."""

    def sync(self) -> None:
        """Make every earlier write durable."""


# Snapshots a store keeps (the newest ones); an older one is a fallback for recovery when
# the newest is damaged and the log still holds everything after the older one.
SNAPSHOTS_KEPT_DEFAULT = 2


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """A stored snapshot, known by its name before it is read (and found valid or not)."""

    index: int
    term: int
    location: str  # the file's path (a name for the memory twin): what a message names


class SnapshotStore(Protocol):
    @property
    def location(self) -> str:
        """Where the snapshots live (a directory), for messages."""

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        """Store a snapshot atomically and durably before returning."""

    def stored(self) -> list[SnapshotRef]:
        """Every stored snapshot, newest (by index, then term) first, without reading them."""

    def load(self, ref: SnapshotRef) -> tuple[SnapshotMeta, bytes]:
        """Read and check one snapshot; `Corruption` (naming `ref.location`) if damaged."""

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        """The newest snapshot, or None; `Corruption` if it is damaged.

        Never an older one in its place: whether an older snapshot may stand in for a
        damaged newer one depends on the log, and only recovery (storage/recovery.py)
        decides that."""


@dataclass(frozen=True, slots=True)
class Stores:
    """The stores one node runs on, as `RaftServer(stores=...)` takes them.

    `log` and `stable` may be one object: the WAL holds both, so a Ready costs one fsync
    (the server syncs a shared store once)."""

    log: LogStore
    stable: StableStore
    snapshots: SnapshotStore
