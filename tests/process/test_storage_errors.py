"""Real processes: raft-node refuses damaged or foreign data dirs with clear messages and
the SPEC's exit codes (4 for corruption), never a traceback."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from raftkv.storage.wal_records import records_end
from tests.process.cluster import BIN, ProcessCluster, wait_for


def run_node(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "raft-node"), *arguments], capture_output=True, text=True, timeout=60
    )


def test_corruption_before_the_tail_refuses_to_start_with_exit_4(
    cluster: ProcessCluster,
) -> None:
    for k in range(30):
        cluster.put_until_ok(f"k{k}", "v" * 50)
    victim = next(n for n in cluster.nodes if n != cluster.wait_leader())
    cluster.kill(victim, signal.SIGTERM)
    node = cluster.nodes[victim]
    segment = sorted((node.data_dir / "wal").glob("wal-*.log"))[0]
    data = bytearray(segment.read_bytes())
    middle = len(data) // 3
    data[middle] ^= 0xFF
    segment.write_bytes(bytes(data))
    result = run_node(
        "--id",
        str(victim),
        "--data-dir",
        str(node.data_dir),
        "--listen",
        f"127.0.0.1:{node.peer_port}",
        "--client-listen",
        f"127.0.0.1:{node.client_port}",
    )
    assert result.returncode == 4
    assert "corrupt" in result.stderr.lower() and segment.name in result.stderr
    assert "Traceback" not in result.stderr
    # The rest of the cluster is unaffected.
    cluster.put_until_ok("still", "serving")


def test_torn_tail_is_cut_and_the_node_starts(cluster: ProcessCluster) -> None:
    for k in range(10):
        cluster.put_until_ok(f"k{k}", "v")
    victim = next(n for n in cluster.nodes if n != cluster.wait_leader())
    cluster.kill(victim, signal.SIGTERM)
    node = cluster.nodes[victim]
    segment = sorted((node.data_dir / "wal").glob("wal-*.log"))[-1]
    with open(segment, "r+b") as file:
        # Where the next write would have gone: over the zeros of the preallocated tail.
        file.seek(records_end(segment.read_bytes()))
        file.write(b"\x00\x00\x01\x00partial record from a crash")
    cluster.start(victim, bootstrap=False)
    leader = cluster.wait_leader()
    commit = cluster.status(leader)["commit_index"]

    def caught_up() -> bool:
        return bool(cluster.status(victim)["last_applied"] >= commit)

    wait_for(caught_up, 30, "the node with a torn tail to rejoin")
    assert (
        "torn" in cluster.log_text(victim).lower() or "truncat" in cluster.log_text(victim).lower()
    )


def test_data_dir_of_another_node_or_in_use_is_refused(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    node = cluster.nodes[1]
    in_use = run_node(
        "--id",
        "1",
        "--data-dir",
        str(node.data_dir),
        "--listen",
        "127.0.0.1:0",
        "--client-listen",
        "127.0.0.1:0",
    )
    assert in_use.returncode == 1 and "in use" in in_use.stderr
    cluster.kill(1, signal.SIGTERM)
    wrong_id = run_node(
        "--id",
        "9",
        "--data-dir",
        str(node.data_dir),
        "--listen",
        "127.0.0.1:0",
        "--client-listen",
        "127.0.0.1:0",
    )
    assert wrong_id.returncode == 1
    assert "node 1" in wrong_id.stderr and "Traceback" not in wrong_id.stderr
