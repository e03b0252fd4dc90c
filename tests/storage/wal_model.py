"""A list model of the WAL for the simulated-disk tests, and the states a crash may leave.

`TrackedStorage` drives a FileStorage and the model together. Besides the model's current
state it keeps the acknowledged one (as of the last successful `sync()`) and every state
in between, at the granularity of the WAL's records: one per appended entry, per
truncation, per hard state, per compaction and per reset. A sync writes those records in
that order and the disk keeps a prefix of what it was given, so after a crash the
reopened WAL must hold exactly one of `candidates()`: never less than what was
acknowledged, never something that was not written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from raftkv.core.messages import Entry, HardState
from raftkv.storage.file_log import FileStorage

# (snapshot index, snapshot term, entries after it, hard state)
State = tuple[int, int, tuple[Entry, ...], HardState]


@dataclass
class ModelLog:
    snapshot_index: int = 0
    snapshot_term: int = 0
    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def freeze(self) -> State:
        return (self.snapshot_index, self.snapshot_term, tuple(self.entries), self.hard_state)

    @classmethod
    def thaw(cls, state: State) -> ModelLog:
        snapshot_index, snapshot_term, entries, hard_state = state
        return cls(snapshot_index, snapshot_term, list(entries), hard_state)


def observed(storage: FileStorage) -> State:
    """The state a FileStorage holds, in the model's terms."""
    first, last = storage.first_index(), storage.last_index()
    snapshot_term = storage.term(first - 1)
    assert snapshot_term is not None
    return (first - 1, snapshot_term, tuple(storage.entries(first, last + 1)), storage.hard_state())


class TrackedStorage:
    """A FileStorage and its model, driven together."""

    def __init__(self, storage: FileStorage, state: State | None = None) -> None:
        self.storage = storage
        self.model = ModelLog.thaw(state) if state is not None else ModelLog()
        self.acknowledged = self.model.freeze()
        self.pending: list[State] = []  # the states written since, in record order

    def candidates(self) -> list[State]:
        return [self.acknowledged, *self.pending]

    def append(self, entries: Sequence[Entry]) -> None:
        self.storage.append(entries)
        model = self.model
        first = entries[0].index
        if first <= model.last_index:
            del model.entries[first - model.snapshot_index - 1 :]
            self.pending.append(model.freeze())  # the TRUNCATE record
        for entry in entries:
            model.entries.append(entry)
            self.pending.append(model.freeze())

    def compact(self, through_index: int, through_term: int) -> None:
        self.storage.compact(through_index, through_term)
        model = self.model
        if through_index <= model.snapshot_index:
            return
        del model.entries[: through_index - model.snapshot_index]
        model.snapshot_index, model.snapshot_term = through_index, through_term
        self.pending.append(model.freeze())

    def reset(self, index: int, term: int) -> None:
        self.storage.reset(index, term)
        self.model = ModelLog(index, term, [], self.model.hard_state)
        self.pending.append(self.model.freeze())

    def set_hard_state(self, hard_state: HardState) -> None:
        self.storage.set_hard_state(hard_state)
        if hard_state != self.model.hard_state:
            self.model.hard_state = hard_state
            self.pending.append(self.model.freeze())

    def sync(self) -> None:
        self.storage.sync()
        self.acknowledged = self.model.freeze()
        self.pending = []

    def term_at(self, index: int) -> int:
        """The model's term at `index` (the compaction point included)."""
        model = self.model
        if index == model.snapshot_index:
            return model.snapshot_term
        return model.entries[index - model.snapshot_index - 1].term


def describe(state: State) -> str:
    snapshot_index, snapshot_term, entries, hard_state = state
    last = snapshot_index + len(entries)
    return f"log ({snapshot_index}/{snapshot_term}, {snapshot_index + 1}..{last}) {hard_state}"
