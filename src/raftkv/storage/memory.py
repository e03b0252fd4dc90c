"""In-memory twins of the storage seams, with a crash model for the simulator.

Each store keeps what a crash would leave (`durable`) apart from what has been written since
the last `sync()`; `crash()` throws the latter away, as power loss would.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.core.messages import Entry, HardState
from raftkv.core.ready import SnapshotMeta
from raftkv.errors import Corruption
from raftkv.storage.base import SNAPSHOTS_KEPT_DEFAULT, SnapshotRef


class _LogState:
    """A log as a list after a compaction point."""

    __slots__ = ("entries", "snapshot_index", "snapshot_term")

    def __init__(self) -> None:
        self.snapshot_index = 0
        self.snapshot_term = 0
        self.entries: list[Entry] = []

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        assert self.snapshot_index < first <= self.snapshot_index + len(self.entries) + 1, (
            f"append at {first} leaves a gap or rewrites the compacted prefix"
        )
        del self.entries[first - self.snapshot_index - 1 :]
        self.entries.extend(entries)

    def compact(self, through_index: int, through_term: int) -> None:
        if through_index <= self.snapshot_index:
            return
        del self.entries[: through_index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = through_index, through_term

    def reset(self, index: int, term: int) -> None:
        self.entries = []
        self.snapshot_index, self.snapshot_term = index, term

    def copy(self) -> _LogState:
        """An independent twin (entries are immutable, so sharing them is safe)."""
        twin = _LogState()
        twin.snapshot_index, twin.snapshot_term = self.snapshot_index, self.snapshot_term
        twin.entries = list(self.entries)
        return twin


class MemoryLogStore:
    def __init__(self) -> None:
        self._current = _LogState()
        self._durable = _LogState()
        self._pending: list[tuple[str, tuple[object, ...]]] = []
        self.syncs = 0

    def append(self, entries: Sequence[Entry]) -> None:
        entries = list(entries)
        self._current.append(entries)
        self._pending.append(("append", (entries,)))

    def entries(self, low: int, high: int) -> list[Entry]:
        state = self._current
        assert state.snapshot_index < low <= high <= self.last_index() + 1
        return state.entries[low - state.snapshot_index - 1 : high - state.snapshot_index - 1]

    def term(self, index: int) -> int | None:
        state = self._current
        if index == state.snapshot_index:
            return state.snapshot_term
        if state.snapshot_index < index <= self.last_index():
            return state.entries[index - state.snapshot_index - 1].term
        return None

    def first_index(self) -> int:
        return self._current.snapshot_index + 1

    def last_index(self) -> int:
        return self._current.snapshot_index + len(self._current.entries)

    def compact(self, through_index: int, through_term: int) -> None:
        self._current.compact(through_index, through_term)
        self._pending.append(("compact", (through_index, through_term)))

    def reset(self, index: int, term: int) -> None:
        self._current.reset(index, term)
        self._pending.append(("reset", (index, term)))

    def sync(self) -> None:
        for operation, arguments in self._pending:
            getattr(self._durable, operation)(*arguments)
        self._pending.clear()
        self.syncs += 1

    def crash(self) -> None:
        """Lose every write since the last sync."""
        self._pending.clear()
        self._current = self._durable.copy()


class MemoryStableStore:
    def __init__(self) -> None:
        self._current = HardState()
        self._durable = HardState()

    def set_hard_state(self, hard_state: HardState) -> None:
        self._current = hard_state

    def hard_state(self) -> HardState:
        return self._current

    def sync(self) -> None:
        self._durable = self._current

    def crash(self) -> None:
        self._current = self._durable


class MemorySnapshotStore:
    """Keeps the newest `keep` snapshots, as the file store does; `damage()` models a
    snapshot file gone bad, for recovery tests."""

    location = "memory"

    def __init__(self, keep: int = SNAPSHOTS_KEPT_DEFAULT) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        # (index, term) -> snapshot, and which of them are damaged.
        self._snapshots: dict[tuple[int, int], tuple[SnapshotMeta, bytes]] = {}
        self._damaged: set[tuple[int, int]] = set()

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        key = (meta.index, meta.term)
        self._snapshots[key] = (meta, bytes(data))
        self._damaged.discard(key)
        for doomed in sorted(self._snapshots, reverse=True)[self.keep :]:
            del self._snapshots[doomed]
            self._damaged.discard(doomed)

    def stored(self) -> list[SnapshotRef]:
        return [
            SnapshotRef(index, term, f"memory snapshot {index}/{term}")
            for index, term in sorted(self._snapshots, reverse=True)
        ]

    def load(self, ref: SnapshotRef) -> tuple[SnapshotMeta, bytes]:
        key = (ref.index, ref.term)
        if key in self._damaged or key not in self._snapshots:
            raise Corruption("damaged snapshot", ref.location)
        return self._snapshots[key]

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        refs = self.stored()
        return self.load(refs[0]) if refs else None

    def damage(self, index: int, term: int) -> None:
        """Make the stored snapshot (index, term) unreadable, as bit rot would."""
        assert (index, term) in self._snapshots, f"no snapshot {index}/{term} to damage"
        self._damaged.add((index, term))

    def crash(self) -> None:
        """Snapshots are saved durably before `save` returns: nothing to lose."""
