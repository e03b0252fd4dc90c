"""Real network partitions between real processes: a leader cut off from the majority never
serves a stale read (ReadIndex and lease, thesis §6.4) and never commits a write; after the
partition heals the cluster converges. The links are cut with nftables where the machine
allows it and with user-space proxies everywhere else (`links.py`): the same assertions
either way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.cluster import ProcessCluster, wait_for
from tests.process.links import LinkCutter, chosen_links, partitionable_cluster


@pytest.fixture
def partitionable(tmp_path: Path) -> Iterator[tuple[ProcessCluster, LinkCutter]]:
    kind = chosen_links()
    print(f"peer links cut with {kind}")  # shown with a failure's captured output
    cluster, links = partitionable_cluster(tmp_path, kind)
    try:
        cluster.start_all()
        cluster.wait_leader()
        yield cluster, links
    finally:
        try:
            cluster.stop_all()
        finally:
            links.close()


@pytest.mark.parametrize("consistency", ["linearizable", "lease"])
def test_cut_off_leader_never_serves_a_stale_read(
    partitionable: tuple[ProcessCluster, LinkCutter], consistency: str
) -> None:
    cluster, links = partitionable
    for round_number in range(2):
        cluster.put_until_ok("x", f"old-{round_number}")
        old_leader = cluster.wait_leader()
        others = [n for n in cluster.nodes if n != old_leader]
        links.cut([old_leader], others)
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
        links.heal()
        wait_for(
            lambda old=old_leader, new=new_leader: (
                cluster.status(old)["leader"] == new
                and cluster.status(old)["last_applied"] >= cluster.status(new)["commit_index"]
            ),
            30,
            "the old leader to rejoin",
        )


def test_minority_side_never_commits_and_heals(
    partitionable: tuple[ProcessCluster, LinkCutter],
) -> None:
    cluster, links = partitionable
    cluster.put_until_ok("k", "before")
    old_leader = cluster.wait_leader()
    others = [n for n in cluster.nodes if n != old_leader]
    links.cut([old_leader], others)
    code, body = cluster.request(old_leader, "PUT", "/v1/kv/k", {"value": "minority"})
    assert code != 200, "a write was acknowledged by a leader without a majority"
    new_leader = cluster.wait_leader(among=others)
    assert cluster.request(new_leader, "PUT", "/v1/kv/k", {"value": "majority"})[0] == 200
    links.heal()
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
