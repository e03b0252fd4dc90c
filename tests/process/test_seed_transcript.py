"""The seed's session (SPEC §1) through the real raft-client command."""

from __future__ import annotations

import json
import re
import time

from tests.process.cluster import ProcessCluster, wait_for


def test_seed_transcript(cluster: ProcessCluster) -> None:
    put = cluster.client("put", "x", "1")
    assert put.returncode == 0, put.stderr
    assert re.fullmatch(r"OK leader=\d+ index=\d+\n", put.stdout)
    get = cluster.client("get", "x")
    assert (get.returncode, get.stdout) == (0, "1\n")
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    wait_for(lambda: cluster.status(follower)["leader"] == leader, 10, "the follower's leader")
    refused = cluster.client("put", "x", "2", "--target", str(follower))
    assert refused.returncode == 3
    assert json.loads(refused.stderr) == {"error": "not_leader", "leader": f"node{leader}"}
    assert cluster.client("get", "x").stdout == "1\n"


def test_status_and_check_on_a_live_cluster(cluster: ProcessCluster) -> None:
    for k in range(10):
        assert cluster.client("put", f"k{k}", str(k)).returncode == 0
    status = cluster.client("status")
    assert status.returncode == 0
    lines = status.stdout.strip().splitlines()
    assert len(lines) == 4 and "leader" in status.stdout
    check = cluster.client("check")
    assert check.returncode == 0, check.stderr
    assert re.fullmatch(r"OK n=3 index=\d+ hash=[0-9a-f]+\n", check.stdout)


def test_all_nodes_down_exits_2_within_the_timeout(cluster: ProcessCluster) -> None:
    for node_id in cluster.nodes:
        cluster.kill(node_id)
    started = time.monotonic()
    result = cluster.client("--timeout", "1", "put", "x", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert json.loads(result.stderr.strip().splitlines()[-1])["error"] in ("timeout", "no_leader")
    assert elapsed < 10  # the client's own start-up plus the 1 s timeout
