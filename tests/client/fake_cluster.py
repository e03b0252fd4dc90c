"""A fake raftkv cluster speaking the SPEC §3 client API, for the client's tests.

Every node is an aiohttp server on its own loopback port, all served by one event loop in a
background thread; they share one key-value map (as if perfectly replicated) and answer
`not_leader` with hints unless they are `leader`. Tests script faults per node (an answer, a
dropped connection, a hang) and read back every request the nodes received. Sessions follow
the store's rule (raftkv.kv.store): `forget_sessions()` stands for their eviction.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

START_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Answer:
    """Answer the next request with this status and JSON payload instead of handling it."""

    status: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer; `after_applying`: once the write is applied."""

    after_applying: bool = False


@dataclass(frozen=True)
class Hang:
    """Answer nothing until the cluster stops (or `seconds` pass)."""

    seconds: float = 60.0


Fault = Answer | Drop | Hang


@dataclass
class Recorded:
    node_id: int
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    peer: object  # the client's (host, port): one per connection
    authorization: str | None = None  # the Authorization header, if any


@dataclass
class FakeNode:
    node_id: int
    port: int = 0
    last_applied: int = 0
    # index -> applied hash: the window of hashes this node still remembers.
    hashes: dict[int, str] = field(default_factory=dict)
    extra_status: dict[str, Any] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)


NODE_KEY = web.AppKey("node", FakeNode)


def free_port() -> int:
    """A port nothing listens on (just released by the kernel)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class FakeCluster:
    def __init__(self, size: int = 3, leader: int | None = 1) -> None:
        self.nodes = {node_id: FakeNode(node_id) for node_id in range(1, size + 1)}
        self.leader = leader
        # False: followers answer non-stale reads 421, as `--no-follower-reads` (and nodes
        # before session 30) do; True: they serve every read, as raft-node does now.
        self.follower_reads = False
        self.term = 2
        self.index = 1
        self.data: dict[str, str] = {}
        # client_id -> (seq, status, payload): a retried write is answered, not applied again.
        self.sessions: dict[str, tuple[int, int, dict[str, Any]]] = {}
        # The store's eviction watermark: the index of the last forgotten session's activity.
        self.evicted_through = 0
        self.applied_writes: list[tuple[str, int]] = []
        # Called after each write is applied (to change the cluster between two attempts).
        self.after_apply: list[Callable[[], None]] = []
        self.requests: list[Recorded] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self._stopping = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> FakeCluster:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(START_TIMEOUT_SECONDS)
        return self

    def __exit__(self, *exception: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(START_TIMEOUT_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_SECONDS)
        self._loop.close()

    async def _start(self) -> None:
        for node in self.nodes.values():
            app = web.Application()
            app[NODE_KEY] = node
            app.router.add_route("*", "/v1/kv/{key}", self._kv)
            app.router.add_get("/v1/status", self._status)
            app.router.add_get("/v1/hash", self._hash)
            app.router.add_route("*", "/v1/members", self._members)
            app.router.add_delete("/v1/members/{id}", self._members)
            app.router.add_post("/v1/transfer-leader", self._transfer)
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            node.port = listener.getsockname()[1]
            await web.SockSite(runner, listener).start()
            self._runners.append(runner)

    async def _stop(self) -> None:
        self._stopping.set()
        for runner in self._runners:
            await runner.cleanup()

    # --- what tests use ------------------------------------------------------------------
    def cluster_text(self, extra: dict[int, int] | None = None) -> str:
        """`--cluster` for these nodes (plus `extra` ids on other ports)."""
        ports = {node_id: node.port for node_id, node in self.nodes.items()} | (extra or {})
        return ",".join(f"{node_id}=127.0.0.1:{port}" for node_id, port in sorted(ports.items()))

    def addresses(self) -> dict[int, tuple[str, int]]:
        return {node_id: ("127.0.0.1", node.port) for node_id, node in self.nodes.items()}

    def fail_next(self, node_id: int, *faults: Fault) -> None:
        async def enqueue() -> None:
            self.nodes[node_id].faults.extend(faults)

        # Waits until the loop has queued them, so the next request surely meets them.
        asyncio.run_coroutine_threadsafe(enqueue(), self._loop).result(START_TIMEOUT_SECONDS)

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("PUT", "DELETE") and "/kv/" in r.path]

    def forget_sessions(self) -> None:
        """As if newer sessions had evicted every session the cluster remembers."""
        self.sessions.clear()
        self.evicted_through = self.index

    # --- handlers ------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> tuple[FakeNode, dict[str, Any] | None]:
        node = request.app[NODE_KEY]
        body = await request.json() if request.can_read_body else None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            Recorded(
                node.node_id,
                request.method,
                request.path,
                dict(request.query),
                body,
                peer,
                request.headers.get("Authorization"),
            )
        )
        return node, body

    async def _fault(self, request: web.Request, node: FakeNode) -> web.Response | Drop | None:
        if not node.faults:
            return None
        fault = node.faults.popleft()
        if isinstance(fault, Answer):
            return web.json_response(fault.payload, status=fault.status)
        if isinstance(fault, Hang):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.seconds)
            return web.json_response({"error": "timeout"}, status=504)
        if not fault.after_applying:
            return _drop(request)
        return fault

    def _not_leader(self, node: FakeNode) -> web.Response | None:
        if self.leader == node.node_id:
            return None
        if self.leader is None:
            return web.json_response({"error": "no_leader"}, status=503)
        hint = {
            "error": "not_leader",
            "leader": f"node{self.leader}",
            "leader_id": self.leader,
            "leader_url": f"http://127.0.0.1:{self.nodes[self.leader].port}",
        }
        return web.json_response(hint, status=421)

    async def _kv(self, request: web.Request) -> web.Response:
        node, body = await self._record(request)
        fault = await self._fault(request, node)
        if isinstance(fault, web.Response):
            return fault
        key = request.match_info["key"]
        consistency = request.query.get("consistency", "linearizable")
        if request.method != "GET" or (consistency != "stale" and not self.follower_reads):
            refusal = self._not_leader(node)
            if refusal is not None:
                return refusal
        if request.method == "GET":
            if key not in self.data:
                return web.json_response({"error": "not_found"}, status=404)
            return web.json_response({"key": key, "value": self.data[key], "index": self.index})
        source = body if request.method == "PUT" else dict(request.query)
        assert source is not None
        status, payload = self._apply(request.method, key, source)
        if isinstance(fault, Drop):
            return _drop(request)
        return web.json_response(payload, status=status)

    def _apply(self, method: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        client_id, seq = str(body.get("client_id", "")), int(body.get("seq", 0))
        after_index = body.get("after_index")
        remembered = self.sessions.get(client_id)
        if client_id and remembered is not None and remembered[0] == seq:
            return remembered[1], remembered[2]
        if client_id and remembered is None:
            opens = seq <= 1 if after_index is None else self.evicted_through <= int(after_index)
            if not opens:
                self.index += 1
                return 409, {
                    "error": "session_expired",
                    "message": "forgotten",
                    "index": self.index,
                }
        self.applied_writes.append((client_id, seq))
        self.index += 1
        status: int = 200
        payload: dict[str, Any] = {"ok": True, "leader": self.leader, "index": self.index}
        current = self.data.get(key)
        cas_failed = body.get("if_absent") and current is not None
        cas_failed = cas_failed or ("if_value" in body and body["if_value"] != current)
        if method == "DELETE":
            if self.data.pop(key, None) is None:
                status, payload = 404, {"error": "not_found"}
        elif cas_failed:
            status, payload = 409, {"error": "cas_failed", "current": current}
        else:
            self.data[key] = body["value"]
        if client_id:
            self.sessions[client_id] = (seq, status, payload)
        for hook in self.after_apply:
            hook()
        return status, payload

    async def _status(self, request: web.Request) -> web.Response:
        node, _ = await self._record(request)
        fault = await self._fault(request, node)
        if isinstance(fault, web.Response):
            return fault
        status = {
            "id": node.node_id,
            "role": "leader" if node.node_id == self.leader else "follower",
            "term": self.term,
            "leader": self.leader,
            "commit_index": self.index,
            "last_applied": node.last_applied,
            "last_log_index": self.index,
            "last_log_term": self.term,
            "snapshot_index": 0,
            "members": sorted(self.nodes),
            "applied_hash": node.hashes.get(node.last_applied, "0" * 32),
            "cluster_id": "fake",
            "log_entries": self.index,
        }
        return web.json_response(status | node.extra_status)

    async def _hash(self, request: web.Request) -> web.Response:
        node, _ = await self._record(request)
        index = int(request.query["index"])
        if index not in node.hashes:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response({"index": index, "applied_hash": node.hashes[index]})

    async def _members(self, request: web.Request) -> web.Response:
        node, _ = await self._record(request)
        refusal = self._not_leader(node)
        if refusal is not None:
            return refusal
        if request.method == "GET":
            members = [
                {
                    "id": member.node_id,
                    "role": "voter",
                    "address": f"127.0.0.1:{9000 + member.node_id}",
                    "client_address": f"127.0.0.1:{member.port}",
                }
                for member in self.nodes.values()
            ]
            return web.json_response({"members": members, "leader": self.leader})
        self.index += 1
        return web.json_response({"ok": True, "leader": self.leader, "index": self.index})

    async def _transfer(self, request: web.Request) -> web.Response:
        node, body = await self._record(request)
        refusal = self._not_leader(node)
        if refusal is not None:
            return refusal
        assert body is not None
        self.leader = int(body["to"])
        return web.json_response({"ok": True, "leader": self.leader})


def _drop(request: web.Request) -> web.Response:
    # Close the socket under the handler: the client sees the connection end with no answer.
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=500)
