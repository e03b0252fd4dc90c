"""A leader's WAL syncs that the Ready loop does not wait for (Ready.may_persist_later;
thesis §10.2.1): the loop goes on to the next Ready, so that proposals arriving meanwhile
reach the followers (and the WAL's buffer) without waiting for this fsync, and the leader
counts itself towards a commit once the sync ends (`RaftNode.entries_persisted`).

At most one sync waits to start: the Readies handed off meanwhile share it, as they would
share a sync on the loop (one sync per Ready doubled the leader's fsyncs at C=64). Each sync
makes durable all that was buffered when it started, so whatever order the syncs run in (the
simulator's executor picks one), an entry reported durable is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor

from raftkv.core import Entry
from raftkv.server.sync_thread import run_off_loop

# (index, term) of the last entry made durable, and the sync's seconds.
Persisted = Callable[[int, int, float], None]


class LeaderSyncs:
    def __init__(
        self,
        executor: Executor,
        sync: Callable[[], None],
        persisted: Persisted,
        failed: Callable[[BaseException], None],
    ) -> None:
        self._executor = executor
        self._sync = sync
        self._persisted = persisted
        self._failed = failed
        # The last entry handed off, and whether a sync for it waits to start.
        self._wanted = (0, 0)
        self._queued = False
        self._in_flight = 0  # syncs started and not yet ended

    @property
    def busy(self) -> bool:
        """Whether a sync is under way or waits to start."""
        return self._in_flight > 0

    def start(self, last: Entry) -> None:
        """Make the entries handed off through `last` durable, without waiting."""
        self._wanted = (last.index, last.term)
        if not self._queued:
            self._queued = True
            self._in_flight += 1
            future = run_off_loop(self._executor, self._job)
            future.add_done_callback(self._done)

    def _job(self) -> tuple[int, int, float]:
        """In the sync thread. The flag goes first: entries handed off after it are left to
        another job, and the buffer the sync takes holds everything appended before
        `_wanted` named it."""
        self._queued = False
        index, term = self._wanted
        started = time.perf_counter()
        self._sync()
        return index, term, time.perf_counter() - started

    def _done(self, done: asyncio.Future[tuple[int, int, float]]) -> None:
        self._in_flight -= 1
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            self._failed(error)
        else:
            self._persisted(*done.result())
