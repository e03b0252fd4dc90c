"""Real processes: growing, shrinking and replacing members while a client writes, and
leadership transfer under load (§6 joint consensus, thesis §3.10)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from raftkv.client import RaftClient
from raftkv.errors import ClientError
from tests.process.cluster import ProcessCluster, wait_for


class BackgroundWriter(threading.Thread):
    """Writes continuously; remembers the last acknowledged value of each key."""

    def __init__(self, cluster: ProcessCluster) -> None:
        super().__init__(daemon=True)
        addresses = {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}
        self.client = RaftClient(addresses, timeout=20)
        self.acknowledged: dict[str, str] = {}
        self.count = 0
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            key, value = f"key-{self.count % 40}", f"value-{self.count}"
            try:
                self.client.put(key, value)
                self.acknowledged[key] = value
            except ClientError:
                self.failures += 1  # indeterminate: not counted as acknowledged
            self.count += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=60)
        self.client.close()


def voters(cluster: ProcessCluster, node_id: int) -> list[int]:
    return list(cluster.status(node_id)["voters"])


def join(cluster: ProcessCluster, node_id: int) -> None:
    leader = cluster.wait_leader()
    cluster.start(node_id, "--join", f"127.0.0.1:{cluster.nodes[leader].client_port}")
    wait_for(lambda: node_id in voters(cluster, cluster.wait_leader()), 60, f"node {node_id} voter")


def remove(cluster: ProcessCluster, node_id: int) -> None:
    result = cluster.client("members", "remove", str(node_id))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: node_id not in voters(cluster, cluster.wait_leader()), 30, "removal")
    process = cluster.nodes[node_id].process
    assert process is not None
    process.wait(timeout=30)  # a removed node stops by itself


def assert_all_acknowledged_present(cluster: ProcessCluster, writer: BackgroundWriter) -> None:
    leader = cluster.wait_leader()
    for key, value in writer.acknowledged.items():
        code, body = cluster.request(leader, "GET", f"/v1/kv/{key}")
        assert code == 200 and body["value"] == value, (key, body)


def test_grow_shrink_and_replace_while_writing(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)
    for node_id in (4, 5, 6):
        cluster.add_node(node_id)
    writer: BackgroundWriter | None = None
    try:
        for node_id in (1, 2, 3):
            cluster.start(
                node_id,
                "--peers",
                cluster.peers_argument_among(node_id, [1, 2, 3]),
                bootstrap=False,
            )
        cluster.wait_leader()
        writer = BackgroundWriter(cluster)
        writer.start()
        join(cluster, 4)  # grow 3 -> 5
        join(cluster, 5)
        assert sorted(voters(cluster, cluster.wait_leader())) == [1, 2, 3, 4, 5]
        remove(cluster, 4)  # shrink 5 -> 3
        remove(cluster, 5)
        join(cluster, 6)  # replace node 1 by node 6
        remove(cluster, 1)
        assert sorted(voters(cluster, cluster.wait_leader())) == [2, 3, 6]
        before = writer.count
        wait_for(lambda: writer is not None and writer.count > before + 20, 30, "more writes")
        writer.stop()
        assert writer.count > 50
        assert_all_acknowledged_present(cluster, writer)
        check = cluster.client("--cluster", cluster.cluster_argument_among([2, 3, 6]), "check")
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        if writer is not None and writer.is_alive():
            writer.stop()
        cluster.stop_all()


def test_transfer_leadership_to_each_node_under_load(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    for node_id in cluster.nodes:  # every node up and following before the transfers
        wait_for(lambda n=node_id: cluster.status(n)["leader"] == leader, 30, f"node {node_id} up")
    writer = BackgroundWriter(cluster)
    writer.start()
    try:
        admin = RaftClient(
            {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}, timeout=10
        )
        for target in [*cluster.nodes, *cluster.nodes]:
            started = time.monotonic()
            admin.transfer_leader(target)
            elapsed = time.monotonic() - started
            assert cluster.wait_leader() == target
            assert elapsed < 1.0, f"transfer to {target} took {elapsed:.2f} s"
        admin.close()
    finally:
        writer.stop()
    assert_all_acknowledged_present(cluster, writer)


def test_a_single_node_cluster_grows_by_joins(tmp_path: Path) -> None:
    """`--single-node` founds a cluster of one (the leader with learners, then voters)."""
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start(1, "--single-node", bootstrap=False)
        assert cluster.wait_leader() == 1
        code, _ = cluster.request(1, "PUT", "/v1/kv/alone", {"value": "one"})
        assert code == 200
        join(cluster, 2)
        join(cluster, 3)
        leader = cluster.wait_leader()
        assert sorted(voters(cluster, leader)) == [1, 2, 3]
        for node_id in (2, 3):
            wait_for(
                lambda n=node_id: (
                    cluster.request(n, "GET", "/v1/kv/alone?consistency=stale")[1].get("value")
                    == "one"
                ),
                30,
                f"the write on node {node_id}",
            )
    finally:
        cluster.stop_all()


def test_a_removed_node_whose_peers_are_all_gone_is_told_by_a_member_it_never_knew(
    tmp_path: Path,
) -> None:
    """Session 29's whole-node finding (seed 25101) on real processes: node 2 is down while
    node 4 joins, then removed; nodes 1 and 3, all node 2 knows, are removed too. Restarted,
    node 2 dials only peers that are gone, and node 4, the one member left, never dials a
    node outside its configuration: only node 4's removal notice can stop it."""
    cluster = ProcessCluster(tmp_path, node_ids=(1, 2, 3, 4))
    try:
        cluster.start(1, "--single-node", bootstrap=False)
        cluster.wait_leader()
        join(cluster, 2)
        join(cluster, 3)
        cluster.kill(2)
        join(cluster, 4)  # 3 of 4 voters alive
        remove(cluster, 2)
        remove(cluster, 1)
        remove(cluster, 3)
        assert cluster.wait_leader() == 4 and voters(cluster, 4) == [4]
        # Past the grace period in which node 4 still dials node 2 as a peer (its last
        # messages may be queued): a peer link's handshake would tell node 2 too.
        wait_for(
            lambda: "no longer dialing node2" in cluster.log_text(4),
            30,
            "node 4 done dialing node 2 as a peer",
        )
        assert "2" in cluster.status(4)["removal_notices"]
        node2 = cluster.start(2, bootstrap=False)  # from its data dir: knows nodes 1 and 3
        assert node2.process is not None
        # Node 4 dials it with backoff (up to 10 s apart while it was down).
        assert node2.process.wait(timeout=60) == 0
        log = cluster.log_text(2)
        assert "takes the notice" in log and "node4 refuses it as removed" in log, log
        assert "node 2 answered its removal notice" in cluster.log_text(4)
        assert 2 not in voters(cluster, 4)
        assert "2" not in cluster.status(4)["removal_notices"]
    finally:
        cluster.stop_all()
