"""Real processes: `GET /metrics` is valid Prometheus text and its numbers follow what the
cluster did (term, role, indexes, proposals, elections, fsync latency, per-peer lag, the
client port's connections and answers)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.process.cluster import ProcessCluster, wait_for

WRITES = 20


def scrape(cluster: ProcessCluster, node_id: int) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample, keyed by (name, label values)."""
    code, text = cluster.request(node_id, "GET", "/metrics")
    assert code == 200 and isinstance(text, str), text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sample.labels.values()))] = sample.value
    return samples


def test_metrics_follow_the_cluster(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    for number in range(WRITES):
        code, _ = cluster.request(leader, "PUT", f"/v1/kv/m{number}", {"value": "v"})
        assert code == 200
    assert cluster.request(leader, "GET", "/v1/kv/m0?consistency=bogus")[0] == 400
    followers = [n for n in cluster.nodes if n != leader]
    commit = cluster.status(leader)["commit_index"]
    # Followers learn the commit index with the next AppendEntries.
    wait_for(lambda: all(cluster.status(f)["commit_index"] >= commit for f in followers), 10)

    samples = scrape(cluster, leader)
    assert samples[("raft_role", ())] == 3
    assert samples[("raft_term", ())] >= 1
    assert samples[("raft_commit_index", ())] >= commit >= WRITES
    assert samples[("raft_applied_index", ())] >= commit
    assert samples[("raft_last_log_index", ())] >= commit
    assert samples[("raft_proposals_total", ())] >= WRITES
    assert samples[("raft_requests_waiting", ())] == 0
    assert samples[("raft_fsync_seconds_count", ())] >= 1
    assert samples[("raft_fsync_seconds_sum", ())] > 0
    assert samples[("raft_elections_total", ())] >= 1  # it campaigned to become leader
    for follower in followers:
        assert samples[("raft_replication_lag_entries", (str(follower),))] >= 0
    assert samples[("raft_http_connections", ())] >= 1
    assert samples[("raft_http_responses_total", ("200",))] >= WRITES
    assert samples[("raft_http_responses_total", ("400",))] >= 1
    assert samples[("raft_transport_frames_dropped", ())] >= 0
    # (counted by tests/server/test_acknowledged_from_sync_thread.py; present on every node)
    assert ("raft_transport_frames_sent_from_sync_thread_total", ()) in samples

    for follower in followers:
        samples = scrape(cluster, follower)
        assert samples[("raft_role", ())] == 0
        assert samples[("raft_commit_index", ())] >= commit
        assert samples[("raft_proposals_total", ())] == 0
