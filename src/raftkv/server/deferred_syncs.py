"""WAL syncs the Ready loop does not wait for (Ready.may_persist_later): the loop goes on to
the next Ready while the disk works, and learns that the entries are durable when the sync
ends (`RaftNode.entries_persisted`).

A leader's (thesis §10.2.1): proposals arriving meanwhile reach the followers (and the WAL's
buffer) without waiting for this fsync, and the leader counts itself towards a commit once
the sync ends. A follower's: the AppendEntries arriving meanwhile are appended at once and
their sync starts the moment this one ends, in the sync thread, without a wake-up of the
loop in between; the messages that promise the entries durable (its acknowledgements) go
with the sync that makes them so, written by the sync thread itself where the link allows
(`PeerLink.send_from_thread`) and otherwise by the loop once the sync has ended. Nothing
that promises an entry leaves before the sync that covers it returns: a later Ready that
syncs nothing hands its own such messages to a sync too (`ReadyDurability.promises_now`,
server/ready_durability.py, which decides which Readies come here).

At most one sync waits to start: the Readies handed off meanwhile share it, as they would
share a sync on the loop (one sync per Ready doubled the leader's fsyncs at C=64). Each sync
makes durable all that was buffered when it started, and takes only the messages handed off
before it started (under the lock, after those Readies' appends), so whatever order the
syncs run in (the simulator's executor picks one), an entry reported durable is, and a
message sent promises only what is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

from raftkv.core import Entry
from raftkv.server.sync_thread import run_off_loop
from raftkv.transport.shared import FramedMessage

# (index, term) of the last entry made durable, the sync's seconds, and when the messages
# it carried were written (0.0: none was, or the loop wrote them all).
Persisted = Callable[[int, int, float, float], None]


class DeferredSyncs:
    def __init__(
        self,
        executor: Executor,
        sync: Callable[[], None],
        persisted: Persisted,
        failed: Callable[[BaseException], None],
        send_from_loop: Callable[[FramedMessage], object],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._executor = executor
        self._sync = sync
        self._persisted = persisted
        self._failed = failed
        self._send_from_loop = send_from_loop
        self._clock = clock
        # Shared with the sync thread: the last entry handed off, the messages to send once
        # it is durable, and whether a sync for them waits to start.
        self._lock = threading.Lock()
        self._wanted = (0, 0)
        self._messages: list[FramedMessage] = []
        self._queued = False
        self._in_flight = 0  # syncs started and not yet ended (the loop's alone)

    @property
    def busy(self) -> bool:
        """Whether a sync is under way or waits to start."""
        return self._in_flight > 0

    def start(self, last: Entry | None, messages: list[FramedMessage]) -> None:
        """Make the entries handed off through `last` durable, then send `messages`, without
        waiting. The entries must be appended already. Without `last`: only send `messages`
        after a sync that starts from now (they promise entries appended earlier)."""
        with self._lock:
            if last is not None:
                self._wanted = (last.index, last.term)
            self._messages.extend(messages)
            if self._queued:
                return  # the sync waiting to start takes these too
            self._queued = True
        self._in_flight += 1
        future = run_off_loop(self._executor, self._job)
        future.add_done_callback(self._done)

    def _job(self) -> tuple[int, int, float, float, list[FramedMessage]]:
        """In the sync thread. What it takes goes first: entries and messages handed off
        after that are left to another job, and the buffer the sync takes holds everything
        appended before `_wanted` named it."""
        with self._lock:
            self._queued = False
            index, term = self._wanted
            messages, self._messages = self._messages, []
        started = self._clock()
        self._sync()
        ended = self._clock()
        for sent, (_, link, payload) in enumerate(messages):
            if not link.send_from_thread(payload):
                return index, term, ended - started, ended if sent else 0.0, messages[sent:]
        return index, term, ended - started, ended if messages else 0.0, []

    def _done(
        self, done: asyncio.Future[tuple[int, int, float, float, list[FramedMessage]]]
    ) -> None:
        self._in_flight -= 1
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            self._failed(error)
            return
        index, term, seconds, written_at, unsent = done.result()
        for message in unsent:
            self._send_from_loop(message)
        self._persisted(index, term, seconds, written_at)
