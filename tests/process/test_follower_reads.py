"""Real raft-node processes: a follower serves linearizable and lease reads itself, with
the leader's read index (server/follower_reads.py), counted in its metrics; with
`--no-follower-reads` it answers them 421 not_leader naming the leader, as before."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from tests.process.cluster import ProcessCluster


def _metrics(cluster: ProcessCluster, node: int) -> str:
    url = f"http://127.0.0.1:{cluster.nodes[node].client_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _counter(text: str, name: str) -> float:
    match = re.search(rf"^{name}_total (\S+)$", text, re.M)
    assert match, f"{name}_total not in the metrics"
    return float(match.group(1))


def test_a_follower_serves_a_write_acknowledged_at_the_leader(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    followers = [node for node in cluster.nodes if node != leader]
    for number in range(3):
        written = cluster.put_until_ok("k", f"v{number}")
        for follower in followers:
            for consistency in ("linearizable", "lease"):
                code, body = cluster.request(follower, "GET", f"/v1/kv/k?consistency={consistency}")
                assert code == 200, body
                assert body["value"] == f"v{number}" and body["index"] >= written["index"], body
    for follower in followers:
        text = _metrics(cluster, follower)
        assert _counter(text, "raft_follower_reads") >= 6
        assert 1 <= _counter(text, "raft_follower_read_forwards") <= 6
    assert _counter(_metrics(cluster, leader), "raft_follower_reads") == 0


def test_without_follower_reads_a_follower_names_the_leader(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, extra_args=["--no-follower-reads"])
    try:
        cluster.start_all()
        cluster.wait_settled()
        leader = cluster.wait_leader()
        cluster.put_until_ok("k", "v")
        follower = next(node for node in cluster.nodes if node != leader)
        code, body = cluster.request(follower, "GET", "/v1/kv/k")
        assert code == 421 and body["leader_id"] == leader, body
        code, body = cluster.request(follower, "GET", "/v1/kv/k?consistency=stale")
        assert code in (200, 404), body  # its own state, as always
    finally:
        cluster.stop_all()
