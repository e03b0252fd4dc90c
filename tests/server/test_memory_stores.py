"""The store seam: `RaftServer(stores=...)` runs on the stores it is given. Three real servers
(ticker, Ready loop, request layer, HTTP handlers) on the in-memory twins of the stores and
of the transport elect a leader and apply a write on every node; none of them opens a WAL
or a snapshot file. What they made durable survives a crash of every memory store (which
drops unsynced writes) and a restart on the same stores."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from raftkv.kv import KVStore
from raftkv.server.http_server import Request
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.storage.base import Stores
from raftkv.storage.datadir import SNAPSHOT_DIRECTORY_NAME, WAL_DIRECTORY_NAME
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.transport.memory import MemoryHub, MemoryTransport
from tests.waiting import wait_until

NODE_IDS = (1, 2, 3)
HOST = "127.0.0.1"


class MemoryNode:
    """One node's memory stores and state machine, kept across its restarts."""

    def __init__(self, node_id: int) -> None:
        self.id = node_id
        self.log = MemoryLogStore()
        self.stable = MemoryStableStore()
        self.snapshots = MemorySnapshotStore()
        self.state_machine = KVStore()

    def stores(self) -> Stores:
        return Stores(self.log, self.stable, self.snapshots)

    def crash(self) -> None:
        """Power loss: every store forgets what was not synced; memory state is gone."""
        self.log.crash()
        self.stable.crash()
        self.snapshots.crash()
        self.state_machine = KVStore()


def start_server(node: MemoryNode, hub: MemoryHub, data_root: Path) -> RaftServer:
    options = NodeOptions(
        node_id=node.id,
        data_dir=str(data_root / f"node-{node.id}"),
        listen=(HOST, 9000 + node.id),
        client_listen=(HOST, 8000 + node.id),
        peers={peer: (HOST, 9000 + peer) for peer in NODE_IDS if peer != node.id},
        seed=node.id,
    )
    return RaftServer(
        options,
        node.state_machine,
        stores=node.stores(),
        transport_factory=functools.partial(MemoryTransport, hub),
        listen_for_clients=False,
    )


def leader_of(servers: list[RaftServer]) -> RaftServer | None:
    leaders = [server for server in servers if server.node.role == "leader"]
    return leaders[0] if len(leaders) == 1 else None


async def put(server: RaftServer, key: str, value: str) -> tuple[int, dict[str, object]]:
    assert server.api is not None
    body = json.dumps({"value": value}).encode()
    response = await server.api.handle(Request("PUT", f"/v1/kv/{key}", {}, body, True))
    return response.status, json.loads(response.body)


async def get(server: RaftServer, key: str) -> tuple[int, dict[str, object]]:
    assert server.api is not None
    response = await server.api.handle(Request("GET", f"/v1/kv/{key}", {}, b"", True))
    return response.status, json.loads(response.body)


async def run_cluster(
    nodes: list[MemoryNode],
    data_root: Path,
    body: Callable[[list[RaftServer]], Awaitable[None]],
) -> None:
    """Start a server per node on a fresh hub, run `body`, stop them all."""
    hub = MemoryHub()
    servers = [start_server(node, hub, data_root) for node in nodes]
    try:
        for server in servers:
            await server.start()
        await body(servers)
    finally:
        for server in servers:
            await server.stop()


def applied_everywhere(nodes: list[MemoryNode], servers: list[RaftServer], index: int) -> bool:
    return all(
        server.applied_index >= index and node.state_machine.get("k") == "v"
        for node, server in zip(nodes, servers, strict=True)
    )


def test_a_cluster_on_memory_stores_elects_writes_and_applies_everywhere(
    tmp_path: Path,
) -> None:
    nodes = [MemoryNode(node_id) for node_id in NODE_IDS]
    written: dict[str, int] = {}

    async def write_and_read(servers: list[RaftServer]) -> None:
        await wait_until(lambda: leader_of(servers) is not None, "a leader")
        leader = leader_of(servers)
        assert leader is not None
        status, answer = await put(leader, "k", "v")
        assert (status, answer["ok"], answer["leader"]) == (200, True, leader.id)
        index = answer["index"]
        assert isinstance(index, int)
        written["index"], written["term"] = index, leader.node.term
        await wait_until(
            lambda: applied_everywhere(nodes, servers, index), f"entry {index} applied on all"
        )
        status, answer = await get(leader, "k")
        assert (status, answer["value"]) == (200, "v")

    asyncio.run(run_cluster(nodes, tmp_path, write_and_read))

    index, term = written["index"], written["term"]
    for node in nodes:
        data_dir = tmp_path / f"node-{node.id}"
        assert data_dir.is_dir(), "the data dir still holds the node's identity and lock"
        assert not (data_dir / WAL_DIRECTORY_NAME).exists(), "a WAL was opened anyway"
        assert not (data_dir / SNAPSHOT_DIRECTORY_NAME).exists(), "snapshot files were opened"
        node.crash()
        # Synced through the seam: the write's entry and the term survive the crash.
        assert node.log.term(index) == term, f"node {node.id} lost entry {index}"
        assert node.stable.hard_state().term >= term, f"node {node.id} lost its term"


def test_a_cluster_restarted_on_its_memory_stores_keeps_what_it_applied(
    tmp_path: Path,
) -> None:
    nodes = [MemoryNode(node_id) for node_id in NODE_IDS]

    async def write(servers: list[RaftServer]) -> None:
        await wait_until(lambda: leader_of(servers) is not None, "a leader")
        leader = leader_of(servers)
        assert leader is not None
        status, answer = await put(leader, "k", "v")
        assert status == 200
        index = answer["index"]
        assert isinstance(index, int)
        await wait_until(
            lambda: applied_everywhere(nodes, servers, index), f"entry {index} applied on all"
        )

    asyncio.run(run_cluster(nodes, tmp_path, write))
    for node in nodes:
        node.crash()

    async def read_back(servers: list[RaftServer]) -> None:
        await wait_until(lambda: leader_of(servers) is not None, "a leader after the restart")
        leader = leader_of(servers)
        assert leader is not None
        status, answer = await get(leader, "k")  # linearizable: after this term's commit
        assert (status, answer["value"]) == (200, "v")
        await wait_until(
            lambda: all(node.state_machine.get("k") == "v" for node in nodes),
            "the write re-applied on all after the restart",
        )

    asyncio.run(run_cluster(nodes, tmp_path, read_back))
