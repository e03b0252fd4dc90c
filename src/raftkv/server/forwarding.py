"""Requests a follower passes to the leader over the peer links (`Forward`/`ForwardReply`),
so that the embedding API's callers on any node need no client port and no address of the
leader: propose a command, confirm a read index (linearizable or under the leader's lease),
change membership, transfer leadership. One kind goes to any node, not only the leader:
`status`, which the dashboard (server/dashboard.py) asks every peer, answered at once
with the node's own report as JSON.

A proposal is answered as soon as it is appended, with its (index, term): the follower then
waits for that entry to apply in its own log (its own replica's result, decided as on every
replica). Anything that goes wrong is an error code the caller decides on (SPEC §3's codes:
`not_leader` with the leader this node knows, `no_leader`, `timeout`, ...). Peers are
members that passed the handshake; still, what one may ask is bounded: at most
SERVING_MAX asynchronous requests at once per node, the rest refused `no_leader` ("retry").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any, Protocol

from raftkv.core import RaftNode
from raftkv.core.messages import AnyMessage, Forward, ForwardKind, ForwardReply
from raftkv.errors import ClientError, NotLeader, RaftError, Timeout
from raftkv.server.node_report import NodeReport
from raftkv.server.requests import RequestTracker

logger = logging.getLogger("raftkv.node")

SERVING_MAX = 1024
# The forwarded kinds (besides `propose`) whose answer is an index the asking follower then
# waits to apply: the leader tells the followers when that index commits, entries or not
# (RaftConfig.defer_commit_notices).
_ASKER_WAITS_TO_APPLY = frozenset(("read_index", "lease_read", "add", "remove"))


def member_request(kind: ForwardKind, payload: bytes) -> tuple[int, str]:
    """The node id (`id`, or `to` for a transfer) and, for `add`, the address of an
    `add`, `remove` or `transfer` payload (SPEC §4); raises ValueError for a malformed one:
    not JSON, nested past the recursion limit, a field missing or not a number (1e400 is
    an infinity, which int() refuses with OverflowError)."""
    try:
        request = json.loads(payload or b"{}")
        node_id = int(request["to" if kind == "transfer" else "id"])
        address = str(request["address"]) if kind == "add" else ""
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as error:
        raise ValueError(f"malformed {kind} payload: {error!r}") from None
    return node_id, address


class Membership(Protocol):
    """The membership operations a forwarded request may run (`MembershipOperations`)."""

    async def add(self, member: int, address: str) -> dict[str, Any]: ...

    async def remove(self, member: int) -> dict[str, Any]: ...

    async def transfer_leadership(
        self, target: int, timeout_seconds: float | None = None
    ) -> int: ...


class ForwardingHost(Protocol):
    """What forwarding needs of the node (`RaftServer`)."""

    @property
    def id(self) -> int: ...

    @property
    def node(self) -> RaftNode: ...

    @property
    def requests(self) -> RequestTracker: ...

    @property
    def members(self) -> Membership: ...

    def send(self, message: AnyMessage) -> None:
        """Put a message on the link to its destination."""

    def lease_usable(self) -> bool: ...

    def wake(self) -> None: ...

    @property
    def report(self) -> NodeReport:
        """What it says of itself: a `status` request is answered with its dashboard
        report."""


class ForwardingError(ClientError):
    """The leader refused a forwarded request: `code` is its error code."""

    def __init__(self, code: str, message: str, leader_id: int | None) -> None:
        super().__init__(message)
        self.code = code
        self.leader_id = leader_id


class Forwarding:
    def __init__(self, host: ForwardingHost) -> None:
        self._host = host
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[ForwardReply]] = {}
        # Insertion-ordered, not a set: cancelled in a repeatable order (the simulator).
        self._serving: dict[asyncio.Task[None], None] = {}

    # --- the follower's side ------------------------------------------------------------
    async def ask(
        self, leader: int, kind: ForwardKind, payload: bytes, timeout_seconds: float
    ) -> ForwardReply:
        # (`leader` is any peer for a `status` request.)
        """Send a request to `leader` and wait for its answer: `ForwardingError` with the
        leader's error code, `Timeout` if none came in time (it may have been carried out:
        a proposal is then retried within its session)."""
        host = self._host
        request_id = next(self._ids)
        future: asyncio.Future[ForwardReply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        host.send(
            Forward(
                to=leader,
                term=0,
                from_id=host.id,
                request_id=request_id,
                kind=kind,
                payload=payload,
            )
        )
        try:
            async with asyncio.timeout(timeout_seconds):
                reply = await future
        except TimeoutError:
            raise Timeout(f"node{leader} did not answer a forwarded {kind} in time") from None
        finally:
            self._waiting.pop(request_id, None)
        if reply.error:
            raise ForwardingError(reply.error, reply.message, reply.leader_id or None)
        return reply

    def _answered(self, reply: ForwardReply) -> None:
        future = self._waiting.get(reply.request_id)
        if future is not None and not future.done():
            future.set_result(reply)

    # --- the leader's side --------------------------------------------------------------
    def received(self, message: Forward | ForwardReply) -> None:
        if isinstance(message, ForwardReply):
            self._answered(message)
            return
        if message.kind == "status":
            # Any node answers, at once: a report of its own state, cheap to build.
            self._reply(message, payload=self._host.report.dashboard_report())
            return
        node = self._host.node
        if node.role != "leader":
            self._reply(message, error=NotLeader(node.leader_id))
            return
        if message.kind == "propose":
            # At once, in this callback: nothing may come between the role check and the
            # append, and the follower waits for the entry itself.
            try:
                index, term = node.propose(message.payload)
            except RaftError as error:
                self._reply(message, error=error)
                return
            node.announce_commit(index)  # the follower waits to apply it
            self._host.wake()
            self._reply(message, index=index, term=term)
            return
        if len(self._serving) >= SERVING_MAX:
            self._reply(message, code="no_leader", text="the leader is busy; retry")
            return
        task = asyncio.get_running_loop().create_task(self._serve(message))
        self._serving[task] = None
        task.add_done_callback(lambda done: self._serving.pop(done, None))

    async def perform(self, kind: ForwardKind, payload: bytes) -> int:
        """Do `kind` as the leader (for a forward, or for a caller on this node): the index
        it answers (a proposal's, a read's, the configuration's)."""
        host = self._host
        if kind == "propose":
            index, _term = host.node.propose(payload)
            host.wake()
            return index
        if kind == "read_index":
            return await host.requests.read_index()
        if kind == "lease_read":
            if host.lease_usable():
                return host.node.log.committed
            return await host.requests.read_index()
        if kind == "status":
            raise ValueError("a status request is answered by every node, never performed")
        node_id, address = member_request(kind, payload)
        if kind == "add":
            answer = await host.members.add(node_id, address)
            return int(answer["index"])
        if kind == "remove":
            answer = await host.members.remove(node_id)
            return int(answer.get("index", 0))
        return await host.members.transfer_leadership(node_id)

    async def _serve(self, message: Forward) -> None:
        try:
            index = await self.perform(message.kind, message.payload)
        except RaftError as error:
            self._reply(message, error=error)
        except (ValueError, KeyError, TypeError) as error:
            self._reply(message, code="bad_request", text=f"malformed {message.kind}: {error}")
        except Exception as error:  # a bug of ours: said loudly, and the asker not left waiting
            logger.exception("serving a forwarded %s failed", message.kind)
            self._reply(message, code="internal", text=repr(error))
        else:
            if message.kind in _ASKER_WAITS_TO_APPLY and self._host.node.announce_commit(index):
                self._host.wake()
            self._reply(message, index=index)

    def _reply(
        self,
        request: Forward,
        *,
        error: RaftError | None = None,
        code: str = "",
        text: str = "",
        index: int = 0,
        term: int = 0,
        payload: bytes = b"",
    ) -> None:
        host = self._host
        if error is not None:
            code = error.code if isinstance(error, ClientError) else "internal"
            text = str(error)
        leader = host.node.leader_id or 0
        host.send(
            ForwardReply(
                to=request.from_id,
                term=0,
                from_id=host.id,
                request_id=request.request_id,
                error=code,
                message=text[:1024],
                leader_id=leader,
                index=index,
                entry_term=term,
                payload=payload,
            )
        )

    def close(self) -> None:
        for task in self._serving:
            task.cancel()
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
