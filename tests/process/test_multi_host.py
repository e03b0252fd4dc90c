"""Three hosts (the multi-host test of SPEC §6's deployment features): each node on its own
host — its own network namespace and address on a bridge when run as root, its own loopback
address otherwise (tests/process/hosts.py) — started from a config file with mutual TLS
between peers, HTTPS with client certificates, and bearer tokens, and driven only through
`raft-client`: the README's session, a leader killed with SIGKILL and restarted, then a
backup, every data dir wiped, and the cluster restored from the backup.

On namespaces the nodes listen on the wildcard address at the same ports (9000 and 8000:
separate hosts) and advertise their own addresses; on loopback each node listens on its
address at ports of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.cluster import BIN, free_port, wait_for
from tests.process.hosts import Hosts

NODE_IDS = (1, 2, 3)
ADMIN_TOKEN = "multi-host-admin-token-0123456789"
READ_TOKEN = "multi-host-read-token-0123456789"
EXIT_NOT_LEADER = 3
EXIT_REFUSED = 5
STARTUP_SECONDS = 40
STOP_SECONDS = 20


class HostCluster:
    """raft-node processes, one per host, each from its own config file."""

    def __init__(self, hosts: Hosts, root: Path) -> None:
        self.hosts = hosts
        self.root = root
        self.certificates = root / "certs"
        wildcard = hosts.kind == "netns"
        self.peer_port = {n: 9000 if wildcard else free_port() for n in NODE_IDS}
        self.client_port = {n: 8000 if wildcard else free_port() for n in NODE_IDS}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._wildcard = wildcard

    def peer_address(self, node_id: int) -> str:
        return f"{self.hosts.address(node_id)}:{self.peer_port[node_id]}"

    def client_address(self, node_id: int) -> str:
        return f"{self.hosts.address(node_id)}:{self.client_port[node_id]}"

    def data_dir(self, node_id: int) -> Path:
        return self.root / f"data-{node_id}"

    def peers_argument(self, node_id: int) -> str:
        return ",".join(f"{n}={self.peer_address(n)}" for n in NODE_IDS if n != node_id)

    def write_config(self, node_id: int) -> Path:
        certificates = self.certificates
        if self._wildcard:
            addresses = (
                f'listen = "0.0.0.0:{self.peer_port[node_id]}"\n'
                f'client-listen = "0.0.0.0:{self.client_port[node_id]}"\n'
                f'advertise-peer = "{self.peer_address(node_id)}"\n'
                f'advertise-client = "{self.client_address(node_id)}"\n'
            )
        else:
            addresses = (
                f'listen = "{self.peer_address(node_id)}"\n'
                f'client-listen = "{self.client_address(node_id)}"\n'
            )
        peers = ", ".join(f'{n} = "{self.peer_address(n)}"' for n in NODE_IDS if n != node_id)
        path = self.root / f"node-{node_id}.toml"
        path.write_text(
            f"id = {node_id}\n"
            f"peers = {{ {peers} }}\n"
            f'data-dir = "{self.data_dir(node_id)}"\n'
            f"{addresses}"
            f'peer-cert = "{certificates}/node-{node_id}.pem"\n'
            f'peer-key = "{certificates}/node-{node_id}-key.pem"\n'
            f'peer-ca = "{certificates}/ca.pem"\n'
            f'client-cert = "{certificates}/node-{node_id}.pem"\n'
            f'client-key = "{certificates}/node-{node_id}-key.pem"\n'
            f'client-ca = "{certificates}/ca.pem"\n'
            f'auth-tokens = "{self.root}/tokens.toml"\n'
        )
        return path

    def start(self, node_id: int) -> None:
        config = self.root / f"node-{node_id}.toml"
        log = (self.root / f"node-{node_id}.log").open("ab")
        command = [str(BIN / "raft-node"), "--config", str(config)]
        # `ip netns exec` execs the node: the pid is the node's own, the one to kill.
        self.processes[node_id] = subprocess.Popen(
            self.hosts.wrap(node_id, command), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill(self, node_id: int) -> None:
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)

    def stop(self, node_id: int) -> int:
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=STOP_SECONDS)

    def kill_all(self) -> None:
        for node_id in list(self.processes):
            process = self.processes.pop(node_id)
            if process.poll() is None:
                process.kill()
            process.wait(timeout=STOP_SECONDS)

    def client(
        self, *arguments: str, token: str | None = ADMIN_TOKEN
    ) -> subprocess.CompletedProcess[str]:
        cluster = ",".join(f"{n}={self.client_address(n)}" for n in NODE_IDS)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RAFT_")}
        if token is not None:
            environment["RAFT_TOKEN"] = token
        command = [
            str(BIN / "raft-client"),
            "--cluster",
            cluster,
            "--cacert",
            str(self.certificates / "ca.pem"),
            "--cert",
            str(self.certificates / "client.pem"),
            "--key",
            str(self.certificates / "client-key.pem"),
            *arguments,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=90, env=environment)

    def statuses(self) -> list[dict[str, Any]]:
        answer = self.client("status", "--json")
        assert answer.returncode == 0, answer.stderr
        return list(json.loads(answer.stdout))

    def leader(self) -> int | None:
        leaders = {s["id"] for s in self.statuses() if s.get("role") == "leader"}
        return int(next(iter(leaders))) if len(leaders) == 1 else None

    def wait_healthy(self) -> None:
        wait_for(
            lambda: self.client("health").returncode == 0,
            STARTUP_SECONDS,
            "every node ready (raft-client health)",
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- node {n} ({self.hosts.kind}) ---\n"
            + (self.root / f"node-{n}.log").read_text(errors="replace")[-3000:]
            for n in NODE_IDS
            if (self.root / f"node-{n}.log").exists()
        )


def ok(answer: subprocess.CompletedProcess[str]) -> str:
    assert answer.returncode == 0, (answer.returncode, answer.stdout, answer.stderr)
    return answer.stdout


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    made = Hosts(NODE_IDS)
    try:
        yield made
    finally:
        made.close()


def test_three_hosts_with_tls_and_tokens_driven_by_raft_client(
    hosts: Hosts, tmp_path: Path
) -> None:
    cluster = HostCluster(hosts, tmp_path)
    try:
        run_the_session(cluster)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.kill_all()


def run_the_session(cluster: HostCluster) -> None:
    hosts = cluster.hosts
    addresses = ",".join(hosts.address(n) for n in NODE_IDS)
    init = [str(BIN / "raft-node"), "certs", "init", str(cluster.certificates)]
    subprocess.run(
        [*init, "--nodes", "1,2,3", "--hosts", addresses], check=True, capture_output=True
    )
    admin_digest = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    tokens = cluster.root / "tokens.toml"
    tokens.write_text(
        f'[[token]]\nname = "ops"\nrole = "admin"\nsha256 = "{admin_digest}"\n'
        f'[[token]]\nname = "dashboard"\nrole = "read"\ntoken = "{READ_TOKEN}"\n'
    )
    tokens.chmod(0o600)
    for node_id in NODE_IDS:
        cluster.write_config(node_id)
        cluster.start(node_id)
    cluster.wait_healthy()

    # The README's session.
    assert ok(cluster.client("put", "x", "1")).startswith("OK leader=")
    assert ok(cluster.client("get", "x")) == "1\n"
    leader = wait_for(cluster.leader, STARTUP_SECONDS, "a leader")
    follower = next(n for n in NODE_IDS if n != leader)
    refused = cluster.client("put", "x", "2", "--target", str(follower))
    assert refused.returncode == EXIT_NOT_LEADER, refused
    assert "not_leader" in refused.stdout + refused.stderr

    # Tokens: none at all, and one whose role cannot write.
    anonymous = cluster.client("get", "x", token=None)
    assert anonymous.returncode == EXIT_REFUSED and "unauthenticated" in anonymous.stderr
    reader = cluster.client("put", "x", "3", token=READ_TOKEN)
    assert reader.returncode == EXIT_REFUSED and "forbidden" in reader.stderr
    assert ok(cluster.client("get", "x", token=READ_TOKEN)) == "1\n"

    # The leader dies without warning; the others elect another and keep every write.
    cluster.kill(leader)
    assert ok(cluster.client("put", "y", "2")).startswith("OK leader=")
    new_leader = wait_for(cluster.leader, STARTUP_SECONDS, "a new leader")
    assert new_leader != leader
    cluster.start(leader)
    cluster.wait_healthy()
    assert ok(cluster.client("check")).startswith("OK n=3 ")
    origin = {status["cluster_id"] for status in cluster.statuses()}
    assert len(origin) == 1

    # Back up, lose every data dir, restore three nodes of a new cluster from the file.
    backup = cluster.root / "cluster.backup"
    assert ok(cluster.client("snapshot", "save", str(backup))).startswith("OK index=")
    assert "checksum: OK" in ok(cluster.client("snapshot", "status", str(backup)))
    for node_id in NODE_IDS:
        assert cluster.stop(node_id) == 0
        shutil.rmtree(cluster.data_dir(node_id))
    for node_id in NODE_IDS:
        restore = [
            str(BIN / "raft-node"),
            "restore",
            str(backup),
            "--id",
            str(node_id),
            "--peers",
            cluster.peers_argument(node_id),
            "--data-dir",
            str(cluster.data_dir(node_id)),
            "--advertise-peer",
            cluster.peer_address(node_id),
        ]
        subprocess.run(hosts.wrap(node_id, restore), check=True, capture_output=True)
        cluster.start(node_id)
    cluster.wait_healthy()
    assert ok(cluster.client("get", "x")) == "1\n"
    assert ok(cluster.client("get", "y")) == "2\n"
    assert ok(cluster.client("put", "z", "3")).startswith("OK leader=")
    assert ok(cluster.client("check")).startswith("OK n=3 ")
    restored = {status["cluster_id"] for status in cluster.statuses()}
    assert len(restored) == 1 and restored.isdisjoint(origin)
