"""Real processes: a node listening on wildcard addresses is known to its peers and named
in leader hints by the addresses it advertises (`--advertise-peer`, `--advertise-client`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.process.cluster import ProcessCluster, wait_for


def test_a_wildcard_node_is_reached_at_its_advertised_addresses(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, node_ids=(1, 2))
    try:
        first = cluster.nodes[1]
        peer_address = f"127.0.0.1:{first.peer_port}"
        client_address = f"127.0.0.1:{first.client_port}"
        cluster.start(
            1,
            "--single-node",
            *("--listen", f"0.0.0.0:{first.peer_port}"),
            *("--client-listen", f"0.0.0.0:{first.client_port}"),
            *("--advertise-peer", peer_address),
            *("--advertise-client", client_address),
            bootstrap=False,
        )
        assert cluster.wait_leader() == 1
        # Node 2 joins through node 1 and learns node 1's address from it: the advertised
        # one, the only one it is given.
        cluster.start(2, "--join", client_address)

        def node_one_seen_from_node_two() -> dict[str, Any] | None:
            code, body = cluster.request(2, "GET", "/v1/members")
            if code != 200:
                return None
            member = {m["id"]: m for m in body["members"]}.get(1)
            return member if member and member["client_address"] else None

        member = wait_for(node_one_seen_from_node_two, 30, "node 2 to know node 1")
        assert member["address"] == peer_address
        assert member["client_address"] == client_address

        # Replication works both ways over the advertised peer address.
        code, _ = cluster.request(1, "PUT", "/v1/kv/k", {"value": "v"})
        assert code == 200
        wait_for(
            lambda: cluster.request(2, "GET", "/v1/kv/k?consistency=stale")[1].get("value") == "v",
            30,
            "the write on node 2",
        )
        # Node 2's leader hint names node 1's advertised client address.
        code, body = cluster.request(2, "PUT", "/v1/kv/k", {"value": "w"})
        assert code == 421, body
        assert body["leader_id"] == 1
        assert body["leader_url"] == f"http://{client_address}"
        # And node 1 describes itself by its advertised addresses.
        code, body = cluster.request(1, "GET", "/v1/members")
        assert code == 200
        me = {m["id"]: m for m in body["members"]}[1]
        assert me["address"] == peer_address
        assert me["client_address"] == client_address
    finally:
        cluster.stop_all()
