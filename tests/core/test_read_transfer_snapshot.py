"""Core tests for ReadIndex and the lease (thesis §6.4), leadership transfer (thesis §3.10),
InstallSnapshot (§7) and joint membership changes (§6)."""

from __future__ import annotations

import pytest

from raftkv.core import InstallSnapshot, Membership, SnapshotMeta, TimeoutNow
from raftkv.errors import NotLeader, ProposalDropped
from tests.core.harness import Cluster


def test_read_index_is_confirmed_by_a_quorum_round_6_4() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    leader = cluster[1]
    leader.read_index(7)
    leader.read_index(8)  # concurrent reads share one round
    ready = leader.ready()
    assert not ready.read_states
    rounds = {m.read_context for m in ready.messages}
    assert len(rounds) == 1
    leader.advance(ready)
    cluster.in_flight.extend(ready.messages)
    cluster.deliver()
    states = cluster.read_states[1]
    assert sorted(state.request_id for state in states) == [7, 8]
    assert all(state.index == leader.log.committed for state in states)


@pytest.mark.parametrize("rounds_max", [0, 1])
def test_read_index_waits_for_quorum_and_stale_leader_never_answers_6_4(rounds_max: int) -> None:
    cluster = Cluster([1, 2, 3], read_rounds_inflight_max=rounds_max)
    cluster.campaign(1)
    leader = cluster[1]
    cluster.isolate(1)
    leader.read_index(1)
    cluster.process()
    cluster.deliver()
    assert not leader.read_states
    collected = []
    cluster.heal()
    leader.read_index(2)
    if rounds_max == 1:
        # Read 1's round is still in flight (its messages were lost), so read 2 waits: the
        # next heartbeat's answers confirm that round, then read 2's round starts.
        assert not leader.has_ready()
        cluster.tick(leader.config.heartbeat_ticks, only=[1])
        assert [state.request_id for state in cluster.read_states[1]] == [1, 2]
        return
    ready = leader.ready()
    collected += ready.read_states
    leader.advance(ready)
    for message in ready.messages:
        cluster[message.to].step(message)
    for node_id in (2, 3):
        follower_ready = cluster[node_id].ready()
        for answer in follower_ready.messages_after_persist:
            leader.step(answer)
        cluster[node_id].advance(follower_ready)
    ready = leader.ready()
    collected += ready.read_states
    # Read 1 was never answered while the leader was cut off; once a quorum confirms a
    # round started after both requests, both are served.
    assert {state.request_id for state in collected} == {1, 2}
    assert all(state.index == leader.log.committed for state in collected)


def test_reads_queued_behind_a_round_in_flight_share_the_next_round_6_4() -> None:
    cluster = Cluster([1, 2, 3])  # the default: one round in flight, as etcd's read loop
    cluster.campaign(1)
    leader = cluster[1]
    leader.read_index(1)
    first = leader.ready()
    leader.advance(first)
    first_round = {m.read_context for m in first.messages}
    assert len(first_round) == 1 and len(first.messages) == 2
    # While that round is out, later reads start none of their own.
    for request_id in (2, 3, 4):
        leader.read_index(request_id)
        assert not leader.has_ready()
    # Follower 2 alone gets it: its answer makes a quorum with the leader.
    cluster.in_flight.extend(m for m in first.messages if m.to == 2)
    assert cluster.deliver(2) == 2
    assert [state.request_id for state in cluster.read_states[1]] == [1]
    # Confirming it started the next round, shared by every read queued meanwhile.
    second_rounds = {
        m.read_context for m in cluster.in_flight if m.sender == 1 and m.read_context > 0
    }
    assert second_rounds and min(second_rounds) > max(first_round)
    cluster.deliver()
    assert [state.request_id for state in cluster.read_states[1]] == [1, 2, 3, 4]
    assert all(state.index == leader.log.committed for state in cluster.read_states[1])


def test_read_rounds_without_a_limit_start_one_per_ready_6_4() -> None:
    cluster = Cluster([1, 2, 3], read_rounds_inflight_max=0)
    cluster.campaign(1)
    leader = cluster[1]
    contexts = []
    for request_id in (1, 2):
        leader.read_index(request_id)
        ready = leader.ready()
        leader.advance(ready)
        contexts.append({m.read_context for m in ready.messages})
    assert len(contexts[0]) == len(contexts[1]) == 1 and contexts[0] != contexts[1]


def test_read_rounds_limit_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="read_rounds_inflight_max"):
        Cluster([1], read_rounds_inflight_max=-1)


def test_followers_refuse_read_index() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    with pytest.raises(NotLeader) as error:
        cluster[2].read_index(1)
    assert error.value.leader_id == 1


def test_lease_requires_recent_quorum_6_4_1() -> None:
    cluster = Cluster([1, 2, 3], election_timeout_ticks=10, heartbeat_ticks=2)
    cluster.campaign(1)
    cluster.tick(4)
    assert cluster[1].lease_valid()
    cluster.isolate(1)
    cluster.tick(9, only=[1])
    assert not cluster[1].lease_valid()


def test_leadership_transfer_makes_target_leader_at_once_3_10() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    cluster.propose(1, b"x")
    cluster[1].transfer_leadership(3)
    with pytest.raises(ProposalDropped):
        cluster[1].propose(b"refused during transfer")
    cluster.process()
    cluster.deliver()
    assert any(isinstance(m, TimeoutNow) for m in cluster.delivered)
    assert cluster.leader() == 3


def test_leadership_transfer_to_lagging_node_catches_it_up_first() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    cluster.isolate(3)
    for k in range(5):
        cluster.propose(1, b"v%d" % k)
    cluster.heal()
    cluster[1].transfer_leadership(3)
    cluster.tick(3)
    assert cluster.leader() == 3
    assert cluster.log_of(3)[: len(cluster.log_of(1))] == cluster.log_of(1)


def test_leadership_transfer_aborts_after_an_election_timeout() -> None:
    cluster = Cluster([1, 2, 3], election_timeout_ticks=10)
    cluster.campaign(1)
    cluster.isolate(3)
    cluster[1].transfer_leadership(3)
    cluster.tick(10, only=[1])
    assert cluster[1].transfer_target is None and cluster.leader() == 1
    cluster[1].propose(b"accepted again")


def test_install_snapshot_brings_a_compacted_away_follower_back_7() -> None:
    cluster = Cluster([1, 2, 3], snapshot_chunk_bytes=64, snapshot_chunks_inflight_max=2)
    cluster.campaign(1)
    cluster.isolate(3)
    for k in range(30):
        cluster.propose(1, b"value-%02d" % k)
    leader = cluster[1]
    data = b"S" * 1000  # a stand-in for the state machine's bytes
    meta = SnapshotMeta(
        leader.log.applied, leader.log.term(leader.log.applied) or 0, leader.membership
    )
    leader.snapshot_taken(meta, data)
    assert leader.log.snapshot_index == meta.index
    cluster.heal()
    cluster.tick(10)
    chunks = [m for m in cluster.delivered if isinstance(m, InstallSnapshot)]
    assert len(chunks) >= 1000 // 64
    follower = cluster[3]
    assert follower.log.snapshot_index == meta.index
    assert cluster.snapshots[3].latest() == (meta, data)
    cluster.propose(1, b"after")
    assert cluster.log_of(3)[-1] == cluster.log_of(1)[-1]


def test_joint_consensus_change_and_auto_leave_6() -> None:
    cluster = Cluster([1, 2, 3, 4, 5], bootstrap=False)
    for node_id in cluster.ids:
        cluster[node_id].bootstrap(Membership(voters=frozenset({1, 2, 3})))
    cluster.process()
    cluster.campaign(1)
    joint = Membership(voters=frozenset({1, 4, 5}), voters_outgoing=frozenset({1, 2, 3}))
    cluster[1].propose_membership(joint)
    with pytest.raises(ProposalDropped):
        cluster[1].propose_membership(Membership(voters=frozenset({1})))
    cluster.process()
    cluster.deliver()
    cluster.tick(5)
    for node_id in (1, 4, 5):  # 2 and 3 were removed and no longer hear from the leader
        assert cluster[node_id].membership.voters == frozenset({1, 4, 5})
        assert not cluster[node_id].membership.is_joint
    # The new configuration commits without nodes 2 and 3.
    cluster.isolate(2)
    cluster.isolate(3)
    cluster.cut -= {(a, b) for a in (1, 4, 5) for b in (1, 4, 5)}
    index, _ = cluster.propose(1, b"new config only")
    assert cluster[1].log.committed >= index


def test_removed_leader_steps_down_after_the_change_commits_6() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    cluster[1].propose_membership(Membership(voters=frozenset({2, 3})))
    cluster.process()
    cluster.deliver()
    cluster.tick(3)
    assert cluster[1].role == "follower"
    cluster.tick(60)
    assert cluster.leader() in (2, 3)


def test_the_uncommitted_window_refuses_when_full_and_always_admits_one_entry() -> None:
    """Flow control (etcd's MaxUncommittedEntriesSize): proposals are refused while the
    appended-but-uncommitted bytes would pass the window, but an empty window admits any
    one entry, or an entry larger than the window could never be proposed."""
    cluster = Cluster([1, 2, 3], uncommitted_bytes_max=64)
    cluster.campaign(1)
    cluster.isolate(2)
    cluster.isolate(3)
    leader = cluster[1]
    index, _ = leader.propose(b"x" * 500)  # larger than the whole window, into an empty one
    with pytest.raises(ProposalDropped):
        leader.propose(b"y")
    cluster.heal()
    cluster.tick(3)
    assert leader.log.committed >= index  # committed: the window is empty again
    leader.propose(b"z")
