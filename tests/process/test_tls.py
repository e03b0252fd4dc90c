"""A real cluster over TLS (SPEC §6, "TLS"): three `raft-node` processes with mutual TLS
between peers and HTTPS on their client ports requiring client certificates, made by
`raft-node certs init`. raft-client with the CA and the client certificate writes and
reads; a plain-HTTP client and one without a certificate are refused; a follower's leader
hint says https and the clients follow it; a fourth node joins over HTTPS."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from pathlib import Path

import pytest

from raftkv.client import RaftClient
from raftkv.tls import client_context
from raftkv.transport.handshake import NEITHER_KNOWS_THE_CLUSTER_ID
from tests.certificates import CertificateSet
from tests.process.cluster import BIN, ProcessCluster, wait_for

TIMEOUT = 30.0


def _raft_client(
    cluster: ProcessCluster, certificates: CertificateSet, *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "raft-client"),
            "--cluster",
            cluster.cluster_argument(),
            "--cacert",
            certificates.ca,
            "--cert",
            certificates.client_cert,
            "--key",
            certificates.client_key,
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
    )


def _get_status(port: int, context: ssl.SSLContext | None) -> int:
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", "/v1/status")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture
def certificates(tmp_path: Path) -> CertificateSet:
    return CertificateSet(tmp_path / "certs", [1, 2, 3, 4])


def test_a_cluster_over_tls(tmp_path: Path, certificates: CertificateSet) -> None:
    trusted_client = client_context(
        ca_file=certificates.ca,
        cert_file=certificates.client_cert,
        key_file=certificates.client_key,
    )
    cluster = ProcessCluster(tmp_path, client_tls=trusted_client)
    try:
        for node_id in cluster.nodes:
            cluster.start(node_id, *certificates.node_flags(node_id))
        leader = cluster.wait_leader(timeout=TIMEOUT)

        put = _raft_client(cluster, certificates, "put", "colour", "blue")
        assert (put.returncode, put.stderr) == (0, "")
        assert put.stdout.startswith("OK leader=")
        get = _raft_client(cluster, certificates, "get", "colour")
        assert (get.returncode, get.stdout) == (0, "blue\n")

        port = cluster.nodes[leader].client_port
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            _get_status(port, None)  # plain HTTP
        without_certificate = client_context(ca_file=certificates.ca)
        # Refused with an answer saying why (401 client_certificate_required), not served.
        assert _get_status(port, without_certificate) == 401
        assert _get_status(port, trusted_client) == 200

        follower = next(node_id for node_id in cluster.nodes if node_id != leader)
        code, answer = cluster.request(follower, "PUT", "/v1/kv/colour", {"value": "red"})
        leader_port = cluster.nodes[leader].client_port
        assert (code, answer["leader_url"]) == (421, f"https://127.0.0.1:{leader_port}")
        # A client that knows only the follower reaches the leader through the hint.
        follower_port = cluster.nodes[follower].client_port
        with RaftClient(
            {follower: f"https://127.0.0.1:{follower_port}"},
            timeout=TIMEOUT,
            ssl_context=trusted_client,
        ) as client:
            assert client.put("colour", "green").leader == leader
            assert client.leader == leader
        hinted = _raft_client(cluster, certificates, "put", "x", "1", "--target", str(follower))
        assert hinted.returncode == 3, hinted.stderr

        # A fourth node joins through a member's HTTPS client port.
        cluster.add_node(4)
        contact = f"127.0.0.1:{cluster.nodes[follower].client_port}"
        cluster.start(4, *certificates.node_flags(4), "--join", contact)
        wait_for(
            lambda: (
                4 in cluster.status(leader)["members"]
                and cluster.status(4)["last_applied"] >= cluster.status(leader)["commit_index"]
            ),
            TIMEOUT,
            "node 4 to join and catch up",
        )
        for node_id in cluster.nodes:
            # Founders refuse each other until they learn the cluster id (expected, at INFO).
            log = "\n".join(
                line
                for line in cluster.log_text(node_id).splitlines()
                if NEITHER_KNOWS_THE_CLUSTER_ID not in line
            )
            for refusal in ("refused connection", "refused our connection", "TLS handshake"):
                assert refusal not in log, log
    finally:
        cluster.stop_all()
