"""Making a Ready's writes durable, and holding back what promises them until they are.

The Ready contract (core/ready.py): a Ready's entries and hard state are synced before its
`messages_after_persist` leave. Where the sync runs is a matter of cost, decided here Ready
by Ready: a lone small entry on the event loop (the hop to a thread and back costs more than
a fast fsync), a batch or a large entry in the node's sync thread while the loop waits
(server/sync_thread.py), and a Ready the core marks `may_persist_later` (a leader's entries,
a follower's entries alone) in a sync the loop does not wait for at all
(server/deferred_syncs.py), its promising messages going with that sync. While such a sync
is under way, a later Ready that syncs nothing may still promise entries it covers, and its
promises wait for a sync too (`promises_now`). docs/ARCHITECTURE.md ("The server's Ready
loop", sessions 14, 38 and 50) gives the measurements behind each rule.

The stores are the server's (opened at its start, `open`); so is the sync thread, shut down
by the server when it stops, and what it does when a deferred sync ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor

from raftkv.core import Ready
from raftkv.core.messages import AnyMessage, AppendEntriesResponse
from raftkv.server.deferred_syncs import DeferredSyncs, Persisted
from raftkv.server.options import SYNC_THREAD_MIN_BYTES
from raftkv.server.stalls import StallReporter
from raftkv.server.sync_thread import run_off_loop
from raftkv.server.write_stages import WriteStages
from raftkv.storage.base import LogStore, StableStore
from raftkv.transport.shared import FramedMessage


class ReadyDurability:
    def __init__(
        self,
        sync_executor: Executor | None,
        sync_thread_min_entries: int,
        stalls: StallReporter,
        stages: WriteStages,
        *,
        stable_index: Callable[[], int],
        frame: Callable[[list[AnyMessage]], list[FramedMessage]],
        send_framed: Callable[[FramedMessage], object],
        persisted: Persisted,
        failed: Callable[[BaseException], None],
    ) -> None:
        """`stable_index`: the node's `log.stable`, the last index a sync reported durable;
        `frame` and `send_framed`: the transport's, for the promises a deferred sync
        carries; `persisted` and `failed`: what the server does when a deferred sync ends
        (DeferredSyncs)."""
        self._sync_executor = sync_executor
        self._sync_thread_min_entries = sync_thread_min_entries
        self._stalls = stalls
        self._stages = stages
        self._stable_index = stable_index
        self._frame = frame
        self._storage: LogStore
        self._stable_store: StableStore
        # One store holds the log and the hard state (the WAL): one sync covers both.
        self._stable_in_log = True
        # The syncs the Ready loop does not wait for (none without a sync thread).
        self.deferred_syncs = (
            None
            if sync_executor is None
            else DeferredSyncs(
                sync_executor, self.sync_stores, persisted, failed, send_framed, clock=stages.now
            )
        )

    def open(self, storage: LogStore, stable_store: StableStore) -> None:
        """The stores the server opened (or was given) at its start."""
        self._storage = storage
        self._stable_store = stable_store
        log: object = storage
        self._stable_in_log = stable_store is log

    def sync_stores(self) -> None:
        """Make the Ready's writes durable: the log, then the hard state, as the core
        simulator does; a store holding both (the WAL) is synced once."""
        self._storage.sync()
        if not self._stable_in_log:
            self._stable_store.sync()

    async def sync(self, ready: Ready) -> bool:
        """Make `ready`'s writes (appended and set by the caller) durable, or hand them to a
        deferred sync: True if deferred (its promising messages go with it), False once
        durable (the caller sends them)."""
        started = time.perf_counter()
        if self._sync_in_thread(ready):
            if self._start_deferred_sync(ready):
                return True
            executor = self._sync_executor
            assert executor is not None  # (as `_sync_in_thread` checked)
            await run_off_loop(executor, self.sync_stores)
        else:
            self.sync_stores()
        self._stalls.synced(time.perf_counter() - started)
        self._stages.synced(ready.entries[-1].index if ready.entries else 0)
        return False

    def _sync_in_thread(self, ready: Ready) -> bool:
        """Under load (a batch of entries) the loop goes on while the disk works: the
        requests and acknowledgements that arrive meanwhile are read and stepped then,
        not after the fsync. A single entry is synced on the loop: the hop to a thread and
        back costs more than a fast fsync (docs/ARCHITECTURE.md, "The server's Ready loop"),
        unless it is large (`SYNC_THREAD_MIN_BYTES`), and its fsync no fast one.
        Except a Ready that may persist later while a deferred sync is under way: on the
        loop it would wait for that sync to end, then sync again; in the thread it joins
        the next."""
        smallest = self._sync_thread_min_entries
        if self._sync_executor is None or smallest <= 0:
            return False
        if len(ready.entries) >= smallest:
            return True
        if sum(len(entry.data) for entry in ready.entries) >= SYNC_THREAD_MIN_BYTES:
            return True
        syncs = self.deferred_syncs
        return ready.may_persist_later and syncs is not None and syncs.busy

    def _start_deferred_sync(self, ready: Ready) -> bool:
        """Hand `ready`'s sync, and the messages that promise it (a follower's
        acknowledgements), to the syncs the loop does not wait for, if the Ready allows;
        False, nothing done, otherwise."""
        syncs = self.deferred_syncs
        if not ready.may_persist_later or syncs is None:
            return False
        promising = ready.messages_after_persist
        framed = self._frame(promising) if promising else []
        if promising and not framed:
            # None framed (each dropped, or a transport that frames none): the loop sends
            # them, as it would, after a sync it waits for.
            return False
        syncs.start(ready.entries[-1], framed)
        return True

    def promises_now(self, messages: list[AnyMessage]) -> list[AnyMessage]:
        """Of a Ready that syncs nothing, the messages that may leave now. Such a Ready may
        still promise entries an earlier Ready appended and handed to a sync not yet ended:
        a follower's answer to an AppendEntries repeating entries it holds (a retransmission,
        a probe). While a deferred sync is under way, an acknowledgement through an index
        not yet reported durable (`log.stable`) is handed to a sync that starts now (joining
        the one waiting to start, if any), which makes all appended so far durable; one
        through a durable index, a refusal, goes now (heartbeat answers carry read
        confirmations). With no deferred sync under way, all appended is durable."""
        syncs = self.deferred_syncs
        if syncs is None or not syncs.busy:
            return messages
        stable = self._stable_index()
        now: list[AnyMessage] = []
        later: list[AnyMessage] = []
        for message in messages:
            if isinstance(message, AppendEntriesResponse) and (
                not message.success or message.match_index <= stable
            ):
                now.append(message)
            else:
                later.append(message)
        if not later:
            return messages
        framed = self._frame(later)
        if framed:
            syncs.start(None, framed)
        # (none framed: each dropped, as `send` would drop it; never sent before the sync)
        return now
