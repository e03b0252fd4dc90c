"""A Raft node that replicates your objects: `AsyncNode` runs in your asyncio loop, `Node`
runs its own loop in a background thread and offers the same operations as blocking calls
usable from any thread (as PySyncObj does). docs/embedding.md is the guide.

A call of a replicated method, on any node:

1. takes the next number of this node's client session (`client_id`, `seq`) and the commit
   index it knows (`after_index`, the session rule of kv/sessions.py);
2. is proposed by the leader: here if this node leads, else forwarded to it over the peer
   link (server/forwarding.py), which answers with the entry's index;
3. waits for that index to apply on this node, and takes this replica's result of
   (`client_id`, `seq`): the return value, or the exception the method raised here.

A refusal that says "retry" (no leader yet, a leader change, a transfer under way, a full
window, an answer lost) is retried with the same `seq` until the call's timeout: the session
makes sure it applies at most once. `NotLeader` never reaches the caller. A call that times
out (`raftkv.errors.Timeout`) or is cancelled may still apply later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import secrets
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from raftkv.addresses import parse_host_port
from raftkv.client.sessions import SessionPool
from raftkv.core.messages import ForwardKind
from raftkv.embed import values
from raftkv.embed.machine import Call, ObjectStateMachine, encode_call
from raftkv.embed.replicated import NODE_ATTRIBUTE
from raftkv.errors import ClientError, Timeout
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer

logger = logging.getLogger("raftkv.embed")

T = TypeVar("T")
Address = str | tuple[str, int]
CONSISTENCY_LEVELS = ("linearizable", "lease", "stale")
CALL_TIMEOUT_SECONDS = 10.0
# How often the leader asks its objects for the calls it must make (lock expiry).
DUTY_INTERVAL_SECONDS = 0.1
# Between two attempts of a call refused with "retry": short, a leader is usually near.
RETRY_PAUSE_SECONDS = 0.02
# Error codes after which an attempt is tried again (the request may be carried out later).
_RETRYABLE = {"not_leader", "no_leader", "timeout"}
_READ_KINDS: frozenset[ForwardKind] = frozenset({"read_index", "lease_read"})


def _address(value: Address) -> tuple[str, int]:
    return parse_host_port(value) if isinstance(value, str) else value


class AsyncNode:
    """One member of a cluster, replicating `objects` (name -> object with `@replicated`
    methods), in the running asyncio loop.

    A founding member names the others in `peers` (or is alone: `single_node`). A node
    added to a running cluster (`add_member` on any member, which returns an index) is
    started with `join=` that index, `cluster_id=` the cluster's (`node.cluster_id` on any
    member) and `peers=` some members' peer addresses: it never founds a cluster of its
    own. `options` sets any other `NodeOptions` field (tick_ms, election_timeout_ms,
    snapshot_entries, ...)."""

    def __init__(
        self,
        node_id: int,
        *,
        listen: Address,
        data_dir: str,
        objects: Mapping[str, object],
        peers: Mapping[int, Address] | None = None,
        join: int | None = None,
        cluster_id: str | None = None,
        single_node: bool = False,
        client_listen: Address | None = None,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        options: Mapping[str, Any] | None = None,
        binding: object | None = None,
    ) -> None:
        self.id = node_id
        self.objects = dict(objects)
        self._names = {id(target): name for name, target in self.objects.items()}
        self.state_machine = ObjectStateMachine(self.objects)
        listen_address = _address(listen)
        known = {peer: _address(address) for peer, address in (peers or {}).items()}
        joining = join is not None
        node_options = NodeOptions(
            node_id=node_id,
            data_dir=data_dir,
            listen=listen_address,
            client_listen=_address(client_listen) if client_listen else (listen_address[0], 0),
            peers={} if joining else known,
            single_node=single_node,
            cluster_id=cluster_id,
            **dict(options or {}),
        )
        self.server = RaftServer(
            node_options, self.state_machine, listen_for_clients=client_listen is not None
        )
        if join is not None:
            # What `raft-node --join` learns from the leader, given here.
            self.server.peers.joined(known, join)
        self.call_timeout = call_timeout
        # The client sessions of the calls made here, one per call in flight.
        self._sessions = SessionPool(f"embed-{node_id}-{secrets.token_hex(8)}")
        self._last_role: str | None = None
        self._last_leader: int | None = None
        self._role_callbacks: list[Callable[[str, int], None]] = []
        self._leader_callbacks: list[Callable[[int | None], None]] = []
        self._leader_known = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._duties_task: asyncio.Task[None] | None = None
        self._duties_in_flight: dict[tuple[str, str, bytes], asyncio.Task[Any]] = {}
        for target in self.objects.values():
            setattr(target, NODE_ATTRIBUTE, binding if binding is not None else self)

    # --- life -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.server.soft_state_listeners.append(self._soft_state_changed)
        await self.server.start()
        self._duties_task = self._loop.create_task(self._leader_duties(), name="leader-duties")

    async def stop(self) -> None:
        if self._duties_task is not None:
            self._duties_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._duties_task
        for task in list(self._duties_in_flight.values()):
            task.cancel()
        await self.server.stop()

    def _soft_state_changed(self, role: str, leader_id: int | None) -> None:
        if leader_id is None:
            self._leader_known.clear()
        else:
            self._leader_known.set()
        if role == "leader":
            now = asyncio.get_running_loop().time()
            for target in self.objects.values():
                became_leader = getattr(target, "__raft_became_leader__", None)
                if became_leader is not None:
                    self._run_callback(became_leader, now)
        if role != self._last_role:
            self._last_role = role
            for role_callback in self._role_callbacks:
                self._run_callback(role_callback, role, self.server.node.term)
        if leader_id != self._last_leader:
            self._last_leader = leader_id
            for leader_callback in self._leader_callbacks:
                self._run_callback(leader_callback, leader_id)

    async def _leader_duties(self) -> None:
        """On the leader, every DUTY_INTERVAL_SECONDS: the calls objects ask for by their
        `__raft_leader_duties__(now)` hook (a lock's expiry decided by the leader's clock),
        proposed like any call; one at a time per distinct call."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DUTY_INTERVAL_SECONDS)
            if not self.is_leader:
                continue
            now = loop.time()
            for name, target in self.objects.items():
                duties = getattr(target, "__raft_leader_duties__", None)
                if duties is None:
                    continue
                try:
                    calls = duties(now)
                except Exception:
                    logger.exception("the leader duties of %r raised", name)
                    continue
                for method, args, kwargs in calls:
                    key = (name, method, values.encode([list(args), kwargs]))
                    if key in self._duties_in_flight:
                        continue
                    task = loop.create_task(
                        self.call_with_timeout(self.call_timeout, name, method, args, kwargs)
                    )
                    self._duties_in_flight[key] = task
                    task.add_done_callback(functools.partial(self._duty_done, key))

    def _duty_done(self, key: tuple[str, str, bytes], task: asyncio.Task[Any]) -> None:
        self._duties_in_flight.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("a leader duty %s.%s failed: %r", key[0], key[1], task.exception())

    @staticmethod
    def _run_callback(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a user's callback must not stop the node's Ready loop
            logger.exception("a callback raised")

    # --- state and events -----------------------------------------------------------------
    @property
    def role(self) -> str:
        """'leader', 'follower', 'candidate' or 'learner'."""
        return self.server.role_name()

    @property
    def leader_id(self) -> int | None:
        return self.server.node.leader_id

    @property
    def cluster_id(self) -> str:
        """What a node joining this cluster is started with."""
        return self.server.cluster_id

    @property
    def removed(self) -> bool:
        """This node applied its own removal: it takes no further part (stop it)."""
        return self.server.peers.removed.is_set()

    @property
    def is_leader(self) -> bool:
        return self.server.node.role == "leader"

    @property
    def term(self) -> int:
        return self.server.node.term

    @property
    def members(self) -> dict[str, list[int]]:
        membership = self.server.node.membership
        return {"voters": sorted(membership.voters), "learners": sorted(membership.learners)}

    def on_role_change(self, callback: Callable[[str, int], None]) -> None:
        """`callback(role, term)` whenever this node's role changes (on the node's loop)."""
        self._role_callbacks.append(callback)

    def on_leader_change(self, callback: Callable[[int | None], None]) -> None:
        """`callback(leader_id)` whenever the leader this node knows changes (None: none)."""
        self._leader_callbacks.append(callback)

    async def wait_for_leader(self, timeout: float | None = None) -> int:
        """The leader's id once one is known; `Timeout` if none within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while self.leader_id is None:
                    await self._leader_known.wait()
                    if self.leader_id is None:
                        self._leader_known.clear()
        except TimeoutError:
            raise Timeout("no leader known in time") from None
        leader = self.leader_id
        assert leader is not None
        return leader

    # --- calls ----------------------------------------------------------------------------
    async def call(self, object_name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call `object_name.method(*args, **kwargs)` through the log (module docstring)."""
        return await self.call_with_timeout(self.call_timeout, object_name, method, args, kwargs)

    async def call_with_timeout(
        self,
        timeout: float,
        object_name: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        arguments = values.encode([list(args), dict(kwargs or {})])
        # A session per call in flight: a session's state machine side remembers only its
        # latest seq, so two concurrent calls in one session could refuse each other's
        # retry as stale.
        session = self._sessions.acquire()
        client_id, seq = session.next_write()
        server = self.server
        after_index = server.node.log.committed
        command = encode_call(Call(object_name, method, arguments, client_id, seq, after_index))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        forgotten = False
        try:
            while True:
                index = await self._attempt(
                    "propose", command, deadline, f"{object_name}.{method} not applied in time"
                )
                try:
                    async with asyncio.timeout_at(deadline):
                        await server.requests.wait_applied(index)
                except (TimeoutError, Timeout):
                    if loop.time() >= deadline:
                        raise Timeout(
                            f"{object_name}.{method} not applied in time; it may still apply"
                        ) from None
                    continue
                result = self.state_machine.take_result(client_id, seq)
                if result is not None:
                    forgotten = result.outcome.error_type == "SessionExpired"
                    return result.unwrap()
                # Another entry took that index (a leader change): the same seq again.
        finally:
            if not forgotten:  # a session the cluster forgot is not used again
                self._sessions.release(session)

    def call_from_method(
        self, target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        return self.call_with_timeout(
            self.call_timeout, self._name_of(target), method, args, kwargs
        )

    def submit_call(
        self, target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        if self._loop is None:
            raise RuntimeError("the node is not started")
        coroutine = self.call_from_method(target, method, args, kwargs)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _name_of(self, target: object) -> str:
        name = self._names.get(id(target))
        if name is None:
            raise ValueError(f"this {type(target).__qualname__} is not registered with this node")
        return name

    # --- reads ----------------------------------------------------------------------------
    async def read(self, function: Callable[[], T], consistency: str = "linearizable") -> T:
        """Run `function` (a read of the local objects) at a consistency level:
        `linearizable` (after a ReadIndex round of the leader, thesis §6.4), `lease` (the
        leader's lease when it holds one, else a ReadIndex round), `stale` (now, whatever
        this replica holds)."""
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency is one of {', '.join(CONSISTENCY_LEVELS)}")
        if consistency != "stale":
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.call_timeout
            kind: ForwardKind = "read_index" if consistency == "linearizable" else "lease_read"
            index = await self._attempt(kind, b"", deadline, "read not confirmed in time")
            try:
                async with asyncio.timeout_at(deadline):
                    await self.server.requests.wait_applied(index)
            except TimeoutError:
                raise Timeout(f"index {index} not applied here in time") from None
        return function()

    # --- membership -----------------------------------------------------------------------
    async def add_member(self, node_id: int, address: Address) -> int:
        """Add a node as a learner (promoted to voter once caught up, as `raft-client
        members add` does); the index of the configuration that holds it."""
        host, port = _address(address)
        payload = json.dumps({"id": node_id, "address": f"{host}:{port}"}).encode()
        return await self._membership("add", payload)

    async def remove_member(self, node_id: int) -> int:
        return await self._membership("remove", json.dumps({"id": node_id}).encode())

    async def transfer_leadership(self, to: int) -> int:
        """Move leadership to node `to`; returns once the old leader sees it lead."""
        return await self._membership("transfer", json.dumps({"to": to}).encode())

    async def _membership(self, kind: ForwardKind, payload: bytes) -> int:
        deadline = asyncio.get_running_loop().time() + self.call_timeout
        return await self._attempt(kind, payload, deadline, f"{kind} not done in time")

    # --- attempts -------------------------------------------------------------------------
    async def _attempt(self, kind: ForwardKind, payload: bytes, deadline: float, late: str) -> int:
        """Have the leader do `kind`, here or through a forward, until it succeeds or the
        deadline passes; the index it answers."""
        loop = asyncio.get_running_loop()
        server = self.server
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(late)
            try:
                leader = await self.wait_for_leader(remaining)
                if leader == self.id:
                    return await server.forwarding.perform(kind, payload)
                if kind in _READ_KINDS:
                    # A follower's reads share the leader's read index, a batch per forward
                    # (server/follower_reads.py), with the HTTP API's reads on this node.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(deadline):
                            return await server.follower_reads.read_index(kind)
                    continue  # (the deadline passed: `late`)
                reply = await server.forwarding.ask(
                    leader, kind, payload, min(remaining, server.options.request_timeout_seconds)
                )
                return reply.index
            except ClientError as error:
                # One rule whether the leader is here or there: its error code decides.
                if error.code not in _RETRYABLE:
                    raise
            await asyncio.sleep(min(RETRY_PAUSE_SECONDS, max(0.0, deadline - loop.time())))


class Node:
    """`AsyncNode` in a background thread with its own event loop: every operation is a
    blocking call, usable from any thread but the node's own (callbacks run there: call
    `await method.acall(...)` or `submit` from them, not the blocking form)."""

    def __init__(self, node_id: int, **arguments: Any) -> None:
        self._arguments = arguments
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"raftkv-node-{node_id}", daemon=True
        )
        # Built in the caller's thread, bound to this blocking front: calls of replicated
        # methods through the objects block.
        self.node = AsyncNode(node_id, binding=self, **arguments)
        self.id = node_id

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _wait(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if not self._thread.is_alive():
            coroutine.close()
            raise RuntimeError("the node is not running: start() it first")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError(
                "a blocking call on the node's own thread would wait for itself: use"
                " `await method.acall(...)` or `method.submit(...)` there"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def start(self) -> None:
        self._thread.start()
        self._wait(self.node.start())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._wait(self.node.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- as AsyncNode, blocking -----------------------------------------------------------
    @property
    def role(self) -> str:
        return self.node.role

    @property
    def leader_id(self) -> int | None:
        return self.node.leader_id

    @property
    def is_leader(self) -> bool:
        return self.node.is_leader

    @property
    def cluster_id(self) -> str:
        return self.node.cluster_id

    @property
    def removed(self) -> bool:
        return self.node.removed

    @property
    def term(self) -> int:
        return self.node.term

    @property
    def members(self) -> dict[str, list[int]]:
        return self._wait(self._members())

    async def _members(self) -> dict[str, list[int]]:
        return self.node.members

    def on_role_change(self, callback: Callable[[str, int], None]) -> None:
        self.node.on_role_change(callback)

    def on_leader_change(self, callback: Callable[[int | None], None]) -> None:
        self.node.on_leader_change(callback)

    def wait_for_leader(self, timeout: float | None = None) -> int:
        return self._wait(self.node.wait_for_leader(timeout))

    def call(self, object_name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self.node.call(object_name, method, *args, **kwargs))

    def call_with_timeout(
        self,
        timeout: float,
        object_name: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        return self._wait(self.node.call_with_timeout(timeout, object_name, method, args, kwargs))

    def call_from_method(
        self, target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return self._wait(self.node.call_from_method(target, method, args, kwargs))

    def submit_call(
        self, target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        return self.node.submit_call(target, method, args, kwargs)

    def read(self, function: Callable[[], T], consistency: str = "linearizable") -> T:
        """As `AsyncNode.read`; `function` runs on the node's thread, where the objects
        change, so it sees a state between two applied commands."""
        return self._wait(self.node.read(function, consistency))

    def add_member(self, node_id: int, address: Address) -> int:
        return self._wait(self.node.add_member(node_id, address))

    def remove_member(self, node_id: int) -> int:
        return self._wait(self.node.remove_member(node_id))

    def transfer_leadership(self, to: int) -> int:
        return self._wait(self.node.transfer_leadership(to))
