"""Real processes: `raft-client health` asks every node for /livez and /readyz, prints one
line per node and exits 0 only when all are ready; a node killed (by pid) is named, not live,
and the exit code is 1. The client libraries' `health()` see the same."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from raftkv.client import RaftClient, Unreachable
from raftkv.client.async_client import AsyncRaftClient
from tests.process.cluster import ProcessCluster, wait_for

READY_SECONDS = 20


def url(cluster: ProcessCluster, node_id: int) -> str:
    return f"http://127.0.0.1:{cluster.nodes[node_id].client_port}"


def ready_line(cluster: ProcessCluster, node_id: int) -> str:
    return f"node {node_id} {url(cluster, node_id)}: live, ready"


def health(cluster: ProcessCluster, *arguments: str) -> subprocess.CompletedProcess[str]:
    return cluster.client("--timeout", "3", "health", *arguments)


def test_health_is_ok_on_a_ready_cluster_and_names_a_killed_node(
    cluster: ProcessCluster,
) -> None:
    def all_ready() -> subprocess.CompletedProcess[str] | None:
        answer = health(cluster)
        return answer if answer.returncode == 0 else None

    # Followers are ready once they hear the new leader: wait for that, not a fixed time.
    result = wait_for(all_ready, READY_SECONDS, "raft-client health to exit 0")
    assert result.stdout.splitlines() == [ready_line(cluster, n) for n in (1, 2, 3)]
    assert result.stderr == ""

    leader = cluster.wait_leader()
    killed = next(n for n in (1, 2, 3) if n != leader)
    assert cluster.nodes[killed].process is not None
    cluster.kill(killed)
    survivors = [n for n in (1, 2, 3) if n != killed]

    def survivors_ready() -> subprocess.CompletedProcess[str] | None:
        answer = health(cluster)
        lines = answer.stdout.splitlines()
        ready = all(ready_line(cluster, n) in lines for n in survivors)
        return answer if ready else None

    result = wait_for(survivors_ready, READY_SECONDS, "the survivors ready")
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    killed_line = lines[killed - 1]
    assert killed_line.startswith(f"node {killed} {url(cluster, killed)}: not live: ")
    error = json.loads(result.stderr)
    assert error["error"] == "not_ready"
    assert error["nodes"] == [url(cluster, killed)]
    assert f"node {killed} {url(cluster, killed)}" in error["message"]

    # --json: one object per node.
    answer = health(cluster, "--json")
    assert answer.returncode == 1
    objects = {entry["id"]: entry for entry in json.loads(answer.stdout)}
    assert objects[killed]["live"] is False and objects[killed]["ready"] is False
    assert objects[killed]["error"]["error"] == "unreachable"
    for node_id in survivors:
        assert objects[node_id]["ready"] is True
        assert objects[node_id]["readyz"]["id"] == node_id

    # --node: just the nodes named, by URL.
    survivor = survivors[0]
    answer = health(cluster, "--node", url(cluster, survivor))
    assert answer.returncode == 0, answer
    assert answer.stdout.splitlines() == [f"node {url(cluster, survivor)}: live, ready"]
    answer = health(cluster, "--node", url(cluster, survivor), "--node", url(cluster, killed))
    assert answer.returncode == 1
    assert json.loads(answer.stderr)["nodes"] == [url(cluster, killed)]

    # The libraries: typed results, an unreachable node included.
    addresses = {n: ("127.0.0.1", cluster.nodes[n].client_port) for n in cluster.nodes}
    with RaftClient(addresses, timeout=3) as client:
        reports = {report.node_id: report for report in client.healths()}
        one = client.health(survivor)
    assert one.live and one.ready and one.checks["leader"] == "ok"
    assert not reports[killed].live and isinstance(reports[killed].error, Unreachable)
    assert all(reports[n].ready for n in survivors)

    async def ask_async() -> None:
        async with AsyncRaftClient(addresses, timeout=3) as client:
            answers = {report.node_id: report for report in await client.healths()}
        assert not answers[killed].live and not answers[killed].ready
        assert all(answers[n].ready and answers[n].checks["storage"] == "ok" for n in survivors)

    asyncio.run(ask_async())

    # No node answering at all is the timeout exit code, as for `status`.
    cluster.stop_all()
    answer = health(cluster)
    assert answer.returncode == 2, answer
    assert json.loads(answer.stderr)["error"] == "unreachable"


def test_health_usage_errors(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)  # never started: usage is refused before any request
    mixed = ["--node", "https://127.0.0.1:1", "--node", "http://127.0.0.1:2"]
    for arguments in (["--node", "ftp://127.0.0.1:1"], ["--node", "nonsense"], mixed):
        answer = health(cluster, *arguments)
        assert answer.returncode == 1, answer  # SPEC §1: bad usage is exit 1
        assert json.loads(answer.stderr)["error"] == "bad_usage"
    answer = cluster.client("health", "--target", "1", "--node", url(cluster, 1))
    assert answer.returncode == 1
    assert "--target and --node" in json.loads(answer.stderr)["message"]
