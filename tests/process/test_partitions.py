"""Real network partitions (nftables on loopback): a leader cut off from the majority never
serves a stale read (ReadIndex and lease, thesis §6.4) and never commits a write; after the
partition heals the cluster converges."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.process.cluster import ProcessCluster, wait_for
from tests.process.firewall import Firewall, nft_available, peer_host

SHORT_TIMEOUT_ARGS = ["--election-timeout-ms", "150-300"]


class PeerPorts(Mapping[int, int]):
    """The cluster's peer ports, as they are now."""

    def __init__(self, cluster: ProcessCluster) -> None:
        self.cluster = cluster

    def __getitem__(self, node_id: int) -> int:
        return self.cluster.nodes[node_id].peer_port

    def __iter__(self) -> Iterator[int]:
        return iter(self.cluster.nodes)

    def __len__(self) -> int:
        return len(self.cluster.nodes)


@pytest.fixture
def partitionable(tmp_path: Path) -> Iterator[tuple[ProcessCluster, Firewall]]:
    assert nft_available(), "these tests need root and nftables (.ci/run installs it)"
    cluster = ProcessCluster(tmp_path, peer_hosts=peer_host)
    firewall = Firewall(PeerPorts(cluster))
    try:
        cluster.start_all()
        cluster.wait_leader()
        yield cluster, firewall
    finally:
        firewall.close()
        cluster.stop_all()


@pytest.mark.parametrize("consistency", ["linearizable", "lease"])
def test_cut_off_leader_never_serves_a_stale_read(
    partitionable: tuple[ProcessCluster, Firewall], consistency: str
) -> None:
    cluster, firewall = partitionable
    for round_number in range(2):
        cluster.put_until_ok("x", f"old-{round_number}")
        old_leader = cluster.wait_leader()
        others = [n for n in cluster.nodes if n != old_leader]
        firewall.cut([old_leader], others)
        new_leader = cluster.wait_leader(among=others)
        code, body = cluster.request(
            new_leader, "PUT", "/v1/kv/x", {"value": f"new-{round_number}"}
        )
        assert code == 200, body
        code, body = cluster.request(old_leader, "GET", f"/v1/kv/x?consistency={consistency}")
        if code == 200:
            assert body["value"] == f"new-{round_number}", f"stale read {body}"
        else:
            assert body["error"] in ("not_leader", "no_leader", "timeout"), body
        firewall.heal()
        wait_for(
            lambda old=old_leader, new=new_leader: (
                cluster.status(old)["leader"] == new
                and cluster.status(old)["last_applied"] >= cluster.status(new)["commit_index"]
            ),
            30,
            "the old leader to rejoin",
        )


def test_minority_side_never_commits_and_heals(
    partitionable: tuple[ProcessCluster, Firewall],
) -> None:
    cluster, firewall = partitionable
    cluster.put_until_ok("k", "before")
    old_leader = cluster.wait_leader()
    others = [n for n in cluster.nodes if n != old_leader]
    firewall.cut([old_leader], others)
    code, body = cluster.request(old_leader, "PUT", "/v1/kv/k", {"value": "minority"})
    assert code != 200, "a write was acknowledged by a leader without a majority"
    new_leader = cluster.wait_leader(among=others)
    assert cluster.request(new_leader, "PUT", "/v1/kv/k", {"value": "majority"})[0] == 200
    firewall.heal()
    wait_for(
        lambda: (
            cluster.status(old_leader)["last_applied"] >= cluster.status(new_leader)["commit_index"]
        ),
        30,
        "convergence",
    )
    code, body = cluster.request(old_leader, "GET", "/v1/kv/k?consistency=stale")
    assert body["value"] == "majority"
    check = cluster.client("check")
    assert check.returncode == 0, check.stdout + check.stderr
