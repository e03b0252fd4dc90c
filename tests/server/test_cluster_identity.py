"""A new cluster's id is random (SPEC §4 "Cluster identity"): the founder with the lowest id
makes it, the other founders learn it through the peer handshake, and every member keeps it
in its data dir. Two clusters founded with the same member ids get different ids, so a node
of one is refused by the other. Real servers in one process, on real TCP transports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.storage.datadir import META_FILE_NAME
from tests.process.cluster import free_port
from tests.server.test_memory_stores import leader_of, put
from tests.waiting import wait_until

HOST = "127.0.0.1"
NODE_IDS = (1, 2, 3)


def founder_options(root: Path, ports: dict[int, int], node_id: int) -> NodeOptions:
    return NodeOptions(
        node_id=node_id,
        data_dir=str(root / f"node-{node_id}"),
        listen=(HOST, ports[node_id]),
        client_listen=(HOST, 0),
        peers={peer: (HOST, port) for peer, port in ports.items() if peer != node_id},
        seed=node_id,
    )


def recorded_cluster_id(root: Path, node_id: int) -> str | None:
    meta = json.loads((root / f"node-{node_id}" / META_FILE_NAME).read_text())
    cluster_id = meta["cluster_id"]
    assert cluster_id is None or isinstance(cluster_id, str)
    return cluster_id


async def stop_all(servers: list[RaftServer]) -> None:
    for server in servers:
        await server.stop()


async def found_cluster(root: Path) -> list[RaftServer]:
    ports = {node_id: free_port() for node_id in NODE_IDS}
    servers = [
        RaftServer(founder_options(root, ports, node_id), listen_for_clients=False)
        for node_id in NODE_IDS
    ]
    for server in servers:
        await server.start()
    return servers


def test_founders_share_one_random_id_kept_in_every_data_dir(tmp_path: Path) -> None:
    async def body() -> None:
        servers = await found_cluster(tmp_path)
        try:
            await wait_until(
                lambda: (
                    len({server.cluster_id for server in servers}) == 1
                    and servers[0].cluster_id != ""
                ),
                "every founder to know the cluster id",
            )
            await wait_until(lambda: leader_of(servers) is not None, "a leader")
            leader = leader_of(servers)
            assert leader is not None
            status, _ = await put(leader, "k", "v")
            assert status == 200
        finally:
            await stop_all(servers)
        cluster_id = servers[0].cluster_id
        assert re.fullmatch(r"raftkv-[0-9a-f]{32}", cluster_id)
        assert [recorded_cluster_id(tmp_path, node_id) for node_id in NODE_IDS] == [cluster_id] * 3

    asyncio.run(body())


def test_two_clusters_of_the_same_member_ids_get_different_ids(tmp_path: Path) -> None:
    """Derived from the member ids, as it was, every cluster of nodes 1, 2 and 3 had the
    same id, so a node of one cluster given another's address was taken in as a member."""

    async def body() -> None:
        first = await found_cluster(tmp_path / "first")
        second = await found_cluster(tmp_path / "second")
        try:
            await wait_until(
                lambda: all(server.cluster_id for server in first + second),
                "both clusters to know their ids",
            )
            assert first[0].cluster_id != second[0].cluster_id
            # Node 2 of the second cluster pointed at node 1 of the first is refused.
            stray = second[1].transport
            stray.set_peer_address(1, *first[0].transport.listen_address)
            refused_before = first[0].transport.counters().connections_refused
            await wait_until(
                lambda: first[0].transport.counters().connections_refused > refused_before,
                "the first cluster's node 1 to refuse the stray",
            )
        finally:
            await stop_all(first + second)

    asyncio.run(body())


def test_founders_wait_for_the_one_that_makes_the_id_and_keep_it_across_a_restart(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        ports = {node_id: free_port() for node_id in NODE_IDS}
        options = {node_id: founder_options(tmp_path, ports, node_id) for node_id in NODE_IDS}
        two, three = (RaftServer(options[node_id], listen_for_clients=False) for node_id in (2, 3))
        servers = [two, three]
        try:
            await two.start()
            await three.start()
            # Without node 1 neither knows the id: they refuse each other, elect nobody.
            await wait_until(
                lambda: (
                    two.transport.counters().connections_refused >= 1
                    and three.transport.counters().connections_refused >= 1
                ),
                "nodes 2 and 3 to refuse each other",
            )
            assert (two.cluster_id, three.cluster_id) == ("", "")
            assert recorded_cluster_id(tmp_path, 2) is None
            assert leader_of(servers) is None
            one = RaftServer(options[1], listen_for_clients=False)
            servers.insert(0, one)
            await one.start()
            await wait_until(
                lambda: two.cluster_id == three.cluster_id == one.cluster_id,
                "nodes 2 and 3 to learn node 1's id",
            )
            await wait_until(lambda: leader_of(servers) is not None, "a leader")
            await two.stop()
            # Restarted without --peers, node 2 presents the id it recorded.
            restarted = RaftServer(
                NodeOptions(
                    node_id=2,
                    data_dir=options[2].data_dir,
                    listen=options[2].listen,
                    client_listen=(HOST, 0),
                ),
                listen_for_clients=False,
            )
            servers[1] = restarted
            await restarted.start()
            assert restarted.cluster_id == one.cluster_id
            await wait_until(
                lambda: restarted.transport.is_connected(1), "the restarted node's link"
            )
        finally:
            await stop_all(servers)

    asyncio.run(body())
