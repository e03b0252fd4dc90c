"""Real processes with `--auth-tokens` (SPEC §6): raft-client with and without a token, each
role's limits, public health, metrics behind a token, and a node joining with --join-token."""

from __future__ import annotations

import http.client
import os
import subprocess
from pathlib import Path

from tests.process.cluster import BIN, ProcessCluster, wait_for

READ = "read-token-0123456789"
WRITE = "write-token-0123456789"
ADMIN = "admin-token-0123456789"


def token_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens.toml"
    path.write_text(
        "".join(
            f'[[token]]\nname = "{role}"\nrole = "{role}"\ntoken = "{token}"\n'
            for role, token in (("read", READ), ("write", WRITE), ("admin", ADMIN))
        )
    )
    path.chmod(0o600)
    return str(path)


def bare_get(port: int, path: str) -> tuple[int, bytes]:
    """A GET without any Authorization header."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def client(cluster: ProcessCluster, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "RAFT_TOKEN"}
    environment["RAFT_CLUSTER"] = cluster.cluster_argument_among([1, 2, 3])
    return subprocess.run(
        [str(BIN / "raft-client"), "--timeout", "20", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


def members(cluster: ProcessCluster) -> set[int]:
    code, body = cluster.request(cluster.wait_leader(), "GET", "/v1/members")
    assert code == 200, body
    return {int(member["id"]) for member in body["members"]}


def test_a_cluster_with_tokens(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, extra_args=["--auth-tokens", token_file(tmp_path)])
    cluster.headers = {"Authorization": f"Bearer {READ}"}
    try:
        cluster.start_all()
        leader = cluster.wait_leader()

        written = client(cluster, "--token", WRITE, "put", "x", "1")
        assert written.returncode == 0 and written.stdout.startswith("OK"), written.stderr
        read = client(cluster, "--token", READ, "get", "x")
        assert (read.returncode, read.stdout) == (0, "1\n"), read.stderr

        anonymous = client(cluster, "put", "x", "2")
        assert anonymous.returncode == 5
        assert anonymous.stderr.startswith('{"error":"unauthenticated"')
        reader = client(cluster, "--token", READ, "put", "x", "2")
        assert reader.returncode == 5 and '"error":"forbidden"' in reader.stderr
        assert client(cluster, "--token", READ, "get", "x").stdout == "1\n"  # unchanged
        assert client(cluster, "--token", READ, "status").returncode == 0
        assert client(cluster, "--token", READ, "check").returncode == 0
        assert client(cluster, "health").returncode == 0  # health is public by default

        port = cluster.nodes[leader].client_port
        assert bare_get(port, "/livez")[0] == 200
        assert bare_get(port, "/metrics")[0] == 401
        code, metrics = cluster.request(leader, "GET", "/metrics")
        assert code == 200
        assert 'raft_http_auth_failures_total{reason="missing"}' in metrics

        # Joining asks for an admin token: a write token is refused at once.
        for node_id in (4, 5):
            cluster.add_node(node_id)
        contact = f"127.0.0.1:{cluster.nodes[leader].client_port}"
        refused = cluster.start(5, "--join", contact, "--join-token", WRITE)
        assert refused.process is not None
        assert refused.process.wait(timeout=60) == 1
        assert "refusing to start" in cluster.log_text(5) and "403" in cluster.log_text(5)
        assert WRITE not in cluster.log_text(5)
        cluster.start(4, "--join", contact, "--join-token", ADMIN)
        wait_for(lambda: 4 in members(cluster), 60, "node 4 to join")

        writer_remove = client(cluster, "--token", WRITE, "members", "remove", "4")
        assert writer_remove.returncode == 5 and '"role":"admin"' in writer_remove.stderr
        removed = client(cluster, "--token", ADMIN, "members", "remove", "4")
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: 4 not in members(cluster), 30, "node 4 to leave")
        added = client(cluster, "--token", ADMIN, "members", "add", "6", "127.0.0.1:1")
        assert added.returncode == 0, added.stderr
        assert 6 in members(cluster)
        assert client(cluster, "--token", ADMIN, "members", "remove", "6").returncode == 0
        for node_id in (1, 2, 3):
            for token in (READ, WRITE, ADMIN):
                assert token not in cluster.log_text(node_id)
    finally:
        cluster.stop_all()
