"""`raft-client check` and `check_cluster`: agreement at the common applied index."""

from __future__ import annotations

import json

import pytest

from raftkv.client import CheckIncomplete, RaftClient, check_cluster
from tests.client.conftest import RunCli
from tests.client.fake_cluster import FakeCluster, free_port

HASH_A = "a" * 32
HASH_B = "b" * 32


def _applied(cluster: FakeCluster, last_applied: dict[int, int], hashes: dict[int, str]) -> None:
    """Node N applied up to last_applied[N] and remembers `hashes` (index -> hash)."""
    for node_id, index in last_applied.items():
        cluster.nodes[node_id].last_applied = index
        cluster.nodes[node_id].hashes = {i: h for i, h in hashes.items() if i <= index}


def test_check_ok_at_the_lowest_applied_index(cluster: FakeCluster, run_cli: RunCli) -> None:
    _applied(cluster, {1: 120, 2: 118, 3: 120}, {118: HASH_A, 119: "c" * 32, 120: "d" * 32})
    code, out, err = run_cli("--cluster", cluster.cluster_text(), "check")
    assert (code, out, err) == (0, f"OK n=3 index=118 hash={HASH_A}\n", "")
    asked = [r.query["index"] for r in cluster.requests if r.path == "/v1/hash"]
    assert asked == ["118"] * 3


def test_check_skips_unreachable_nodes(cluster: FakeCluster, run_cli: RunCli) -> None:
    _applied(cluster, {1: 5, 2: 5, 3: 5}, {5: HASH_A})
    cluster_text = cluster.cluster_text(extra={4: free_port()})
    code, out, _ = run_cli("--cluster", cluster_text, "--json", "check")
    assert code == 0
    assert json.loads(out) == {
        "ok": True,
        "n": 3,
        "index": 5,
        "hash": HASH_A,
        "unreachable": [4],
    }


def test_check_mismatch_exits_4_naming_the_node(cluster: FakeCluster, run_cli: RunCli) -> None:
    _applied(cluster, {1: 7, 2: 7, 3: 7}, {7: HASH_A})
    cluster.nodes[3].hashes = {7: HASH_B}
    code, out, err = run_cli("--cluster", cluster.cluster_text(), "check")
    assert code == 4
    assert "node=3 hash=" + HASH_B + " differs" in out.splitlines()
    error = json.loads(err)
    assert error["error"] == "inconsistent"
    assert (error["index"], error["differing"]) == (7, [3])
    assert error["hashes"] == {"1": HASH_A, "2": HASH_A, "3": HASH_B}


def test_check_retries_when_a_node_forgot_the_index(cluster: FakeCluster) -> None:
    # Node 2 lags at 10; nodes 1 and 3 only remember from 12 on. After the first try node 2
    # catches up, and the second try compares at 12.
    _applied(cluster, {1: 12, 2: 10, 3: 12}, {10: HASH_A, 12: HASH_B})
    for node_id in (1, 3):
        cluster.nodes[node_id].hashes = {12: HASH_B}
    pauses: list[float] = []

    def catch_up(seconds: float) -> None:
        pauses.append(seconds)
        _applied(cluster, {2: 12}, {12: HASH_B})

    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        report = check_cluster(client, sleep=catch_up)
    assert (report.index, report.consistent, report.majority_hash) == (12, True, HASH_B)
    assert len(pauses) == 1


def test_check_gives_up_after_a_few_tries(cluster: FakeCluster, run_cli: RunCli) -> None:
    _applied(cluster, {1: 9, 2: 3, 3: 9}, {9: HASH_A})
    cluster.nodes[2].hashes = {3: HASH_A}
    client = RaftClient(cluster.addresses(), timeout=2.0)
    with client, pytest.raises(CheckIncomplete) as caught:
        check_cluster(client, attempts_max=3, sleep=lambda _: None)
    assert caught.value.payload["missing"] == [1, 3]


def test_check_exits_4_on_a_corrupt_log(cluster: FakeCluster, run_cli: RunCli) -> None:
    cluster.nodes[2].extra_status = {"corrupt": True}
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "check")
    assert code == 4
    assert json.loads(err)["error"] == "corrupt_log"


def test_check_with_every_node_down_exits_2(run_cli: RunCli) -> None:
    code, _, err = run_cli("--cluster", f"1=127.0.0.1:{free_port()}", "check")
    assert code == 2
    assert json.loads(err)["error"] == "timeout"
