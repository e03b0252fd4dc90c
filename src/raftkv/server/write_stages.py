"""Where a write's time goes inside the nodes, stage by stage (`raft_write_stage_seconds`).

One write in `SAMPLE_EVERY` proposed here is followed through the leader's Ready loop: from
its proposal to the Ready that hands it to the disk (`queue`), that Ready's sending, append
and fsync (`leader_disk`; the fsync alone is `raft_fsync_seconds`), from there to the Ready
that finds it committed (`replicate`: the network both ways and a follower's work), applying
that Ready's entries (`apply`), and from the applied write to its handler running again
(`resume`). A follower times, for one AppendEntries with entries in `SAMPLE_EVERY` (one at
a time), the wait from its arrival to the Ready that persists it (`follower_queue`) and
from that Ready's start to the acknowledgement leaving (`follower_disk`). `raft-bench
--breakdown` reads the sums and counts: with the client's latency they split a write at C=1
into its parts (README, "Performance").

Sampled, one write at a time: a few comparisons per Ready, nothing per entry, so the
timing costs nothing a benchmark could see. A sample that never completes (its leader
lost office, the entry was replaced) is dropped when the next is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

from raftkv.core.ready import Ready

SAMPLE_EVERY = 8
LEADER_STAGES = ("queue", "leader_disk", "replicate", "apply", "resume")
FOLLOWER_STAGES = ("follower_queue", "follower_disk")
# 10 µs .. 1 s: a stage on loopback is tens of microseconds to milliseconds.
STAGE_BUCKETS = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
)  # fmt: skip


class WriteStages:
    def __init__(
        self, registry: CollectorRegistry, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._clock = clock
        histogram = Histogram(
            "raft_write_stage_seconds",
            "A sampled write's time in each stage inside the nodes (write_stages.py)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self._observe = {
            stage: histogram.labels(stage).observe for stage in LEADER_STAGES + FOLLOWER_STAGES
        }
        self._proposals = 0
        # The leader's sample: its index and the times of its stages so far.
        self._index = 0
        self._times: list[float] = []
        # The follower's sample: when the AppendEntries arrived, and its last entry; when
        # the Ready that persists it started, and that Ready's last entry.
        self._arrived = 0.0
        self._arrived_last = 0
        self._persisting_since = 0.0
        self._persisting_last = 0
        self._appends = 0

    # --- the leader's sample ----------------------------------------------------------------
    def proposed(self, index: int) -> None:
        self._proposals += 1
        if self._proposals % SAMPLE_EVERY == 0:
            self._index, self._times = index, [self._clock()]

    def ready_started(self, ready: Ready) -> None:
        index = self._index
        if index:
            times = self._times
            if len(times) == 1 and ready.entries and ready.entries[-1].index >= index:
                times.append(self._clock())  # handed to the disk
            elif (
                len(times) == 3
                and ready.committed_entries
                and ready.committed_entries[-1].index >= index
            ):
                times.append(self._clock())  # found committed
        if self._arrived and ready.entries and ready.entries[-1].index >= self._arrived_last:
            now = self._clock()
            self._observe["follower_queue"](now - self._arrived)
            self._arrived = 0.0
            self._persisting_since = now
            self._persisting_last = ready.entries[-1].index

    def synced(self, last_index: int) -> None:
        """The entries through `last_index` are durable on this node."""
        if self._index and len(self._times) == 2 and last_index >= self._index:
            self._times.append(self._clock())

    def applied(self) -> None:
        if self._index and len(self._times) == 4:
            self._times.append(self._clock())

    def resumed(self, index: int) -> None:
        if index != self._index or len(self._times) != 5:
            return
        times = self._times
        times.append(self._clock())
        for stage, start, end in zip(LEADER_STAGES, times, times[1:], strict=False):
            self._observe[stage](end - start)
        self._index = 0

    # --- the follower's sample ----------------------------------------------------------------
    def append_arrived(self, last_index: int) -> None:
        """An AppendEntries with entries up to `last_index` was stepped. Sampled, as the
        leader's writes are: a follower's two observations a Ready were ~1 % of its CPU."""
        self._appends += 1
        if self._appends % SAMPLE_EVERY:
            return
        if not self._arrived and not self._persisting_since:
            self._arrived, self._arrived_last = self._clock(), last_index

    def now(self) -> float:
        """The time on this sampler's clock (from any thread)."""
        return self._clock()

    def acknowledged(self, through: int, at: float = 0.0) -> None:
        """The messages that promise the entries through `through` durable have left: now,
        or at `at` (a `now()` of the sync thread's, which writes them before the loop
        learns it; a follower's syncs may end after later Readies started)."""
        if self._persisting_since and through >= self._persisting_last:
            self._observe["follower_disk"]((at or self._clock()) - self._persisting_since)
            self._persisting_since = 0.0
