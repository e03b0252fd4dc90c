"""Client requests waiting on the Raft core: proposals until their entry is applied, reads
until their ReadIndex is confirmed and applied."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from raftkv.core import Entry
from raftkv.errors import CommandFailed, NotLeader, RaftError, Timeout
from raftkv.server.limited_log import LimitedWarning
from raftkv.server.write_stages import WriteStages

logger = logging.getLogger("raftkv.node")

# A failed command is a client's doing, and a hostile client can send thousands a second:
# at most one warning per interval, the next one counting those left out.
FAILURE_WARNING_INTERVAL_SECONDS = 1.0
# What a warning quotes of the state machine's message (which may echo a large command).
FAILURE_MESSAGE_CHARS_MAX = 200


class ProposalLost(NotLeader):
    """Another entry was committed at the proposal's index: it will never apply, so the
    client may safely retry (with its session, at most once anyway)."""


class RequestFailed(RaftError):
    """The node cannot serve requests (shutting down, storage failed)."""

    code = "no_leader"


class ConsensusForRequests(Protocol):
    """What of the Raft core the tracker drives (`RaftNode`)."""

    @property
    def leader_id(self) -> int | None: ...

    def propose(self, data: bytes) -> tuple[int, int]: ...

    def read_index(self, request_id: int) -> None: ...


class RequestHost(Protocol):
    """What the tracker needs of the node it serves (`RaftServer`). Properties, not values
    taken once: the core exists only after start-up, and the rest changes as it runs."""

    @property
    def node(self) -> ConsensusForRequests: ...

    @property
    def applied_index(self) -> int:
        """The index the state machine reflects."""

    @property
    def storage_failure(self) -> str | None: ...

    def wake(self) -> None:
        """Have the Ready loop look at the core again (after a proposal or a read)."""


class RequestTracker:
    def __init__(
        self,
        server: RequestHost,
        timeout_seconds: float,
        *,
        warning_clock: Callable[[], float] = time.monotonic,
        stages: WriteStages | None = None,
    ) -> None:
        self.server = server
        # Sampled stage timing of writes proposed here (server/write_stages.py).
        self._stages = stages
        self._timeout_seconds = timeout_seconds
        # index -> (term, future) of proposals waiting to be applied.
        self._proposals: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        # ReadIndex requests waiting for their round: request id -> future of the index.
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_ids = itertools.count(1)
        # (index, sequence, future) heap of waits for the applied index to reach `index`.
        self._applied_waits: list[tuple[int, int, asyncio.Future[None]]] = []
        self._wait_ids = itertools.count()
        # Every wait gets the same timeout, so deadlines arrive in insertion order: a dict
        # swept from the front by the ticker replaces a timer per request (cheaper on the
        # hot path). A wait that ends leaves it at once: entries kept until their deadline
        # would pile up (150,000 at 30,000 reads/s) and make every full GC pass tens of
        # milliseconds long, which was the p99 of reads.
        self._deadlines: dict[asyncio.Future[Any], tuple[float, str]] = {}
        # The loop the waits are futures of: the running one, looked up once (`new_wait`).
        self._loop: asyncio.AbstractEventLoop | None = None
        self.proposals_total = 0
        self.writes_applied_total = 0
        self.write_seconds_total = 0.0
        # Commands the state machine raised on, on this node (proposed here or not).
        self.commands_failed_total = 0
        self._failure_warnings = LimitedWarning(
            logger, FAILURE_WARNING_INTERVAL_SECONDS, warning_clock
        )

    def new_wait(self, message: str) -> asyncio.Future[Any]:
        """A future for one client wait, failed with `Timeout(message)` at its deadline.
        The loop is looked up once per tracker (again only if the one it had is no longer
        running: a wait is always asked for from the running loop): on Python 3.11 each
        `asyncio.get_running_loop()` is a getpid() system call (its check for a fork), one
        per read and write before (`perf trace -s` of a leader serving reads)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._deadlines[future] = (loop.time() + self._timeout_seconds, message)
        return future

    def end_wait(self, future: asyncio.Future[Any]) -> None:
        """A wait from `new_wait` is over (answered, failed or given up): its deadline goes."""
        self._deadlines.pop(future, None)

    @property
    def waiting(self) -> int:
        """Client requests waiting on the core right now."""
        return len(self._deadlines)

    def expire(self, now: float) -> None:
        """Fail every wait whose deadline has passed (called by the ticker)."""
        deadlines = self._deadlines
        while deadlines:
            future = next(iter(deadlines))
            deadline, message = deadlines[future]
            if deadline > now:
                break
            del deadlines[future]
            if not future.done():
                future.set_exception(Timeout(message))

    # --- proposals ----------------------------------------------------------------------
    async def propose(self, data: bytes) -> tuple[Any, int]:
        """Propose and wait for the entry to apply; returns (result, index)."""
        server = self.server
        self.check_serving()
        index, term = server.node.propose(data)
        self.proposals_total += 1
        stages = self._stages
        if stages is not None:
            stages.proposed(index)
        started = time.perf_counter()
        result = await self.wait_entry(index, term)
        if stages is not None:
            stages.resumed(index)
        # Writes applied and their time from proposal to applied (metrics' write latency).
        self.writes_applied_total += 1
        self.write_seconds_total += time.perf_counter() - started
        return result, index

    async def wait_entry(self, index: int, term: int) -> Any:
        """Wait for the entry this leader appended at (index, term) to apply; returns what
        applying it returned. `ProposalLost` if another entry was applied at that index:
        reaching the index is not enough, a later leader may have replaced the entry (a
        membership change once reported success for a removal that never happened)."""
        server = self.server
        future = self.new_wait(f"entry {index} not applied in time; it may still commit")
        self._proposals[index] = (term, future)
        server.wake()
        try:
            return await future
        finally:
            self.end_wait(future)
            if self._proposals.get(index, (None, None))[1] is future:
                del self._proposals[index]

    def applied(self, entry: Entry, result: Any) -> None:
        future = self._proposer_of(entry)
        if future is not None:
            future.set_result(result)

    def command_failed(self, entry: Entry, error: Exception) -> None:
        """The state machine raised `error` applying `entry`: the proposer gets
        `CommandFailed`; the node counts it and warns (rate-limited) and goes on."""
        failure = CommandFailed(error, entry.index)
        self.commands_failed_total += 1
        self._warn(failure)
        future = self._proposer_of(entry)
        if future is not None:
            future.set_exception(failure)

    def _proposer_of(self, entry: Entry) -> asyncio.Future[Any] | None:
        """The future of the proposal waiting on `entry`, if one is still waiting; a
        proposal of another term at its index is lost, and told so here."""
        waiting = self._proposals.pop(entry.index, None)
        if waiting is None:
            return None
        term, future = waiting
        if future.done():
            return None
        if term != entry.term:
            future.set_exception(ProposalLost(self.server.node.leader_id))
            return None
        return future

    def _warn(self, failure: CommandFailed) -> None:
        message = str(failure)
        if len(message) > FAILURE_MESSAGE_CHARS_MAX:
            message = message[:FAILURE_MESSAGE_CHARS_MAX] + "..."
        # repr() keeps a newline in the client-chosen text from forging a log line.
        self._failure_warnings.warn(
            "the command at index %d failed in the state machine (its result; the node"
            " goes on): %s",
            failure.index,
            repr(message)[1:-1],
        )

    # --- reads --------------------------------------------------------------------------
    async def read_index(self) -> int:
        """Thesis §6.4: the index a linearizable read must wait for."""
        server = self.server
        self.check_serving()
        request_id = next(self._read_ids)
        server.node.read_index(request_id)  # (may raise: then nothing waits)
        future: asyncio.Future[int] = self.new_wait("leadership not confirmed in time")
        self._reads[request_id] = future
        server.wake()
        try:
            return await future
        finally:
            self.end_wait(future)
            self._reads.pop(request_id, None)

    def read_confirmed(self, request_id: int, index: int) -> None:
        future = self._reads.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(index)

    async def wait_applied(self, index: int) -> None:
        server = self.server
        if server.applied_index >= index:
            return
        future: asyncio.Future[None] = self.new_wait(f"index {index} not applied in time")
        heapq.heappush(self._applied_waits, (index, next(self._wait_ids), future))
        try:
            await future
        finally:
            self.end_wait(future)

    def applied_through(self, index: int) -> None:
        waits = self._applied_waits
        while waits and waits[0][0] <= index:
            _, _, future = heapq.heappop(waits)
            if not future.done():
                future.set_result(None)

    # --- failures -----------------------------------------------------------------------
    def leadership_lost(self) -> None:
        """Reads waiting for a round this node will not complete fail at once; proposals
        keep waiting, since their entries may still be committed by the next leader."""
        leader = self.server.node.leader_id
        for future in self._reads.values():
            if not future.done():
                future.set_exception(NotLeader(leader))
        self._reads.clear()

    def fail_all(self, reason: str) -> None:
        error = RequestFailed(reason)
        for _, future in self._proposals.values():
            if not future.done():
                future.set_exception(error)
        for future in self._reads.values():
            if not future.done():
                future.set_exception(error)
        for _, _, future in self._applied_waits:
            if not future.done():
                future.set_exception(error)
        self._proposals.clear()
        self._reads.clear()
        self._applied_waits.clear()
        self._deadlines.clear()

    def check_serving(self) -> None:
        server = self.server
        if server.storage_failure is not None:
            raise RequestFailed(f"storage failed: {server.storage_failure}")
