"""Forgotten sessions, as the clients see them (docs/client.md, "Retries are safe"): every
attempt of a write carries `after_index`; a `session_expired` refusal is resent under a new
session when no attempt may have been applied, and is otherwise an unknown outcome, never a
second application. A write that times out after an attempt was sent says so too."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from raftkv import errors
from raftkv.client import AsyncRaftClient, OutcomeUnknown, RaftClient, Timeout
from raftkv.client.errors import (
    BadResponse,
    NoLeader,
    NotLeader,
    StorageFailed,
    Unreachable,
    error_from_answer,
    may_have_applied,
)
from raftkv.client.protocol import read_answer
from raftkv.client.sync import _closed_by_peer
from tests.client.conftest import RunCli
from tests.client.fake_cluster import Answer, Drop, FakeCluster, Hang


def _writes(cluster: FakeCluster) -> list[tuple[str, int, int]]:
    """(client_id, seq, after_index) of every write request the nodes received, in order."""
    sent = []
    for request in cluster.writes():
        source: dict[str, Any] | None = request.body if request.method == "PUT" else request.query
        assert source is not None
        sent.append((str(source["client_id"]), int(source["seq"]), int(source["after_index"])))
    return sent


def _others_wrote_and_sessions_were_forgotten(cluster: FakeCluster, writes: int = 5) -> None:
    cluster.index += writes
    cluster.forget_sessions()


def _lose_the_session_after_the_next_write(cluster: FakeCluster, key: str) -> None:
    """Right after the next write applies: another client deletes `key` and newer sessions
    push this one out (the review's case)."""

    def meanwhile() -> None:
        cluster.after_apply.remove(meanwhile)
        cluster.data.pop(key, None)
        _others_wrote_and_sessions_were_forgotten(cluster)

    cluster.after_apply.append(meanwhile)


# --- the blocking client ---------------------------------------------------------------
def test_a_retry_after_the_session_was_forgotten_is_an_unknown_outcome_not_a_second_write(
    cluster: FakeCluster,
) -> None:
    # put_if_absent is applied, its answer is lost; meanwhile the key is deleted and the
    # session forgotten. The retry must not create the key again.
    _lose_the_session_after_the_next_write(cluster, "k")
    cluster.fail_next(1, Drop(after_applying=True))
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        first_id = client.client_id
        with pytest.raises(OutcomeUnknown) as caught:
            client.put_if_absent("k", "v")
        assert "k" not in cluster.data
        assert cluster.applied_writes == [(first_id, 1)]
        error = caught.value
        assert isinstance(error, Timeout) and isinstance(error, errors.Timeout)
        assert error.code == "outcome_unknown"
        assert "may have been applied" in str(error)
        assert error.payload["last_error"]["error"] == "session_expired"
        # Later writes go under a new session.
        client.put("k", "again")
        assert client.client_id != first_id
    assert [write[:2] for write in _writes(cluster)] == [
        (first_id, 1),
        (first_id, 1),
        (first_id, 1),
        (client.client_id, 1),
    ]


def test_a_write_refused_as_forgotten_and_never_applied_is_sent_again(
    cluster: FakeCluster,
) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        first_id = client.client_id
        assert client.put("x", "1").index == 2
        _others_wrote_and_sessions_were_forgotten(cluster)  # through index 7
        # Its only attempt was refused (at 8): nothing applied, so the same write goes again
        # under a new session, after the refusal's index.
        assert client.put("x", "2").index == 9
        assert client.client_id != first_id
    assert _writes(cluster) == [(first_id, 1, 0), (first_id, 2, 2), (client.client_id, 1, 8)]
    assert cluster.applied_writes == [(first_id, 1), (client.client_id, 1)]
    assert cluster.data == {"x": "2"}


def test_definite_refusals_before_session_expired_still_allow_a_resend(
    cluster: FakeCluster,
) -> None:
    _others_wrote_and_sessions_were_forgotten(cluster)  # a cluster that forgot sessions
    # A node that knows no leader did not append the write: a definite refusal.
    cluster.fail_next(1, Answer(503, {"error": "no_leader"}))
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        assert client.put("x", "1").leader == 1
    sent = _writes(cluster)
    assert [after for _, _, after in sent] == [0, 0, 0, 7]  # 503, not_leader, refused, resent
    assert len(cluster.applied_writes) == 1


def test_a_503_after_proposing_makes_a_later_session_expired_an_unknown_outcome(
    cluster: FakeCluster,
) -> None:
    _others_wrote_and_sessions_were_forgotten(cluster)
    cluster.fail_next(1, Answer(503, {"error": "no_leader", "outcome": "unknown"}))
    with RaftClient(cluster.addresses(), timeout=2.0) as client, pytest.raises(OutcomeUnknown):
        client.put("x", "1")
    assert cluster.applied_writes == []


def test_after_index_is_the_highest_index_seen_before_the_first_attempt(
    cluster: FakeCluster,
) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")  # index 2
        cluster.index = 10  # others wrote
        assert client.get("x").index == 10
        cluster.fail_next(1, Answer(504, {"error": "timeout"}), Drop(after_applying=True))
        client.put("x", "2")
        assert client.committed_index == 11
        cluster.index = 20
        assert client.status(2).commit_index == 20
        assert client.committed_index == 20
    # Every attempt of the second write carries 10, however much it learned meanwhile.
    afters = [after for _, _, after in _writes(cluster)]
    assert afters[0] == 0 and len(afters) > 3 and set(afters[1:]) == {10}


def test_a_write_unanswered_within_the_timeout_says_it_may_have_been_applied(
    cluster: FakeCluster,
) -> None:
    cluster.fail_next(1, Hang())
    client = RaftClient(cluster.addresses(), timeout=1.0, target=1)
    with client, pytest.raises(OutcomeUnknown) as caught:
        client.put("x", "1")
    message = str(caught.value)
    assert message.startswith("node 1 did not answer within 1 s")
    assert "the write's outcome is unknown: it may have been applied" in message
    assert caught.value.payload["last_error"]["error"] == "unreachable"


def test_a_read_or_an_unsent_write_that_times_out_is_still_a_timeout() -> None:
    with (
        FakeCluster(leader=None) as cluster,
        RaftClient(cluster.addresses(), timeout=0.3) as client,
        pytest.raises(NoLeader) as caught,
    ):
        client.put("x", "1")  # every node answered no_leader: never appended
    assert not isinstance(caught.value, OutcomeUnknown)


def test_which_failures_leave_a_write_possibly_applied() -> None:
    assert not may_have_applied(NotLeader(2, {"leader_id": 2}, 421))
    assert not may_have_applied(error_from_answer(503, {"error": "no_leader"}))
    assert not may_have_applied(error_from_answer(503, {"error": "storage_failed"}))
    assert not may_have_applied(error_from_answer(503, {"error": "overloaded"}))
    assert not may_have_applied(Unreachable("refused", request_sent=False))
    assert may_have_applied(error_from_answer(503, {"error": "no_leader", "outcome": "unknown"}))
    assert may_have_applied(StorageFailed("x", {"outcome": "unknown"}, 503))
    assert may_have_applied(error_from_answer(504, {"error": "timeout"}))
    assert may_have_applied(Unreachable("reset"))
    assert may_have_applied(BadResponse("garbage", {}, 200))
    # A proxy's page instead of a node's answer says nothing of the write.
    with pytest.raises(NoLeader) as proxied:
        read_answer(503, b"<html>busy</html>")
    assert may_have_applied(proxied.value)


def test_an_idle_connection_the_peer_closed_is_seen_before_sending() -> None:
    mine, theirs = socket.socketpair()
    with mine:
        assert not _closed_by_peer(mine)
        theirs.close()
        assert _closed_by_peer(mine)


# --- the asyncio client ----------------------------------------------------------------
def test_async_a_retry_after_the_session_was_forgotten_is_an_unknown_outcome(
    cluster: FakeCluster,
) -> None:
    _lose_the_session_after_the_next_write(cluster, "k")
    cluster.fail_next(1, Drop(after_applying=True))

    async def scenario() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=2.0) as client:
            with pytest.raises(OutcomeUnknown) as caught:
                await client.cas("k", None, "v")
            assert caught.value.payload["last_error"]["error"] == "session_expired"
            await client.put("k", "again")

    asyncio.run(scenario())
    sent = _writes(cluster)
    first_id = sent[0][0]
    assert cluster.applied_writes[0] == (first_id, 1)
    assert [client_id for client_id, _ in cluster.applied_writes].count(first_id) == 1
    # The forgotten session went out of the pool: the next write took a new one.
    assert sent[-1][:2] != (first_id, 2) and sent[-1][1] == 1
    assert cluster.data == {"k": "again"}


def test_async_a_write_refused_as_forgotten_is_sent_again(cluster: FakeCluster) -> None:
    async def scenario() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=2.0) as client:
            await client.put("x", "1")
            _others_wrote_and_sessions_were_forgotten(cluster)
            assert (await client.put("x", "2")).index == 9
            assert client.committed_index == 9

    asyncio.run(scenario())
    sent = _writes(cluster)
    assert [(seq, after) for _, seq, after in sent] == [(1, 0), (2, 2), (1, 8)]
    assert sent[2][0] != sent[0][0]


# --- raft-client -----------------------------------------------------------------------
def test_cli_an_unanswered_write_exits_2_saying_it_may_have_been_applied(
    cluster: FakeCluster, run_cli: RunCli
) -> None:
    cluster.fail_next(1, Hang())
    code, out, err = run_cli("--cluster", cluster.cluster_text(), "--timeout", "1", "put", "x", "1")
    assert (code, out) == (2, "")
    line = json.loads(err)
    assert line["error"] == "outcome_unknown"
    assert line["message"].startswith("no leader answered within 1 s")
    assert "it may have been applied" in line["message"]


def test_cli_a_retry_of_a_forgotten_session_exits_2_not_applied_twice(
    cluster: FakeCluster, run_cli: RunCli
) -> None:
    _lose_the_session_after_the_next_write(cluster, "k")
    cluster.fail_next(1, Drop(after_applying=True))
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "put", "k", "v")
    assert code == 2
    line = json.loads(err)
    assert line["error"] == "outcome_unknown"
    assert line["last_error"]["error"] == "session_expired"
    assert len(cluster.applied_writes) == 1 and "k" not in cluster.data
