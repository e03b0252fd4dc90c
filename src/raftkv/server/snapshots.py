"""Taking snapshots and installing received ones (§7), without stalling the event loop.

Taking one: the state machine's state is taken on the loop (`prepare_snapshot`; the KV
store freezes its key map, copied on write shard by shard, kv/key_map.py), encoded (the KV
store's key map walked at idle priority, kv/snapshot_native.c) and written in the disk
thread, and the log is compacted by the Ready loop
between two Readies, the only place where the WAL is never being synced at the same time,
a few thousand entries a pass.

A snapshot is labelled with the index the state machine holds when it is copied (the
server's `applied_index`), never the core's: a received snapshot moves the core's applied
index before the state machine is restored. And one taken while a received snapshot is
being installed is never saved at or below that snapshot's index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol

from raftkv.core import Entry, RaftNode, SnapshotMeta
from raftkv.kv import StateMachine
from raftkv.kv.snapshot_format import IDLE_SECONDS, walks_moved
from raftkv.server.metrics import NodeMetrics
from raftkv.server.options import SNAPSHOT_TRAILING_BYTES
from raftkv.storage.base import LogStore, SnapshotStore

logger = logging.getLogger("raftkv.node")

# A snapshot is also due once this many bytes of commands were applied since the last one.
SNAPSHOT_BYTES_DEFAULT = 64 << 20
# Log entries a taken snapshot lets the Ready loop drop per pass at most (well under a
# millisecond), so that freeing the log behind a large state's snapshot stalls nothing.
COMPACT_STEP_ENTRIES = 4096


class SnapshotHost(Protocol):
    """What taking and installing snapshots needs of the node (`RaftServer`). Properties:
    the core and the stores exist only once the node has started."""

    @property
    def node(self) -> RaftNode: ...

    @property
    def storage(self) -> LogStore: ...

    @property
    def snapshot_store(self) -> SnapshotStore: ...

    @property
    def state_machine(self) -> StateMachine: ...

    @property
    def applied_index(self) -> int:
        """The index the state machine reflects: what a snapshot taken now holds."""

    def state_machine_restored(self, index: int) -> None:
        """The state machine was just restored from a snapshot at `index`."""

    def wake(self) -> None:
        """Have the Ready loop run (a taken snapshot waits there to compact the log)."""


class TrailingLog(Protocol):
    """The part of the core's log `trailing_entries` reads."""

    @property
    def snapshot_index(self) -> int: ...

    def entry(self, index: int) -> Entry: ...


def trailing_entries(log: TrailingLog, index: int, entries_max: int) -> int:
    """How many entries up to `index` the log keeps after a snapshot there, for followers
    slightly behind (cheaper than sending them the snapshot): at most `entries_max`,
    holding at most SNAPSHOT_TRAILING_BYTES of commands."""
    kept = size = 0
    while kept < entries_max and index - kept > log.snapshot_index:
        size += len(log.entry(index - kept).data)
        if size > SNAPSHOT_TRAILING_BYTES:
            break
        kept += 1
    return kept


def snapshot_encoder(state_machine: StateMachine) -> Callable[[], bytes]:
    """Copy the state now, on the loop, and return what encodes that copy, to run in the disk
    thread: encoding a large state on the loop would stall the node (heartbeats, requests).
    A state machine without `prepare_snapshot` encodes on the loop, here."""
    prepare: Callable[[], Callable[[], bytes]] | None = getattr(
        state_machine, "prepare_snapshot", None
    )
    if prepare is not None:
        return prepare()
    data_now = state_machine.snapshot()
    return lambda: data_now


class SnapshotTaker:
    def __init__(
        self,
        server: SnapshotHost,
        metrics: NodeMetrics,
        disk_executor: Executor,
        *,
        snapshot_entries: int,
        trailing_entries_max: int,
        log_fraction: float = 0.0,
        fraction_from_bytes: int = 0,
    ) -> None:
        self.server = server
        self._metrics = metrics
        self._disk_executor = disk_executor
        # A snapshot is due once this many entries were applied since the last one (0: never
        # by count, only by bytes).
        self._snapshot_entries = snapshot_entries
        # ...and, once the last snapshot had `fraction_from_bytes` or more, commands adding up
        # to `log_fraction` of its size (options.py, SNAPSHOT_LOG_FRACTION_DEFAULT).
        self._log_fraction = log_fraction
        self._fraction_from_bytes = fraction_from_bytes
        # The size of the last snapshot taken, installed or loaded at start-up.
        self.last_bytes = 0
        self._trailing_entries_max = trailing_entries_max
        self._task: asyncio.Task[None] | None = None
        self._ready_to_compact: tuple[SnapshotMeta, bytes] | None = None
        # Where the log is being compacted to, a step per Ready (`_compact_a_step`).
        self._compact_through: int | None = None
        self.last_index = 0
        self.bytes_since = 0
        self.loop_blocked_seconds = 0.0

    def note_applied_bytes(self, count: int) -> None:
        self.bytes_since += count

    async def maybe_take(self) -> None:
        """Called by the Ready loop after each Ready: compact for a finished snapshot, and
        start a new one when the log has grown enough."""
        server = self.server
        node = server.node
        if self._ready_to_compact is not None:
            self._compact_a_step()
        if self._task is not None or self._ready_to_compact is not None:
            return
        self.last_index = max(self.last_index, node.log.snapshot_index)
        if self._due():
            self._task = asyncio.create_task(self._take(), name="snapshot")

    def _compact_a_step(self) -> None:
        """Drop at most COMPACT_STEP_ENTRIES more of the log a taken snapshot covers, from
        the core's log and the WAL, and have the Ready loop come back for the rest. All at
        once, the entries of a snapshot of a large state (60,000 and more) were freed on the
        loop in one go: 6-32 ms without a request, acknowledgement or heartbeat served, on
        every node at every snapshot."""
        server = self.server
        node = server.node
        assert self._ready_to_compact is not None
        meta, data = self._ready_to_compact
        if self._compact_through is None:
            keep = trailing_entries(node.log, meta.index, self._trailing_entries_max)
            self._compact_through = meta.index - keep
        before = node.log.snapshot_index
        through = min(self._compact_through, before + COMPACT_STEP_ENTRIES)
        # The first step installs the snapshot in the core (for followers that need it);
        # a snapshot received since is newer, and the core compacts nothing below it.
        node.snapshot_taken(meta, data, keep_entries=meta.index - through)
        compacted = node.log.snapshot_index
        compacted_term = node.log.term(compacted)
        if compacted_term is not None and compacted > server.storage.first_index() - 1:
            server.storage.compact(compacted, compacted_term)
        if compacted >= self._compact_through or compacted == before:  # done, or stuck
            self._ready_to_compact = None
            self._compact_through = None
        else:
            server.wake()

    def _due(self) -> bool:
        if self.bytes_since >= SNAPSHOT_BYTES_DEFAULT:
            return True
        limit = self._snapshot_entries
        if limit <= 0 or self.server.applied_index - self.last_index < limit:
            return False
        if self.last_bytes < self._fraction_from_bytes:
            return True
        return self.bytes_since >= self._log_fraction * self.last_bytes

    def loaded(self, size: int) -> None:
        """The node started from a snapshot of `size` bytes."""
        self.last_bytes = size

    async def _take(self) -> None:
        server = self.server
        node = server.node
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        index = server.applied_index
        term = node.log.term(index)
        if term is None or index <= self.last_index:
            # The core's log moved past what the state machine holds (a received snapshot
            # is being installed): that snapshot supersedes this one.
            self._task = None
            return
        meta = SnapshotMeta(index, term, node.membership_at(index))
        try:
            encode = snapshot_encoder(server.state_machine)
        except Exception:
            # A state the state machine cannot snapshot (a value it cannot encode): say so
            # each time, and try again later; a task left dead would block every snapshot.
            logger.exception("taking a snapshot at index %d failed", index)
            self._metrics.snapshot_failures.inc()
            self._task = None
            return
        self.loop_blocked_seconds = time.perf_counter() - started
        self.bytes_since = 0
        try:
            moved = walks_moved()
            data = await loop.run_in_executor(self._disk_executor, encode)
            if walks_moved() != moved:
                logger.warning(
                    "snapshot at index %d: its encoding found too little idle CPU in %.1f s and "
                    "was finished at ordinary priority",
                    index,
                    IDLE_SECONDS,
                )
            if index <= self.last_index:
                logger.info("snapshot at index %d dropped: a newer one was installed", index)
                self._task = None
                return
            await loop.run_in_executor(self._disk_executor, server.snapshot_store.save, meta, data)
        except Exception:
            logger.exception("taking a snapshot at index %d failed", index)
            self._metrics.snapshot_failures.inc()
            self._task = None
            return
        self.last_index = max(self.last_index, index)
        self.last_bytes = len(data)
        self._ready_to_compact = (meta, data)
        self._task = None
        seconds = time.perf_counter() - started
        self._metrics.snapshots_taken.inc()
        self._metrics.snapshot_seconds.labels("take").observe(seconds)
        logger.info(
            "snapshot taken at index %d term %d: %d bytes in %.3f s (loop blocked %.4f s)",
            index,
            term,
            len(data),
            seconds,
            self.loop_blocked_seconds,
        )
        server.wake()

    async def install(self, meta: SnapshotMeta, data: bytes) -> None:
        """A snapshot received from the leader: save it durably, reset the log to it and
        restore the state machine (Ready order: before any later committed entry)."""
        server = self.server
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        # Before the save is queued: a snapshot being taken must not be saved after it.
        self.last_index = max(self.last_index, meta.index)
        await loop.run_in_executor(self._disk_executor, server.snapshot_store.save, meta, data)
        server.storage.reset(meta.index, meta.term)
        server.state_machine.restore(data)
        server.state_machine_restored(meta.index)
        self.bytes_since = 0
        self.last_bytes = len(data)
        self._metrics.snapshots_installed.inc()
        self._metrics.snapshot_seconds.labels("install").observe(time.perf_counter() - started)
        logger.info(
            "snapshot installed at index %d term %d (%d bytes)", meta.index, meta.term, len(data)
        )

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
