"""raft-node's event loop runs SCHED_BATCH while the node follows and SCHED_OTHER while it
leads, following leadership as it moves (server/thread_scheduling.py); with
`--no-follower-batch-scheduling` every loop stays SCHED_OTHER."""

from __future__ import annotations

import os
from pathlib import Path

from raftkv.client import RaftClient
from tests.process.cluster import ProcessCluster, wait_for

# /proc/PID/task/TID/stat: the policy is field 41, the 39th after the command's ")".
POLICY_FIELD_AFTER_COMMAND = 38


def loop_policy(cluster: ProcessCluster, node_id: int) -> int:
    """The scheduling policy of the node's main thread (the one running its event loop)."""
    process = cluster.nodes[node_id].process
    assert process is not None
    stat = Path(f"/proc/{process.pid}/task/{process.pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[POLICY_FIELD_AFTER_COMMAND])


def policies(cluster: ProcessCluster) -> dict[int, int]:
    return {node_id: loop_policy(cluster, node_id) for node_id in cluster.nodes}


def expected_for(cluster: ProcessCluster, leader: int) -> dict[int, int]:
    return {
        node_id: os.SCHED_OTHER if node_id == leader else os.SCHED_BATCH
        for node_id in cluster.nodes
    }


def test_the_loops_policies_follow_leadership(cluster: ProcessCluster) -> None:
    leader = cluster.wait_settled()
    wait_for(
        lambda: policies(cluster) == expected_for(cluster, leader),
        30,
        "the leader's loop SCHED_OTHER, the followers' SCHED_BATCH",
    )
    admin = RaftClient(
        {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}, timeout=10
    )
    try:
        target = next(node_id for node_id in cluster.nodes if node_id != leader)
        admin.transfer_leader(target)
    finally:
        admin.close()
    assert cluster.wait_leader() == target
    wait_for(
        lambda: policies(cluster) == expected_for(cluster, target),
        30,
        f"the policies swapped between nodes {leader} and {target}",
    )


def test_the_flag_keeps_every_loop_ordinary(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, extra_args=["--no-follower-batch-scheduling"])
    try:
        cluster.start_all()
        cluster.wait_settled()
        cluster.put_until_ok("k", "v")  # every node has applied, so its loop ran a while
        assert policies(cluster) == {node_id: os.SCHED_OTHER for node_id in cluster.nodes}
    finally:
        cluster.stop_all()
