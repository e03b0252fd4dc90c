"""`RaftClient` and `AsyncRaftClient` against a fake cluster: discovery, retries, sessions."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from raftkv import errors
from raftkv.client import (
    AsyncRaftClient,
    BadRequest,
    CasFailed,
    NotFound,
    NotLeader,
    RaftClient,
    ReadResult,
    Timeout,
    Unreachable,
    WriteResult,
)
from tests.client.fake_cluster import Answer, Drop, FakeCluster, Hang, free_port


def _pairs(cluster: FakeCluster) -> list[tuple[str, int]]:
    """The (client_id, seq) of every write request the nodes received, in order."""
    pairs = []
    for request in cluster.writes():
        source = request.body if request.method == "PUT" else request.query
        assert source is not None
        pairs.append((str(source["client_id"]), int(source["seq"])))
    return pairs


def test_results_and_errors(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        put = client.put("x", "1")
        assert (put.leader, put.index) == (1, 2)
        assert isinstance(put, WriteResult)
        read = client.get("x")
        assert isinstance(read, ReadResult)
        assert (read.key, read.value, read.index) == ("x", "1", 2)
        with pytest.raises(CasFailed) as cas_failed:
            client.cas("x", "0", "2")
        assert cas_failed.value.current == "1"
        assert cas_failed.value.status == 409
        assert client.cas("x", "1", "2").index == 4
        with pytest.raises(CasFailed):
            client.put_if_absent("x", "3")
        assert client.put_if_absent("y", "3").index == 6
        client.delete("x")
        with pytest.raises(NotFound) as not_found:
            client.get("x")
        assert isinstance(not_found.value, errors.ClientError)
        assert not_found.value.payload == {"error": "not_found"}
        with pytest.raises(BadRequest):
            client.get("", "linearizable")
        assert client.leader == 1


def test_follows_not_leader_hints_across_three_nodes(cluster: FakeCluster) -> None:
    cluster.leader = 2
    # Node 1 first points (wrongly, as a stale follower might) at 3; 3 points at 2.
    cluster.fail_next(1, Answer(421, {"error": "not_leader", "leader": "node3", "leader_id": 3}))
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        assert client.put("x", "1").leader == 2
        assert [r.node_id for r in cluster.requests] == [1, 3, 2]
        assert client.leader == 2
        # The next operation starts at the leader it learned.
        client.get("x")
        assert cluster.requests[-1].node_id == 2


def test_hint_to_a_node_outside_the_map_uses_its_url(cluster: FakeCluster) -> None:
    cluster.leader = 3
    two_nodes = {node_id: cluster.addresses()[node_id] for node_id in (1, 2)}
    with RaftClient(two_nodes, timeout=2.0) as client:
        assert client.put("x", "1").leader == 3
        assert client.addresses[3] == ("127.0.0.1", cluster.nodes[3].port)


def test_retry_after_503_reuses_client_id_and_seq(cluster: FakeCluster) -> None:
    cluster.fail_next(1, Answer(503, {"error": "no_leader"}))
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")
        client.put("x", "2")
        pairs = _pairs(cluster)
        # The 503 on node 1, node 2's not_leader hint, node 1 again; then the second write.
        assert [r.node_id for r in cluster.writes()] == [1, 2, 1, 1]
        assert pairs[:3] == [(client.client_id, 1)] * 3
        assert pairs[3] == (client.client_id, 2)
    assert cluster.applied_writes == [(client.client_id, 1), (client.client_id, 2)]


def test_lost_answer_is_applied_once(cluster: FakeCluster) -> None:
    # The leader applies the write and the connection drops before the answer: the retry,
    # with the same (client_id, seq), gets the first answer back and applies nothing.
    cluster.fail_next(1, Drop(after_applying=True))
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        first = client.put("x", "1")
        second = client.delete("x")
    pairs = _pairs(cluster)
    assert pairs[0] == pairs[-2]
    assert len(cluster.applied_writes) == 2
    assert (first.index, second.index) == (2, 3)


def test_dropped_connection_before_applying(cluster: FakeCluster) -> None:
    cluster.fail_next(1, Drop(), Drop())
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        assert client.put("x", "1").index == 2
    assert len(set(_pairs(cluster))) == 1
    assert cluster.data == {"x": "1"}


def test_connections_are_kept_alive(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")
        client.get("x")
        client.delete("x")

    async def scenario() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=2.0) as client:
            await client.put("x", "1")
            await client.get("x")

    asyncio.run(scenario())
    peers = [request.peer for request in cluster.requests]
    assert len(set(peers[:3])) == 1
    assert len(set(peers[3:])) == 1


def test_a_kept_alive_connection_closed_by_the_node_is_retried_at_once(
    cluster: FakeCluster,
) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")
        cluster.fail_next(1, Drop())
        client.put("x", "2")
    # No other node was asked: the failure on the reused connection was not held against node 1.
    assert [r.node_id for r in cluster.requests] == [1, 1, 1]
    assert _pairs(cluster)[1:] == [(client.client_id, 2)] * 2


def test_target_not_leader_raises(cluster: FakeCluster) -> None:
    client = RaftClient(cluster.addresses(), timeout=2.0, target=3)
    with client, pytest.raises(NotLeader) as caught:
        client.put("x", "1")
    assert caught.value.leader_id == 1
    assert caught.value.leader_name == "node1"
    assert isinstance(caught.value, errors.NotLeader)


def test_all_down_raises_timeout_within_the_timeout() -> None:
    dead = {node_id: ("127.0.0.1", free_port()) for node_id in (1, 2, 3)}
    started = time.monotonic()
    with RaftClient(dead, timeout=0.5) as client, pytest.raises(Timeout) as caught:
        client.get("x")
    assert 0.4 <= time.monotonic() - started < 2.0
    assert caught.value.payload["last_error"]["error"] == "unreachable"
    assert isinstance(caught.value, errors.Timeout)


def test_a_hanging_node_costs_one_attempt_not_the_timeout(cluster: FakeCluster) -> None:
    cluster.leader = 2
    cluster.fail_next(1, Hang())
    with RaftClient(cluster.addresses(), timeout=2.5) as client:
        started = time.monotonic()
        assert client.put("x", "1").leader == 2
        assert time.monotonic() - started < 2.5


def test_statuses_report_unreachable_nodes(cluster: FakeCluster) -> None:
    addresses = cluster.addresses() | {4: ("127.0.0.1", free_port())}
    with RaftClient(addresses, timeout=1.0) as client:
        reports = client.statuses()
        assert [r.node_id for r in reports] == [1, 2, 3, 4]
        assert [r.reachable for r in reports] == [True, True, True, False]
        assert isinstance(reports[3].error, Unreachable)
        assert reports[0].status is not None and reports[0].status.role == "leader"
        assert client.status(2).role == "follower"
        with pytest.raises(Unreachable):
            client.status(4)


def test_members_and_transfer(cluster: FakeCluster) -> None:
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        membership = client.members()
        assert [m.id for m in membership.members] == [1, 2, 3]
        assert membership.leader == 1
        assert client.add_member(4, "127.0.0.1:9004").index == 2
        assert client.remove_member(4).index == 3
        assert client.transfer_leader(3).leader == 3
        assert client.leader == 3
        client.put("x", "1")
        assert cluster.requests[-1].node_id == 3


def test_async_client_discovers_and_retries(cluster: FakeCluster) -> None:
    cluster.leader = 3
    cluster.fail_next(3, Drop(after_applying=True))

    async def scenario() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=2.0) as client:
            assert (await client.put("a/b", "1")).leader == 3
            assert (await client.get("a/b")).value == "1"
            with pytest.raises(CasFailed):
                await client.cas("a/b", None, "2")
            assert (await client.cas("a/b", "1", "2")).leader == 3
            assert (await client.delete("a/b")).leader == 3
            with pytest.raises(NotFound):
                await client.get("a/b")
            reports = await client.statuses()
            assert [r.reachable for r in reports] == [True] * 3
            assert (await client.members()).leader == 3
            assert client.leader == 3

    asyncio.run(scenario())
    pairs = _pairs(cluster)
    # The dropped first put was retried with its pair; every later write took the next seq.
    assert pairs[0] == pairs[2]
    assert [seq for _, seq in pairs] == [1, 1, 1, 2, 3, 4]


def test_async_concurrent_writes_use_separate_sessions(cluster: FakeCluster) -> None:
    writes_count = 20

    async def scenario() -> None:
        async with AsyncRaftClient(cluster.addresses(), timeout=5.0) as client:
            await asyncio.gather(*(client.put(f"k{i}", str(i)) for i in range(writes_count)))

    asyncio.run(scenario())
    pairs = _pairs(cluster)
    assert len(pairs) == len(set(pairs)) == writes_count
    # Within each session the sequence numbers run 1, 2, 3... without gaps.
    by_session: dict[str, list[int]] = {}
    for client_id, seq in pairs:
        by_session.setdefault(client_id, []).append(seq)
    for seqs in by_session.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_async_target_not_leader_and_timeout() -> None:
    dead = {node_id: ("127.0.0.1", free_port()) for node_id in (1, 2)}

    async def scenario() -> None:
        async with AsyncRaftClient(dead, timeout=0.3) as client:
            with pytest.raises(Timeout):
                await client.put("x", "1")

    asyncio.run(scenario())


def test_a_read_a_follower_serves_teaches_no_leader(cluster: FakeCluster) -> None:
    """Followers serve linearizable reads (SPEC §6, "Reads on followers"): a read's success
    no longer says the node that answered leads, or the client's writes would go there."""
    cluster.leader = 2
    cluster.follower_reads = True
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")
        assert client.leader == 2
        cluster.leader = 3  # a new leader the client has not met yet
        cluster.fail_next(
            2, Answer(421, {"error": "not_leader", "leader": "node3", "leader_id": 3})
        )
        client.put("y", "1")
        assert client.leader == 3
    with RaftClient(cluster.addresses(), timeout=2.0) as fresh:
        assert fresh.get("x").value == "1"  # served by node 1, a follower
        assert cluster.requests[-1].node_id == 1 and fresh.leader is None
        fresh.put("z", "1")  # node 1, then node 3 as it hints
        assert [r.node_id for r in cluster.requests[-2:]] == [1, 3] and fresh.leader == 3


def test_a_hint_teaches_the_leader_to_the_next_read(cluster: FakeCluster) -> None:
    """Nodes that refuse follower reads (`--no-follower-reads`, or before session 30): the
    leader a 421 names is learnt, so the next read goes straight to it."""
    cluster.leader = 2
    with RaftClient(cluster.addresses(), timeout=2.0) as client:
        client.put("x", "1")
        client.get("x")
    with RaftClient(cluster.addresses(), timeout=2.0) as fresh:
        fresh.get("x")
        assert [r.node_id for r in cluster.requests[-2:]] == [1, 2] and fresh.leader == 2
        fresh.get("x")
        assert cluster.requests[-1].node_id == 2


def test_reads_from_any_member_spread_over_the_cluster(cluster: FakeCluster) -> None:
    """`read_from="any"`: each read first asks a member drawn at random (followers serve
    reads); writes still go to the leader. Against nodes that refuse follower reads, a read
    follows the 421 to the leader as before."""
    cluster.leader = 2
    cluster.follower_reads = True
    with RaftClient(
        cluster.addresses(), timeout=2.0, read_from="any", rng=random.Random(3)
    ) as client:
        client.put("x", "1")
        first = len(cluster.requests)
        for _ in range(30):
            assert client.get("x").value == "1"
        readers = {request.node_id for request in cluster.requests[first:]}
        assert readers == {1, 2, 3}
        client.put("y", "1")
        assert cluster.requests[-1].node_id == 2
        cluster.follower_reads = False
        assert client.get("x").value == "1"  # (a follower's 421, then the leader)
        assert cluster.requests[-1].node_id == 2
    with pytest.raises(ValueError, match="read_from"):
        RaftClient(cluster.addresses(), read_from="nearest")


def test_the_async_client_reads_from_any_member_too(cluster: FakeCluster) -> None:
    cluster.leader = 2
    cluster.follower_reads = True

    async def reads() -> set[int]:
        async with AsyncRaftClient(
            cluster.addresses(), timeout=2.0, read_from="any", rng=random.Random(5)
        ) as client:
            await client.put("x", "1")
            first = len(cluster.requests)
            for _ in range(30):
                assert (await client.get("x")).value == "1"
            return {request.node_id for request in cluster.requests[first:]}

    assert asyncio.run(reads()) == {1, 2, 3}
    with pytest.raises(ValueError, match="read_from"):
        AsyncRaftClient(cluster.addresses(), read_from="nearest")
