"""In-memory twins of the storage seams, with a crash model for the simulator.

Each store keeps what a crash would leave (`durable`) apart from what has been written since
the last `sync()`; `crash()` throws the latter away, as power loss would.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from raftkv.core.messages import Entry, HardState
from raftkv.core.ready import SnapshotMeta


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
        self._current = copy.deepcopy(self._durable)


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
    def __init__(self) -> None:
        self._latest: tuple[SnapshotMeta, bytes] | None = None

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        if self._latest is None or meta.index >= self._latest[0].index:
            self._latest = (meta, bytes(data))

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        return self._latest

    def crash(self) -> None:
        """Snapshots are saved durably before `save` returns: nothing to lose."""
