"""Linearizable and lease reads served by a follower (thesis §6.4): the follower asks the
leader for a read index (`Forward` `read_index` or `lease_read`, server/forwarding.py),
waits until it has applied that index itself, then reads its own state. The leader spends
one forwarded request per batch of reads instead of parsing and answering each one, so
clients spread over the members spread the reads' cost too (etcd's followers do the same).

Reads queued while a forward of their kind is out wait for the next one, which leaves when
that one is answered: the leader's answer is its commit index when the forward reached it,
which may be older than a read that began after the forward left, so such a read cannot
take it (as the leader's own reads share only a round that starts after them)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from raftkv.core.messages import ForwardKind
from raftkv.errors import NoLeader, NotLeader, Timeout
from raftkv.server.forwarding import Forwarding, ForwardingError
from raftkv.server.requests import RequestFailed, RequestTracker

logger = logging.getLogger("raftkv.node")


class LeaderView(Protocol):
    @property
    def leader_id(self) -> int | None:
        """The leader this node follows (None: none known)."""


class FollowerReadsHost(Protocol):
    """What follower reads need of the node (`RaftServer`)."""

    @property
    def id(self) -> int: ...

    @property
    def node(self) -> LeaderView: ...


class FollowerReads:
    def __init__(
        self,
        host: FollowerReadsHost,
        forwarding: Forwarding,
        requests: RequestTracker,
        timeout_seconds: float,
    ) -> None:
        self._host = host
        self._forwarding = forwarding
        self._requests = requests
        self._timeout_seconds = timeout_seconds
        # Per kind, the reads waiting for the next forward, and the one forward out: its task
        # and the leader it asked (None until it leaves). Insertion-ordered: cancelled in a
        # repeatable order (the simulator).
        self._queued: dict[ForwardKind, list[asyncio.Future[int]]] = {}
        self._out: dict[ForwardKind, tuple[asyncio.Task[None], int | None]] = {}
        self._closed = False
        self.forwards_total = 0  # forwards sent, each for a batch of reads
        self.reads_total = 0

    async def read_index(self, kind: ForwardKind) -> int:
        """The index a read of `kind` (`read_index`: linearizable; `lease_read`) must see
        applied here before it runs: the leader's, confirmed as for its own reads.
        `NotLeader` when no leader is known or the one asked no longer leads, `Timeout`
        when no answer came in time."""
        leader = self._host.node.leader_id
        if leader is None or leader == self._host.id:
            raise NotLeader(None)
        requests = self._requests
        self.reads_total += 1
        requests.check_serving()
        future: asyncio.Future[int] = requests.new_wait("read not confirmed by the leader in time")
        self._queued.setdefault(kind, []).append(future)
        if kind not in self._out:
            self._send(kind)
        try:
            return await future
        finally:
            requests.end_wait(future)

    def _send(self, kind: ForwardKind) -> None:
        self.forwards_total += 1
        self._out[kind] = (asyncio.get_running_loop().create_task(self._ask(kind)), None)

    async def _ask(self, kind: ForwardKind) -> None:
        # The batch is every read queued until now, when the forward leaves (the task's
        # first step): the reads of one burst share it.
        batch = self._queued.pop(kind, [])
        try:
            outcome = await self._confirm(kind)
        except asyncio.CancelledError:
            del self._out[kind]
            if self._closed:
                _settle(batch, RequestFailed("node shutting down"))
                raise
            # (`leader_changed`: the leader asked is no longer this node's leader; the
            # reads queued since ask the new one.)
            outcome = NotLeader(self._host.node.leader_id)
            queued_fail_too = False
        else:
            del self._out[kind]
            # The reads queued behind a forward that failed fail alike, rather than ask a
            # leader that just refused or did not answer (their clients retry).
            queued_fail_too = isinstance(outcome, BaseException)
        _settle(batch, outcome)
        if queued_fail_too:
            _settle(self._queued.pop(kind, []), outcome)
        elif self._queued.get(kind):
            self._send(kind)

    async def _confirm(self, kind: ForwardKind) -> int | BaseException:
        """The leader's read index, or the error every read of the batch fails with."""
        host = self._host
        leader = host.node.leader_id
        if leader is None or leader == host.id:
            return NotLeader(None)
        self._out[kind] = (self._out[kind][0], leader)
        try:
            reply = await self._forwarding.ask(leader, kind, b"", self._timeout_seconds)
        except ForwardingError as failure:
            return _client_error(failure)
        except Timeout as failure:
            return failure
        except Exception as failure:  # a bug of ours: said loudly, no read left waiting
            logger.exception("forwarding a batch of reads to node%d failed", leader)
            return RequestFailed(f"internal error forwarding a read: {failure!r}")
        return reply.index

    def leader_changed(self) -> None:
        """This node's leader changed or was lost (the Ready loop's soft state): a forward
        out to another node may never be answered (a follower cut off from its leader
        learns it by starting an election), so its reads fail now, `NotLeader` naming the
        leader known, instead of waiting out the timeout; reads queued ask the new one."""
        leader = self._host.node.leader_id
        for task, asked in self._out.values():
            if asked is not None and asked != leader:
                task.cancel()

    def close(self) -> None:
        """The node stops: every read waiting here fails (its client retries elsewhere)."""
        self._closed = True
        stopping = RequestFailed("node shutting down")
        for task, _ in self._out.values():
            task.cancel()
        for batch in self._queued.values():
            _settle(batch, stopping)
        self._queued.clear()


def _settle(batch: list[asyncio.Future[int]], outcome: int | BaseException) -> None:
    for future in batch:
        if future.done():  # (timed out already)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _client_error(failure: ForwardingError) -> BaseException:
    """The leader's error code as this node's own error (the HTTP answer the same)."""
    if failure.code == "not_leader":
        return NotLeader(failure.leader_id)
    if failure.code == "timeout":
        return Timeout(str(failure))
    if failure.code == "no_leader":  # (busy, or no leader of its own: retry)
        return NoLeader(f"the leader refused the read for now: {failure}")
    return RequestFailed(f"the leader refused the read ({failure.code}): {failure}")
