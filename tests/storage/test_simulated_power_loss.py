"""Power loss at any point, on the simulated disk: the WAL comes back holding at least
everything acknowledged, and nothing that was not written.

After a crash the reopened WAL must hold exactly one of the states `wal_model` allows: the
acknowledged one (last successful sync) or one reached by a prefix of the records written
since. Crashes strike between any two file-system calls (`schedule_crash`), so inside a
sync (between its write and its fdatasync: a torn write), a rotation, a segment deletion
and the recovery's own repairs. Segments are tiny and the cache holds two entries, so
rotation, deletion and reads from the files all happen.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from wal_model import ModelLog, State, TrackedStorage, describe, observed

from raftkv.core.messages import Entry, HardState
from raftkv.storage.file_log import FileStorage
from raftkv.storage.simulated_disk import DiskFaults, SimulatedCrash, SimulatedFileSystem

WAL_DIRECTORY = "/node/wal"
SEGMENT_BYTES = 256
CACHE_ENTRIES = 2
TERMS_MAX = 6
BATCH_MAX = 6
# A crash during a reopen is retried this many times before the reopen runs unharmed.
REOPEN_CRASHES_MAX = 3


def open_storage(filesystem: SimulatedFileSystem) -> FileStorage:
    return FileStorage(
        WAL_DIRECTORY,
        segment_bytes_max=SEGMENT_BYTES,
        cache_entries_max=CACHE_ENTRIES,
        filesystem=filesystem,
    )


def reopen_after_crash(
    filesystem: SimulatedFileSystem, candidates: list[State], rng: random.Random
) -> FileStorage:
    """Crash, reopen (crashing again inside recovery at times), and check the outcome."""
    filesystem.crash()
    for _attempt in range(REOPEN_CRASHES_MAX):
        if rng.random() < 0.3:
            filesystem.schedule_crash(rng.randint(1, 12))
        try:
            storage = open_storage(filesystem)
        except SimulatedCrash:
            filesystem.crash()
            continue
        if filesystem.powered_off or not _survives_reads(storage, filesystem):
            filesystem.crash()
            continue
        break
    else:
        storage = open_storage(filesystem)
    filesystem.cancel_crash()
    state = observed(storage)
    assert state in candidates, (
        f"after the crash: {describe(state)}; allowed: {[describe(c) for c in candidates]}"
    )
    return storage


def _survives_reads(storage: FileStorage, filesystem: SimulatedFileSystem) -> bool:
    """Read the whole log once (a pending crash may strike in a pread)."""
    try:
        observed(storage)
    except SimulatedCrash:
        return False
    return True


class PowerLossMachine(RuleBasedStateMachine):
    """Random WAL operations; a power failure may be armed to strike within the next calls."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = random.Random(0)
        self.filesystem = SimulatedFileSystem(
            random.Random(1), DiskFaults(torn_write_zeros_rate=0.3)
        )
        self.tracked = TrackedStorage(open_storage(self.filesystem))
        self.serial = 0  # makes every entry's data unique, so a stale entry shows

    def _crashed(self) -> None:
        """A scheduled crash struck: power back on, reopen, check, carry on from there."""
        storage = reopen_after_crash(self.filesystem, self.tracked.candidates(), self.rng)
        self.tracked = TrackedStorage(storage, observed(storage))

    def _seed(self, seed: int) -> None:
        self.rng.seed(seed)
        self.filesystem.rng.seed(seed)

    @rule(data=st.data(), count=st.integers(1, BATCH_MAX), term=st.integers(1, TERMS_MAX))
    def append(self, data: st.DataObject, count: int, term: int) -> None:
        model = self.tracked.model
        first = data.draw(st.integers(model.snapshot_index + 1, model.last_index + 1), "first")
        entries = []
        for index in range(first, first + count):
            self.serial += 1
            entries.append(Entry(term, index, index % 3, f"{self.serial}".encode() * (index % 5)))
        self.tracked.append(entries)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        model = self.tracked.model
        through = data.draw(st.integers(model.snapshot_index, model.last_index + 2), "through")
        if through > model.last_index:
            self.tracked.compact(through, TERMS_MAX)
        else:
            self.tracked.compact(through, self.tracked.term_at(through))

    @rule(offset=st.integers(-3, 10), term=st.integers(1, TERMS_MAX))
    def reset(self, offset: int, term: int) -> None:
        self.tracked.reset(max(self.tracked.model.snapshot_index + offset, 0), term)

    @rule(
        term=st.integers(0, TERMS_MAX),
        vote=st.none() | st.integers(1, 5),
        commit=st.integers(0, 50),
    )
    def set_hard_state(self, term: int, vote: int | None, commit: int) -> None:
        self.tracked.set_hard_state(HardState(term, vote, commit))

    @rule()
    def sync(self) -> None:
        try:
            self.tracked.sync()
        except SimulatedCrash:
            self._crashed()

    @rule(after=st.integers(1, 14), seed=st.integers(0, 2**32 - 1))
    def arm_a_power_failure(self, after: int, seed: int) -> None:
        """The power fails before the `after`-th file-system call from now; the seed picks
        what survives the crash."""
        self._seed(seed)
        self.filesystem.schedule_crash(after)

    @rule(seed=st.integers(0, 2**32 - 1))
    def power_failure_now(self, seed: int) -> None:
        self._seed(seed)
        self._crashed()

    @precondition(lambda machine: machine.tracked.model.entries)
    @rule(data=st.data())
    def read_a_range(self, data: st.DataObject) -> None:
        model = self.tracked.model
        low = data.draw(st.integers(model.snapshot_index + 1, model.last_index + 1), "low")
        high = data.draw(st.integers(low, model.last_index + 1), "high")
        offset = model.snapshot_index + 1
        try:
            read = self.tracked.storage.entries(low, high)
        except SimulatedCrash:
            self._crashed()
            return
        assert read == model.entries[low - offset : high - offset]

    def teardown(self) -> None:
        # Whatever was acknowledged last must survive one more power failure.
        self._crashed()


PowerLossMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=50, deadline=None
)
test_power_loss_at_any_point_keeps_every_acknowledged_write = PowerLossMachine.TestCase


# --- every crash point of a fixed workload ----------------------------------------------------
def workload(tracked: TrackedStorage, rng: random.Random, batches: int) -> None:
    """Appends (some overwriting a suffix), hard states, compactions, a reset, syncs."""
    for batch in range(batches):
        model = tracked.model
        first = model.last_index + 1
        if rng.random() < 0.15 and model.entries:
            first = rng.randint(model.snapshot_index + 1, model.last_index)
        term = 1 + batch // 4
        count = rng.randint(1, 5)
        tracked.append(
            [
                Entry(term, i, 0, b"%d-%d" % (batch, i) * rng.randint(1, 6))
                for i in range(first, first + count)
            ]
        )
        tracked.set_hard_state(HardState(term, 1 + batch % 3, max(first - 2, 0)))
        if rng.random() < 0.2 and tracked.model.last_index > 4:
            through = tracked.model.last_index - rng.randint(0, 3)
            tracked.compact(through, tracked.term_at(through))
        if batch == batches // 2:
            tracked.reset(tracked.model.last_index + 2, term)
        if rng.random() < 0.8:
            tracked.sync()
    tracked.sync()


def test_a_crash_before_every_file_system_call_of_a_workload() -> None:
    """Run the workload once to count its calls, then once per call with the power failing
    just before it; each crash seeds what survives differently."""
    batches = 40
    filesystem = SimulatedFileSystem(random.Random(0))
    workload(TrackedStorage(open_storage(filesystem)), random.Random(7), batches)
    calls = filesystem.operations
    assert calls > 150, calls
    torn_or_cut = 0
    for crash_point in range(1, calls + 1):
        filesystem = SimulatedFileSystem(
            random.Random(crash_point), DiskFaults(torn_write_zeros_rate=0.3)
        )
        filesystem.schedule_crash(crash_point)
        tracked = None
        try:
            tracked = TrackedStorage(open_storage(filesystem))
            workload(tracked, random.Random(7), batches)
        except SimulatedCrash:
            pass
        assert filesystem.powered_off, f"the crash before call {crash_point} did not strike"
        candidates = tracked.candidates() if tracked is not None else [ModelLog().freeze()]
        storage = reopen_after_crash(filesystem, candidates, random.Random(crash_point))
        if observed(storage) not in candidates[:1] + candidates[-1:]:
            torn_or_cut += 1
        # Carry on without a new hard state: compacting deletes the older segments, and the
        # hard state must not go with them (it did when a torn first write of a new segment
        # left it without one).
        carried_on = TrackedStorage(storage, observed(storage))
        last = carried_on.model.last_index
        carried_on.append([Entry(99, last + 1, 0, b"after"), Entry(99, last + 2, 0, b"more")])
        carried_on.compact(last + 1, 99)
        carried_on.sync()
        reopen_after_crash(filesystem, [carried_on.acknowledged], random.Random(crash_point))
    # Some crashes kept part of a sync's records: the prefix states are reached.
    assert torn_or_cut > 0
