"""Bearer tokens in the clients (`token=`, `raft-client --token`, `RAFT_TOKEN`): sent with
every request, and a 401 or 403 raised as Unauthenticated or Forbidden at once, never
retried on this node or another (SPEC §6)."""

from __future__ import annotations

import asyncio

import pytest

from raftkv.client import AsyncRaftClient, Forbidden, RaftClient, Unauthenticated
from tests.client.conftest import RunCli
from tests.client.fake_cluster import Answer, FakeCluster

TOKEN = "client-token-0123456789"
UNAUTHENTICATED = Answer(401, {"error": "unauthenticated", "message": "no token"})
FORBIDDEN = Answer(403, {"error": "forbidden", "role": "write", "message": "needs write"})


def test_the_token_goes_with_every_request(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0, token=TOKEN) as client:
        client.put("x", "1")
        client.get("x")
        client.delete("x")
        client.statuses()
        client.members()
        client.healths()

    async def asynchronously() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=2.0, token=TOKEN) as client:
            await client.put("y", "1")
            await client.get("y")
            await client.statuses()

    asyncio.run(asynchronously())
    assert len(cluster.requests) >= 9
    assert {request.authorization for request in cluster.requests} == {f"Bearer {TOKEN}"}


def test_without_a_token_none_is_sent(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")
    assert [request.authorization for request in cluster.requests] == [None]


@pytest.mark.parametrize("token", ["", "with space", "new\nline", "naïve-token"])
def test_a_token_that_no_header_can_carry_is_refused_at_once(token: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        RaftClient({1: ("127.0.0.1", 1)}, token=token)
    with pytest.raises(ValueError, match="printable ASCII"):
        AsyncRaftClient({1: ("127.0.0.1", 1)}, token=token)


def test_401_and_403_are_raised_at_once_and_not_retried(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses(), timeout=5.0, token=TOKEN) as client:
        cluster.fail_next(1, UNAUTHENTICATED)
        with pytest.raises(Unauthenticated) as unauthenticated:
            client.put("x", "1")
        assert unauthenticated.value.status == 401
        assert unauthenticated.value.code == "unauthenticated"
        cluster.fail_next(1, FORBIDDEN)
        with pytest.raises(Forbidden) as forbidden:
            client.get("x")
        assert (forbidden.value.status, forbidden.value.role) == (403, "write")
    assert len(cluster.requests) == 2  # one attempt each, no other node asked
    assert cluster.data == {}  # and no write applied after the refusal


def test_the_async_client_raises_them_alike(cluster: FakeCluster) -> None:
    async def main() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=5.0) as client:
            cluster.fail_next(1, UNAUTHENTICATED)
            with pytest.raises(Unauthenticated):
                await client.put("x", "1")
            cluster.fail_next(1, FORBIDDEN)
            with pytest.raises(Forbidden):
                await client.get("x")

    asyncio.run(main())
    assert len(cluster.requests) == 2


def test_raft_client_token_flag_and_environment(
    cluster: FakeCluster, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAFT_TOKEN", raising=False)
    code, out, _ = run_cli("--cluster", cluster.cluster_text(), "--token", TOKEN, "put", "x", "1")
    assert (code, out.split()[0]) == (0, "OK")
    monkeypatch.setenv("RAFT_TOKEN", "from-the-environment-0123")
    assert run_cli("--cluster", cluster.cluster_text(), "get", "x")[0] == 0
    code, _, _ = run_cli("get", "x", "--cluster", cluster.cluster_text(), "--token", TOKEN)
    assert code == 0  # the flag wins
    assert [request.authorization for request in cluster.requests] == [
        f"Bearer {TOKEN}",
        "Bearer from-the-environment-0123",
        f"Bearer {TOKEN}",
    ]
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "--token", "a b", "get", "x")
    assert code == 1 and '"bad_usage"' in err and "a b" not in err


def test_raft_client_reports_refusals_with_exit_5(cluster: FakeCluster, run_cli: RunCli) -> None:
    cluster.fail_next(1, UNAUTHENTICATED)
    code, out, err = run_cli("--cluster", cluster.cluster_text(), "put", "x", "1")
    assert (code, out) == (5, "")
    assert err.startswith('{"error":"unauthenticated"')
    cluster.fail_next(1, FORBIDDEN)
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "del", "x")
    assert code == 5 and '"error":"forbidden"' in err and '"role":"write"' in err
    # status and check: refused by every node is a refusal, not "unreachable" (exit 2).
    for node_id in cluster.nodes:
        cluster.fail_next(node_id, UNAUTHENTICATED)
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "status")
    assert code == 5 and '"unauthenticated"' in err
    for node_id in cluster.nodes:
        cluster.fail_next(node_id, UNAUTHENTICATED)
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "check")
    assert code == 5 and '"unauthenticated"' in err


def test_a_missing_client_certificate_is_a_refusal_not_retried(
    cluster: FakeCluster, run_cli: RunCli
) -> None:
    required = Answer(401, {"error": "client_certificate_required", "message": "needs one"})
    with RaftClient(cluster.addresses(), timeout=5.0) as client:
        cluster.fail_next(1, required)
        with pytest.raises(Unauthenticated) as refused:
            client.put("x", "1")
        assert refused.value.code == "client_certificate_required"
    assert len(cluster.requests) == 1 and cluster.data == {}
    cluster.fail_next(1, required)
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "get", "x")
    assert code == 5 and "client_certificate_required" in err
