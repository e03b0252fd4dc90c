"""The clients' side of ranges and transactions: requests as SPEC §6 writes them, and what
is refused before anything is sent (by the libraries and by `raft-client`)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from raftkv.client import BadRequest, RaftClient
from raftkv.client.protocol import (
    KeyRangeQuery,
    delete_range_request,
    range_request,
    txn_request,
)
from raftkv.client.sessions import PendingWrite, Session
from tests.client.conftest import RunCli
from tests.client.fake_cluster import FakeCluster


def query_of(path: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(path).query))


def test_range_request_names_its_range_and_options() -> None:
    request = range_request(
        KeyRangeQuery(prefix="a/ü"), "stale", limit=5, keys_only=True, after="YQ"
    )
    assert (request.method, urlsplit(request.path).path) == ("GET", "/v1/kv")
    assert query_of(request.path) == {
        "prefix": "a/ü",
        "consistency": "stale",
        "limit": "5",
        "keys_only": "true",
        "after": "YQ",
    }
    assert not request.leader_only
    # Any member serves a linearizable range too (followers with the leader's read index):
    # its answer names no leader.
    assert not range_request(KeyRangeQuery(), "linearizable").leader_only
    assert query_of(range_request(KeyRangeQuery(), "linearizable").path) == {
        "consistency": "linearizable"
    }


def test_delete_range_request_carries_the_session() -> None:
    write = PendingWrite(Session("c1"), 9)  # its first write: seq 1
    request = delete_range_request(KeyRangeQuery(start="a", end="b"), write)
    assert request.method == "DELETE"
    assert query_of(request.path) == {
        "start": "a",
        "end": "b",
        "client_id": "c1",
        "seq": "1",
        "after_index": "9",
    }


@pytest.mark.parametrize(
    "keys",
    [KeyRangeQuery(prefix="a", start="b"), KeyRangeQuery(prefix=""), KeyRangeQuery(end="")],
)
def test_bad_ranges_are_refused_before_sending(keys: KeyRangeQuery) -> None:
    with pytest.raises(BadRequest):
        range_request(keys, "linearizable")


def test_delete_range_needs_a_range(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses()) as client, pytest.raises(BadRequest):
        client.delete_range()
    assert cluster.requests == []


@pytest.mark.parametrize(
    "argv",
    [
        ("get",),
        ("get", "k", "--prefix", "p"),
        ("get", "k", "--keys-only"),
        ("del",),
        ("del", "k", "--start", "a"),
    ],
)
def test_raft_client_wants_a_key_or_a_range(
    cluster: FakeCluster, run_cli: RunCli, argv: tuple[str, ...]
) -> None:
    code, out, err = run_cli("--cluster", cluster.cluster_text(), *argv)
    assert (code, out) == (1, "")
    assert '"bad_usage"' in err


def test_txn_request_sends_the_parts_and_the_session() -> None:
    request = txn_request(
        [{"key": "a", "target": "exists", "op": "==", "value": True}],
        [{"op": "get", "key": "a"}],
        [],
        PendingWrite(Session("c1"), 3),
    )
    assert (request.method, request.path) == ("POST", "/v1/txn")
    assert request.body is not None
    assert json.loads(request.body) == {
        "compare": [{"key": "a", "target": "exists", "op": "==", "value": True}],
        "success": [{"op": "get", "key": "a"}],
        "failure": [],
        "client_id": "c1",
        "seq": 1,
        "after_index": 3,
    }


@pytest.mark.parametrize("text", ["not json", "[]", '{"success": "x"}'])
def test_raft_client_txn_refuses_a_bad_file(
    cluster: FakeCluster, run_cli: RunCli, tmp_path: Path, text: str
) -> None:
    source = tmp_path / "txn.json"
    source.write_text(text)
    code, out, err = run_cli("--cluster", cluster.cluster_text(), "txn", str(source))
    assert (code, out) == (1, "")
    assert '"bad_usage"' in err
    assert cluster.requests == []
