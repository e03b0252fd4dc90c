"""The WAL against a plain list model over random operation sequences (Hypothesis).

Segments are tiny and the cache holds two entries, so rotation, segment deletion and reads
from the files all happen. `reopen` closes without syncing: the store must come back
exactly as the model's last synced state.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftkv.core.messages import Entry, HardState
from raftkv.storage.file_log import FileStorage

SEGMENT_BYTES = 256
CACHE_ENTRIES = 2
TERMS_MAX = 6
BATCH_MAX = 6


@dataclass
class ModelLog:
    """The log as a list after a compaction point, and the hard state."""

    snapshot_index: int = 0
    snapshot_term: int = 0
    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)


class WalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="raftkv-wal-machine-")
        self.storage = self._open()
        self.model = ModelLog()
        self.durable = ModelLog()
        self.serial = 0  # makes every entry's data unique, so a stale entry shows

    def _open(self) -> FileStorage:
        return FileStorage(
            self.directory, segment_bytes_max=SEGMENT_BYTES, cache_entries_max=CACHE_ENTRIES
        )

    @rule(data=st.data(), count=st.integers(1, BATCH_MAX), term=st.integers(1, TERMS_MAX))
    def append(self, data: st.DataObject, count: int, term: int) -> None:
        model = self.model
        first = data.draw(st.integers(model.snapshot_index + 1, model.last_index + 1), "first")
        entries = []
        for index in range(first, first + count):
            self.serial += 1
            entries.append(Entry(term, index, index % 3, f"{self.serial}".encode() * (index % 4)))
        self.storage.append(entries)
        del model.entries[first - model.snapshot_index - 1 :]
        model.entries.extend(entries)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        model = self.model
        through = data.draw(st.integers(model.snapshot_index, model.last_index + 2), "through")
        if through <= model.snapshot_index:
            self.storage.compact(through, 1)
            return
        position = through - model.snapshot_index - 1
        term = model.entries[position].term if position < len(model.entries) else TERMS_MAX
        self.storage.compact(through, term)
        del model.entries[: position + 1]
        model.snapshot_index, model.snapshot_term = through, term

    @rule(offset=st.integers(-3, 10), term=st.integers(1, TERMS_MAX))
    def reset(self, offset: int, term: int) -> None:
        index = max(self.model.snapshot_index + offset, 0)
        self.storage.reset(index, term)
        self.model.entries = []
        self.model.snapshot_index, self.model.snapshot_term = index, term

    @rule(
        term=st.integers(0, TERMS_MAX),
        vote=st.none() | st.integers(1, 5),
        commit=st.integers(0, 50),
    )
    def set_hard_state(self, term: int, vote: int | None, commit: int) -> None:
        hard_state = HardState(term, vote, commit)
        self.storage.set_hard_state(hard_state)
        self.model.hard_state = hard_state

    @rule()
    def sync(self) -> None:
        self.storage.sync()
        self.durable = copy.deepcopy(self.model)

    @rule()
    def reopen(self) -> None:
        self.storage.close()
        self.storage = self._open()
        self.model = copy.deepcopy(self.durable)

    @precondition(lambda machine: machine.model.entries)
    @rule(data=st.data())
    def read_a_range(self, data: st.DataObject) -> None:
        model = self.model
        low = data.draw(st.integers(model.snapshot_index + 1, model.last_index + 1), "low")
        high = data.draw(st.integers(low, model.last_index + 1), "high")
        offset = model.snapshot_index + 1
        assert self.storage.entries(low, high) == model.entries[low - offset : high - offset]

    @invariant()
    def matches_the_model(self) -> None:
        model, storage = self.model, self.storage
        assert storage.first_index() == model.snapshot_index + 1
        assert storage.last_index() == model.last_index
        assert storage.term(model.snapshot_index) == model.snapshot_term
        assert [storage.term(entry.index) for entry in model.entries] == [
            entry.term for entry in model.entries
        ]
        assert storage.term(model.last_index + 1) is None
        assert storage.entries(model.snapshot_index + 1, model.last_index + 1) == model.entries
        assert storage.hard_state() == model.hard_state

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.directory, ignore_errors=True)


WalMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_wal_matches_a_list_model = WalMachine.TestCase
