"""Real processes: leader and follower crashes (SIGKILL), restarts, and whole-cluster loss."""

from __future__ import annotations

import signal
import time

from tests.process.cluster import ProcessCluster, wait_for


def applied_hashes_agree(cluster: ProcessCluster) -> bool:
    """Every node has applied the same commands up to a common index."""
    statuses = [cluster.status(node_id) for node_id in cluster.nodes]
    common = min(status["last_applied"] for status in statuses)
    hashes = set()
    for node_id in cluster.nodes:
        code, body = cluster.request(node_id, "GET", f"/v1/hash?index={common}")
        if code != 200:
            return False
        hashes.add(body["applied_hash"])
    return len(hashes) == 1


def test_leader_killed_new_leader_within_2s_and_writes_continue(cluster: ProcessCluster) -> None:
    for k in range(5):
        cluster.put_until_ok(f"before-{k}", str(k))
    old_leader = cluster.wait_leader()
    cluster.kill(old_leader)
    killed_at = time.monotonic()
    survivors = [n for n in cluster.nodes if n != old_leader]
    new_leader = cluster.wait_leader(timeout=10, among=survivors)
    elapsed = time.monotonic() - killed_at
    assert new_leader != old_leader
    assert elapsed < 2.0, f"new leader after {elapsed:.2f} s"
    cluster.put_until_ok("after", "yes")
    for k in range(5):
        code, body = cluster.request(new_leader, "GET", f"/v1/kv/before-{k}")
        assert code == 200 and body["value"] == str(k)


def test_follower_killed_during_writes_catches_up_after_restart(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    acknowledged = {}
    for k in range(60):
        if k == 20:
            cluster.kill(follower)
        body = cluster.put_until_ok(f"key-{k % 7}", f"v{k}")
        acknowledged[f"key-{k % 7}"] = f"v{k}"
        assert body["ok"]
    cluster.start(follower, bootstrap=False)
    leader_status = cluster.status(cluster.wait_leader())
    wait_for(
        lambda: cluster.status(follower)["last_applied"] >= leader_status["commit_index"],
        30,
        "the restarted follower to catch up",
    )
    wait_for(lambda: applied_hashes_agree(cluster), 30, "identical applied state")
    for key, value in acknowledged.items():
        code, body = cluster.request(follower, "GET", f"/v1/kv/{key}?consistency=stale")
        assert code == 200 and body["value"] == value


def test_whole_cluster_killed_and_restarted_keeps_every_acknowledged_write(
    cluster: ProcessCluster,
) -> None:
    acknowledged = {}
    for k in range(40):
        body = cluster.put_until_ok(f"k{k}", f"value-{k}")
        acknowledged[f"k{k}"] = (f"value-{k}", body["index"])
    for node_id in cluster.nodes:
        cluster.kill(node_id, signal.SIGKILL)
    for node_id in cluster.nodes:
        cluster.start(node_id, bootstrap=False)  # restarted members need no --peers
    leader = cluster.wait_leader(timeout=30)
    for key, (value, _) in acknowledged.items():
        code, body = cluster.request(leader, "GET", f"/v1/kv/{key}")
        assert code == 200 and body["value"] == value, (key, code, body)
    highest = max(index for _, index in acknowledged.values())
    body = cluster.put_until_ok("after-restart", "1")
    assert body["index"] > highest


def test_sigterm_is_a_clean_shutdown_and_restart_recovers_state(cluster: ProcessCluster) -> None:
    cluster.put_until_ok("durable", "yes")
    leader = cluster.wait_leader()
    cluster.kill(leader, signal.SIGTERM)
    assert cluster.nodes[leader].process is not None
    assert cluster.nodes[leader].process.returncode == 0
    log = cluster.log_text(leader)
    assert "handed leadership to node" in log  # a leader transfers before stopping
    cluster.start(leader, bootstrap=False)
    wait_for(
        lambda: cluster.request(leader, "GET", "/v1/kv/durable?consistency=stale")[0] == 200,
        30,
        "the restarted node to serve its data",
    )
    status = cluster.status(leader)
    assert status["term"] >= 2 and status["last_log_index"] >= 3
