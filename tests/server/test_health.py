"""Health probes (issue #16): `GET /livez` answers 200 while the node's event loop serves,
whatever the cluster's state; `GET /readyz` answers 200 only while the node can serve (a
leader heard from within an election timeout, storage healthy, a member, applied within
`ready_lag_entries_max` of the commit index it knows), else 503 naming every failing check.

Three real servers (ticker, Ready loop, HTTP server on an ephemeral port) on memory stores
and the in-memory transport, whose hub isolates a node; and the readiness rule itself on
facts made by hand."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from raftkv.core.messages import AppendEntries
from raftkv.server.health import CHECK_PASSED, HealthFacts, readiness
from raftkv.server.http_server import Request
from raftkv.server.options import READY_LAG_ENTRIES_DEFAULT, NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.storage.base import Stores
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.transport.memory import MemoryHub, MemoryTransport
from tests.waiting import wait_until

NODE_IDS = (1, 2, 3)
HOST = "127.0.0.1"
WAIT_SECONDS = 20.0  # generous: a loaded 2-core CI machine runs the tests in parallel
CHECKS = {"leader", "storage", "caught_up", "member"}
ALL_PASSED = dict.fromkeys(CHECKS, CHECK_PASSED)


def start_server(node_id: int, hub: MemoryHub, data_root: Path, **extra: Any) -> RaftServer:
    options = NodeOptions(
        node_id=node_id,
        data_dir=str(data_root / f"node-{node_id}"),
        listen=(HOST, 9000 + node_id),  # addresses on the memory hub, not real ports
        client_listen=(HOST, 0),  # a real HTTP server on an ephemeral port
        peers={peer: (HOST, 9000 + peer) for peer in NODE_IDS if peer != node_id},
        seed=node_id,
        **extra,
    )
    return RaftServer(
        options,
        stores=Stores(MemoryLogStore(), MemoryStableStore(), MemorySnapshotStore()),
        transport_factory=functools.partial(MemoryTransport, hub),
    )


async def http_get(server: RaftServer, path: str, method: str = "GET") -> tuple[int, Any]:
    """One request to the server's client port, as a probe sends it."""
    assert server.http is not None
    reader, writer = await asyncio.open_connection(HOST, server.http.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT_SECONDS)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body) if body else None


async def readyz(server: RaftServer) -> tuple[int, dict[str, Any]]:
    status, body = await http_get(server, "/readyz")
    assert isinstance(body, dict)
    return status, body


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A plain condition, for `wait_until`."""

    async def check() -> bool:
        return predicate()

    return check


async def all_ready(servers: list[RaftServer]) -> bool:
    statuses = [(await readyz(server))[0] for server in servers]
    return all(status == 200 for status in statuses)


def leader_of(servers: list[RaftServer]) -> RaftServer | None:
    leaders = [server for server in servers if server.node.role == "leader"]
    return leaders[0] if len(leaders) == 1 else None


async def ready_cluster(
    servers: list[RaftServer],
) -> tuple[RaftServer, RaftServer]:
    """Wait until every node is ready; the leader and a follower."""
    await wait_until(lambda: all_ready(servers), "every node ready")
    leader = leader_of(servers)
    assert leader is not None
    follower = next(server for server in servers if server is not leader)
    return leader, follower


def run_cluster(
    data_root: Path,
    body: Callable[[MemoryHub, list[RaftServer]], Awaitable[None]],
    *,
    isolated: int | None = None,
    **extra: Any,
) -> None:
    """Start three servers on a fresh hub (`isolated` cut off from the start), run `body`,
    stop them all, pass or fail."""

    async def main() -> None:
        hub = MemoryHub()
        if isolated is not None:
            hub.isolate(isolated)
        servers = [start_server(node_id, hub, data_root, **extra) for node_id in NODE_IDS]
        started: list[RaftServer] = []
        try:
            for server in servers:
                await server.start()
                started.append(server)
            await body(hub, servers)
        finally:
            for server in started:
                await server.stop()

    asyncio.run(main())


# --- on real servers -------------------------------------------------------------------------
def test_a_node_turns_ready_once_a_leader_is_elected(tmp_path: Path) -> None:
    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        # Node 1, isolated from the start, cannot hear of a leader.
        status, answer = await readyz(servers[0])
        assert status == 503
        assert answer["ok"] is False and answer["leader"] is None
        assert answer["checks"] == {**ALL_PASSED, "leader": "leader unknown"}
        assert await http_get(servers[0], "/livez") == (200, {"ok": True})

        hub.heal()
        leader, _ = await ready_cluster(servers)
        for server in servers:
            status, answer = await readyz(server)
            assert status == 200, answer
            assert answer["ok"] is True and answer["checks"] == ALL_PASSED
            assert answer["id"] == server.id and answer["leader"] == leader.id
            assert answer["behind_max"] == READY_LAG_ENTRIES_DEFAULT
            assert await http_get(server, "/livez") == (200, {"ok": True})
        # HEAD, as some probes send it: the status alone.
        assert await http_get(leader, "/readyz", method="HEAD") == (200, None)
        assert await http_get(leader, "/livez", method="HEAD") == (200, None)

    run_cluster(tmp_path, body, isolated=1)


def test_a_follower_cut_off_from_the_leader_turns_not_ready_and_stays_live(
    tmp_path: Path,
) -> None:
    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        _, follower = await ready_cluster(servers)
        hub.isolate(follower.id)

        async def follower_lost_its_leader() -> bool:
            return (await readyz(follower))[0] == 503

        await wait_until(follower_lost_its_leader, "the cut-off follower not ready")
        status, answer = await readyz(follower)
        assert status == 503 and answer["ok"] is False
        assert answer["checks"] == {**ALL_PASSED, "leader": "leader unknown"}
        assert answer["leader"] is None
        assert await http_get(follower, "/livez") == (200, {"ok": True})
        # The majority still has its leader: it stays ready.
        others = [server for server in servers if server is not follower]
        await wait_until(lambda: all_ready(others), "the majority ready")

        hub.heal()
        await wait_until(lambda: all_ready(servers), "the follower ready again once healed")

    run_cluster(tmp_path, body)


def test_a_node_whose_storage_failed_is_not_ready_names_it_and_stays_live(
    tmp_path: Path,
) -> None:
    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        _, follower = await ready_cluster(servers)
        follower._stop_participating("disk full")
        status, answer = await readyz(follower)
        assert status == 503 and answer["ok"] is False
        assert answer["checks"]["storage"] == "storage failed: disk full"
        assert answer["checks"]["member"] == CHECK_PASSED
        assert await http_get(follower, "/livez") == (200, {"ok": True})

    run_cluster(tmp_path, body)


def test_a_follower_behind_the_leaders_commit_is_not_ready(tmp_path: Path) -> None:
    """A follower still receiving entries commits only what it holds: the leader's commit
    index it was told, not its own, says how far behind it is."""

    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        leader, follower = await ready_cluster(servers)
        # Nobody writes: the leader's commit index stays where the follower's log ends.
        node = follower.node
        log = node.log
        # What the leader sends a follower whose log ends 50 entries before its commit.
        follower._on_message(
            AppendEntries(
                to=follower.id,
                term=node.term,
                leader_id=leader.id,
                prev_log_index=log.last_index,
                prev_log_term=log.last_term,
                entries=[],
                leader_commit=log.last_index + 50,
            )
        )
        await wait_until(
            holds(lambda: follower.applied_index == log.last_index),
            "the follower applied what it holds",
        )
        status, answer = await readyz(follower)
        assert status == 503
        assert answer["checks"]["caught_up"] == "50 entries behind"
        assert answer["behind"] == 50 and answer["behind_max"] == 10
        assert answer["commit_index"] == log.last_index + 50

    run_cluster(tmp_path, body, ready_lag_entries_max=10)


def test_a_removed_node_is_not_ready_and_says_so(tmp_path: Path) -> None:
    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        leader, follower = await ready_cluster(servers)
        assert leader.api is not None
        request = Request("DELETE", f"/v1/members/{follower.id}", {}, b"", True)

        async def removed() -> bool:
            # A leader elected moments ago refuses changes (no_leader) until it commits.
            assert leader.api is not None
            return (await leader.api.handle(request)).status == 200

        await wait_until(removed, f"node {follower.id} removed")
        await wait_until(holds(follower.peers.removed.is_set), "the removal applied there")
        status, answer = await readyz(follower)
        assert status == 503
        assert answer["checks"]["member"] == "removed from the cluster"
        assert await http_get(follower, "/livez") == (200, {"ok": True})

        # Out of the configuration it never campaigns, so it keeps the leader's id; but it
        # no longer hears from that leader, which readiness goes by.
        async def leader_silent() -> bool:
            return (await readyz(follower))[1]["checks"]["leader"] == "leader unknown"

        await wait_until(leader_silent, "the removed node's leader check failing")
        assert follower.node.leader_id == leader.id

    run_cluster(tmp_path, body)


# --- the rule --------------------------------------------------------------------------------
def facts(**changes: Any) -> HealthFacts:
    healthy: dict[str, Any] = {
        "leader_id": 2,
        "storage_failure": None,
        "member": True,
        "removed": False,
        "commit_index": 500,
        "applied_index": 500,
    }
    return HealthFacts(**{**healthy, **changes})


def test_the_lag_bound_is_inclusive() -> None:
    at_bound = readiness(1, facts(applied_index=400), lag_entries_max=100)
    assert at_bound["ok"] is True and at_bound["behind"] == 100
    past_bound = readiness(1, facts(applied_index=399), lag_entries_max=100)
    assert past_bound["ok"] is False
    assert past_bound["checks"] == {**ALL_PASSED, "caught_up": "101 entries behind"}


def test_every_failing_check_is_named() -> None:
    answer = readiness(
        3,
        facts(
            leader_id=None,
            storage_failure="disk full",
            member=False,
            commit_index=620,
            applied_index=500,
        ),
        lag_entries_max=100,
    )
    assert answer["ok"] is False
    assert answer["checks"] == {
        "leader": "leader unknown",
        "storage": "storage failed: disk full",
        "caught_up": "120 entries behind",
        "member": "not a member of the cluster's configuration",
    }
    removed = readiness(3, facts(removed=True, member=False), lag_entries_max=100)
    assert removed["checks"]["member"] == "removed from the cluster"
    healthy = readiness(3, facts(), lag_entries_max=100)
    assert healthy["ok"] is True and healthy["checks"] == ALL_PASSED
