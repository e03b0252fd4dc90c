"""Leases on three real servers (ticker, Ready loop, lessor, HTTP handlers; memory stores and
transport) on the simulator's event loop, so time is virtual and nothing sleeps: a lease kept
alive lives, one left alone expires on every replica at the same index, keepalives are the
leader's alone, and a new leader gives every lease its TTL plus an election timeout."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from raftkv.server.http_server import Request
from raftkv.server.runtime import RaftServer
from raftkv.sim.event_loop import SimulatedEventLoop
from raftkv.transport.memory import MemoryHub
from tests.server.test_memory_stores import NODE_IDS, MemoryNode, leader_of, start_server
from tests.waiting import wait_until

ELECTION_TIMEOUT_MAX_SECONDS = 0.3  # NodeOptions' default (150..300 ms)


async def call(
    server: RaftServer, method: str, path: str, body: object = None
) -> tuple[int, dict[str, Any]]:
    assert server.api is not None
    raw = b"" if body is None else json.dumps(body).encode()
    response = await server.api.handle(Request(method, path, {}, raw, True))
    return response.status, json.loads(response.body)


def run_on_virtual_time(
    tmp_path: Path, body: Callable[[list[RaftServer], SimulatedEventLoop], Awaitable[None]]
) -> None:
    loop = SimulatedEventLoop(random.Random(1), time_quantum=0.001)

    async def main() -> None:
        hub = MemoryHub(random.Random(2))
        servers = [start_server(MemoryNode(node_id), hub, tmp_path) for node_id in NODE_IDS]
        try:
            for server in servers:
                await server.start()
            await wait_until(lambda: leader_of(servers) is not None, "a leader")
            await body(servers, loop)
        finally:
            for server in servers:
                await server.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def leader(servers: list[RaftServer]) -> RaftServer:
    found = leader_of(servers)
    assert found is not None
    return found


def key_everywhere(servers: list[RaftServer], key: str, present: bool) -> bool:
    return all(
        (server.state_machine.record(key) is not None) == present  # type: ignore[attr-defined]
        for server in servers
        if not server._stopping
    )


def test_kept_alive_lives_left_alone_expires_everywhere_at_one_index(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        status, granted = await call(first, "POST", "/v1/lease", {"ttl": 1})
        assert status == 200, granted
        lease = granted["id"]
        assert (await call(first, "PUT", "/v1/kv/k", {"value": "v", "lease": lease}))[0] == 200
        assert (await call(first, "PUT", "/v1/kv/plain", {"value": "v"}))[0] == 200
        # Kept alive every 0.3 s for 5 s: five TTLs, and the key is there throughout.
        for _ in range(17):
            status, answer = await call(first, "POST", f"/v1/lease/{lease}/keepalive")
            assert (status, answer) == (200, {"id": lease, "ttl": 1})
            last_keepalive = loop.time()
            await asyncio.sleep(0.3)
            assert key_everywhere(servers, "k", present=True)
        status, info = await call(first, "GET", f"/v1/lease/{lease}")
        assert status == 200 and info["keys"] == ["k"] and 0 < info["remaining"] <= 1
        follower = next(server for server in servers if server is not first)
        status, answer = await call(follower, "POST", f"/v1/lease/{lease}/keepalive")
        assert (status, answer["error"]) == (421, "not_leader")
        # Left alone: gone from every replica within a TTL (plus a check and a commit).
        await wait_until(lambda: key_everywhere(servers, "k", present=False), "the expiry")
        assert 1.0 <= loop.time() - last_keepalive < 1.5
        await wait_until(
            lambda: len({server.applied_index for server in servers}) == 1, "all applied"
        )
        assert len({server.state_machine.applied_hash for server in servers}) == 1
        assert all(
            "raft_lease_expiries_total 1.0" in server.metrics.render().decode()
            for server in servers
        )
        assert key_everywhere(servers, "plain", present=True)
        status, answer = await call(first, "POST", f"/v1/lease/{lease}/keepalive")
        assert (status, answer["error"]) == (404, "lease_not_found")

    run_on_virtual_time(tmp_path, body)


def test_a_new_leader_gives_the_lease_its_ttl_plus_an_election_timeout(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        old = leader(servers)
        lease = (await call(old, "POST", "/v1/lease", {"ttl": 2}))[1]["id"]
        assert (await call(old, "PUT", "/v1/kv/k", {"value": "v", "lease": lease}))[0] == 200
        await wait_until(lambda: key_everywhere(servers, "k", present=True), "replicated")
        assert (await call(old, "POST", f"/v1/lease/{lease}/keepalive"))[0] == 200
        kept_alive_at = loop.time()
        await old.stop()
        others = [server for server in servers if server is not old]
        await wait_until(lambda: leader_of(others) is not None, "a new leader")
        elected_at = loop.time()
        new = leader(others)
        assert new.leases is not None
        remaining = new.leases.lessor.remaining(lease)
        assert remaining is not None and remaining > 2 + ELECTION_TIMEOUT_MAX_SECONDS - 0.05
        await wait_until(lambda: key_everywhere(others, "k", present=False), "the expiry")
        assert loop.time() - elected_at >= 2 + ELECTION_TIMEOUT_MAX_SECONDS - 0.05
        assert loop.time() - kept_alive_at >= 2

    run_on_virtual_time(tmp_path, body)


def test_revoke_deletes_the_keys_on_every_replica(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        lease = (await call(first, "POST", "/v1/lease", {"ttl": 60}))[1]["id"]
        for key in ("a", "b"):
            assert (await call(first, "PUT", f"/v1/kv/{key}", {"value": "v", "lease": lease}))[
                0
            ] == 200
        assert "raft_leases 1.0" in first.metrics.render().decode()
        status, answer = await call(first, "DELETE", f"/v1/lease/{lease}")
        assert (status, answer["deleted"]) == (200, 2)
        await wait_until(
            lambda: key_everywhere(servers, "a", False) and key_everywhere(servers, "b", False),
            "the revoke applied everywhere",
        )
        status, listing = await call(first, "GET", "/v1/leases")
        assert (status, listing["leases"]) == (200, [])
        expiries = [
            server.leases.lessor.expiries_proposed_total for server in servers if server.leases
        ]
        assert expiries == [0, 0, 0]
        metrics = first.metrics.render().decode()
        assert "raft_leases 0.0" in metrics and "raft_lease_expiries_total 0.0" in metrics

    run_on_virtual_time(tmp_path, body)
