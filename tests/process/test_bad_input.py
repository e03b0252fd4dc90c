"""Real processes: garbage at the peer and client ports gets clear errors and loses nothing."""

from __future__ import annotations

import os
import socket
import struct

import msgspec

from raftkv.transport.handshake import HANDSHAKE_MAGIC, PROTOCOL_VERSION, Handshake
from tests.process.cluster import ProcessCluster, wait_for


def send_raw(port: int, data: bytes) -> bytes:
    """Send bytes to a port and return what comes back before the node closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def test_garbage_at_the_peer_port_is_refused_and_logged(cluster: ProcessCluster) -> None:
    cluster.put_until_ok("before", "1")
    target = cluster.nodes[1]
    send_raw(target.peer_port, os.urandom(4096))
    send_raw(target.peer_port, struct.pack(">I", 0xFFFFFFF0) + b"x" * 100)  # oversized frame
    wrong_cluster = Handshake(
        magic=HANDSHAKE_MAGIC,
        protocol_version=PROTOCOL_VERSION,
        cluster_id="another-cluster",
        node_id=2,
    )
    payload = msgspec.msgpack.encode(wrong_cluster)
    reply = send_raw(target.peer_port, struct.pack(">I", len(payload)) + payload)
    assert b"another-cluster" in reply or reply == b""
    unknown_node = Handshake(
        magic=HANDSHAKE_MAGIC,
        protocol_version=PROTOCOL_VERSION,
        cluster_id=cluster.status(1)["cluster_id"],
        node_id=77,
    )
    payload = msgspec.msgpack.encode(unknown_node)
    send_raw(target.peer_port, struct.pack(">I", len(payload)) + payload)
    log = wait_for(
        lambda: (
            (text := cluster.log_text(1)) and "another-cluster" in text and "77" in text and text
        ),
        10,
        "the refusals in the log",
    )
    assert "Traceback" not in log
    # The node keeps serving and nothing was lost.
    assert target.alive
    written = cluster.put_until_ok("after", "2")
    # A stale read answers from what node 1 has applied, which may lag the commit (it may
    # even have connected to the leader only now): wait for it to catch up first.
    wait_for(
        lambda: cluster.status(1)["last_applied"] >= written["index"], 10, "node 1 to catch up"
    )
    code, body = cluster.request(1, "GET", "/v1/kv/before?consistency=stale")
    assert code == 200 and body["value"] == "1"


def test_garbage_at_the_client_port_gets_an_http_error_and_loses_nothing(
    cluster: ProcessCluster,
) -> None:
    leader = cluster.wait_leader()
    cluster.put_until_ok("before", "1")
    port = cluster.nodes[leader].client_port
    for garbage in (
        os.urandom(4096),
        b"\x16\x03\x01" + os.urandom(300),  # a TLS hello
        b"GET /v1/status HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n",  # too many headers
        b"PUT /v1/kv/k HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    ):
        reply = send_raw(port, garbage)
        status_line, _, rest = reply.partition(b"\r\n")
        assert status_line.split()[1] in (b"400", b"413", b"431"), reply[:200]
        assert b'"error":' in rest
    assert cluster.nodes[leader].alive
    assert "Traceback" not in cluster.log_text(leader)
    code, body = cluster.request(leader, "GET", "/v1/kv/before")
    assert code == 200 and body["value"] == "1"
    cluster.put_until_ok("after", "2")


def test_bad_client_requests_get_clear_json_errors(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    cases = [
        ("PUT", "/v1/kv/k", b"{not json", 400, "bad_request"),
        ("PUT", "/v1/kv/k", b"[1, 2]", 400, "bad_request"),
        ("PUT", "/v1/kv/k", b'{"value": 5}', 400, "bad_request"),
        ("PUT", "/v1/kv/k", b'{"value": "v", "seq": -1, "client_id": "c"}', 400, "bad_request"),
        ("PUT", "/v1/kv/" + "k" * 1025, b'{"value": "v"}', 400, "bad_request"),
        ("GET", "/v1/kv/k?consistency=sometimes", None, 400, "bad_request"),
        ("GET", "/v1/kv/never-written", None, 404, "not_found"),
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
    ]
    for method, path, raw, status, code in cases:
        got_status, body = cluster.request(leader, method, path, raw=raw)
        assert (got_status, body["error"]) == (status, code), (method, path, body)
    big = b'{"value": "' + b"v" * (1 << 20 | 1) + b'"}'
    got_status, body = cluster.request(leader, "PUT", "/v1/kv/big", raw=big)
    assert got_status == 413 and body["error"] == "too_large"
    huge = b'{"value": "' + b"v" * (3 << 20) + b'"}'
    got_status, body = cluster.request(leader, "PUT", "/v1/kv/huge", raw=huge)
    assert got_status == 413 and body["error"] == "too_large"
    # Still serving, and the failed requests wrote nothing.
    cluster.put_until_ok("fine", "ok")
    assert cluster.request(leader, "GET", "/v1/kv/k")[0] == 404


def test_not_leader_error_names_the_leader(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    wait_for(lambda: cluster.status(follower)["leader"] == leader, 10, "follower knows leader")
    code, body = cluster.request(follower, "PUT", "/v1/kv/x", {"value": "1"})
    assert code == 421
    assert body["error"] == "not_leader" and body["leader"] == f"node{leader}"
    assert body["leader_id"] == leader
    assert body["leader_url"] == f"http://127.0.0.1:{cluster.nodes[leader].client_port}"


def test_duplicate_request_applies_once(cluster: ProcessCluster) -> None:
    leader = cluster.wait_leader()

    def put(value: str, seq: int) -> tuple[int, dict[str, object]]:
        body = {"value": value, "client_id": "c1", "seq": seq}
        return cluster.request(leader, "PUT", "/v1/kv/counter", body)

    assert put("a", 1)[0] == 200
    cluster.put_until_ok("counter", "changed by another client")
    code, body = put("a", 1)  # a retry of seq 1: answered from the session, not applied again
    assert code == 200 and body["ok"]
    value = cluster.request(leader, "GET", "/v1/kv/counter")[1]
    assert value["value"] == "changed by another client"
    assert put("b", 2)[0] == 200
    code, body = put("a", 1)  # older than the session's last request
    assert code == 400 and body["error"] == "stale_request"
    assert cluster.request(leader, "GET", "/v1/kv/counter")[1]["value"] == "b"
