"""Paper tests for terms (§5.1), leader election (§5.2, §5.4.1), pre-vote and check-quorum
(thesis §9.6, §4.2.3). Each test names the rule it checks."""

from __future__ import annotations

import random

from raftkv.core import (
    AppendEntries,
    AppendEntriesResponse,
    HardState,
    RaftConfig,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
)
from tests.core.harness import Cluster


def test_higher_term_message_makes_node_follower_of_that_term_5_1() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    assert cluster.leader() == 1
    leader = cluster[1]
    leader.step(RequestVoteResponse(to=1, term=leader.term + 5, from_id=2, granted=False))
    assert leader.role == "follower"
    assert leader.term == 7 and leader.voted_for is None


def test_stale_term_requests_are_rejected_with_current_term_5_1() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False)
    cluster.campaign(1)
    node = cluster[2]
    term = node.term
    node.step(
        AppendEntries(
            to=2,
            term=term - 1,
            leader_id=3,
            prev_log_index=0,
            prev_log_term=0,
            entries=[],
            leader_commit=0,
        )
    )
    node.step(RequestVote(to=2, term=term - 1, candidate_id=3, last_log_index=99, last_log_term=99))
    ready = node.ready()
    replies = ready.messages + ready.messages_after_persist
    append_reply = next(m for m in replies if isinstance(m, AppendEntriesResponse))
    vote_reply = next(m for m in replies if isinstance(m, RequestVoteResponse))
    assert not append_reply.success and append_reply.term == term
    assert not vote_reply.granted and vote_reply.term == term
    assert node.term == term and node.leader_id == 1


def test_election_timeout_is_randomized_in_t_to_2t_5_2() -> None:
    seen = set()
    for seed in range(200):
        node = RaftNode(RaftConfig(node_id=1, election_timeout_ticks=10), random.Random(seed))
        seen.add(node.randomized_election_timeout)
    assert seen == set(range(10, 20))


def test_follower_campaigns_after_its_timeout_with_seed_fields_5_2() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False)
    node = cluster[1]
    ticks = node.randomized_election_timeout
    for _ in range(ticks - 1):
        node.tick()
    assert node.role == "follower"
    node.tick()
    assert node.role == "candidate" and node.term == 2 and node.voted_for == 1
    ready = node.ready()
    requests = [m for m in ready.messages_after_persist if isinstance(m, RequestVote)]
    assert sorted(m.to for m in requests) == [2, 3]
    assert all(
        (m.term, m.candidate_id, m.last_log_index, m.last_log_term) == (2, 1, 1, 1)
        for m in requests
    )
    # §5.1: the candidate's new term and self-vote are durable before its requests leave.
    assert ready.hard_state == HardState(term=2, voted_for=1, commit=1) and ready.must_sync
    assert not any(isinstance(m, RequestVote) for m in ready.messages)


def test_at_most_one_vote_per_term_and_grant_is_durable_before_reply_5_2() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False)
    voter = cluster[3]
    voter.step(RequestVote(to=3, term=2, candidate_id=1, last_log_index=1, last_log_term=1))
    voter.step(RequestVote(to=3, term=2, candidate_id=2, last_log_index=1, last_log_term=1))
    ready = voter.ready()
    replies = {m.to: m for m in ready.messages_after_persist}
    assert replies[1].granted and not replies[2].granted
    assert ready.hard_state is not None and ready.hard_state.voted_for == 1 and ready.must_sync
    assert not ready.messages, "a vote must not leave before it is durable"
    voter.advance(ready)
    # Asking again in the same term gets the same answer (the vote is remembered).
    voter.step(RequestVote(to=3, term=2, candidate_id=1, last_log_index=1, last_log_term=1))
    assert voter.ready().messages_after_persist[0].granted


def test_majority_wins_and_leader_sends_heartbeats_every_h_ticks_5_2() -> None:
    # Commits told at once: otherwise the first tick tells the followers of the no-op's
    # commit (tests/core/test_commit_notices.py), which is not a heartbeat.
    cluster = Cluster(
        [1, 2, 3, 4, 5], pre_vote=False, heartbeat_ticks=3, defer_commit_notices=False
    )
    cluster.campaign(1)
    assert cluster.leader() == 1
    assert all(cluster[i].leader_id == 1 for i in cluster.ids)
    cluster.delivered.clear()
    cluster.tick(2, only=[1])
    assert not [m for m in cluster.delivered if isinstance(m, AppendEntries)]
    cluster.tick(1, only=[1])
    heartbeats = [m for m in cluster.delivered if isinstance(m, AppendEntries)]
    assert sorted(m.to for m in heartbeats) == [2, 3, 4, 5]


def test_candidate_without_majority_does_not_win_5_2() -> None:
    cluster = Cluster([1, 2, 3, 4, 5], pre_vote=False)
    cluster.partition([1, 2], [3, 4, 5])
    cluster.campaign(1)
    assert cluster[1].role == "candidate"


def test_split_votes_resolve_through_new_random_timeouts_5_2() -> None:
    for seed in range(20):
        cluster = Cluster([1, 2, 3, 4], seed=seed, pre_vote=False)
        # Nodes 1 and 2 campaign at once; 3 votes for 1 and 4 votes for 2: nobody wins.
        cluster[1].campaign(pre_vote=False)
        cluster[2].campaign(pre_vote=False)
        cluster.process()
        cluster.filter = lambda m: (
            None if isinstance(m, RequestVote) and (m.sender, m.to) in {(1, 4), (2, 3)} else m
        )
        cluster.deliver()
        assert not cluster.leaders()
        cluster.filter = None
        cluster.tick(200)
        assert len(cluster.leaders()) == 1


def test_one_leader_per_term_over_many_elections_5_2() -> None:
    leaders_by_term: dict[int, int] = {}
    rng = random.Random(5)
    cluster = Cluster([1, 2, 3, 4, 5], seed=5)
    for _ in range(60):
        cluster.heal()
        cluster.isolate(rng.choice(cluster.ids))
        cluster.tick(rng.randrange(5, 40))
        for leader in cluster.leaders():
            term = cluster[leader].term
            assert leaders_by_term.setdefault(term, leader) == leader
    assert len(leaders_by_term) > 5


def test_voter_rejects_candidate_with_less_up_to_date_log_5_4_1() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    cluster.campaign(1)
    cluster.propose(1, b"x")
    voter = cluster[2]
    term = voter.term
    last = voter.log.last_index
    # Same last term, shorter log: rejected.
    voter.step(
        RequestVote(
            to=2, term=term + 1, candidate_id=3, last_log_index=last - 1, last_log_term=term
        )
    )
    ready = voter.ready()
    assert not ready.messages_after_persist[0].granted
    voter.advance(ready)
    # A higher last term wins despite a shorter log.
    voter.step(
        RequestVote(to=2, term=term + 2, candidate_id=3, last_log_index=1, last_log_term=term + 1)
    )
    assert voter.ready().messages_after_persist[0].granted


def test_up_to_date_rule_compares_last_term_before_length_5_4_1() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False)
    log = cluster[1].log
    assert log.is_up_to_date(1, 5)  # higher last term wins despite a shorter log
    assert not log.is_up_to_date(0, 0)
    assert log.is_up_to_date(1, 1)


def test_prevote_keeps_rejoining_node_from_deposing_leader_9_6() -> None:
    cluster = Cluster([1, 2, 3], seed=3)
    cluster.campaign(1)
    term = cluster[1].term
    cluster.isolate(3)
    cluster.tick(100)  # node 3 times out again and again, but only pre-votes
    assert cluster[3].term == term
    cluster.heal()
    cluster.tick(50)
    assert cluster.leader() == 1 and cluster[1].term == term


def test_without_prevote_a_rejoining_node_disrupts_the_leader_9_6() -> None:
    cluster = Cluster([1, 2, 3], seed=3, pre_vote=False, check_quorum=False)
    cluster.campaign(1)
    term = cluster[1].term
    cluster.isolate(3)
    cluster.tick(100)
    assert cluster[3].term > term
    cluster.heal()
    cluster.tick(50)
    assert cluster[1].term > term  # the old leader was deposed by the higher term


def test_check_quorum_leader_steps_down_without_majority_4_2_3() -> None:
    cluster = Cluster([1, 2, 3], election_timeout_ticks=10)
    cluster.campaign(1)
    cluster.isolate(1)
    cluster.tick(21, only=[1])
    assert cluster[1].role == "follower"


def test_without_check_quorum_isolated_leader_stays_leader() -> None:
    cluster = Cluster([1, 2, 3], check_quorum=False)
    cluster.campaign(1)
    cluster.isolate(1)
    cluster.tick(50, only=[1])
    assert cluster[1].role == "leader"


def test_follower_in_lease_ignores_vote_requests_4_2_3() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False)
    cluster.campaign(1)
    follower = cluster[2]
    term = follower.term
    follower.step(
        RequestVote(to=2, term=term + 1, candidate_id=3, last_log_index=9, last_log_term=9)
    )
    assert follower.term == term and follower.leader_id == 1
    assert not follower.has_ready()
    # Once the leader has been silent for an election timeout, the same request is granted.
    cluster.isolate(1)
    cluster.tick(follower.config.election_timeout_ticks, only=[2])
    follower.step(
        RequestVote(to=2, term=follower.term + 1, candidate_id=3, last_log_index=9, last_log_term=9)
    )
    votes = [
        m for m in follower.ready().messages_after_persist if isinstance(m, RequestVoteResponse)
    ]
    assert votes and votes[0].granted
