"""Regression tests for defects a review found in the core (each fails with its fix
reverted), and for the items it asked to examine."""

from __future__ import annotations

import pytest

from raftkv.core import (
    AppendEntries,
    Entry,
    EntryKind,
    InstallSnapshot,
    Membership,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
)
from raftkv.errors import ProposalDropped, SafetyViolation
from tests.core.harness import Cluster


def founded(voters: set[int], learners: set[int] = frozenset(), **config: object) -> Cluster:
    everyone = sorted(voters | learners)
    cluster = Cluster(everyone, bootstrap=False, **config)
    membership = Membership(voters=frozenset(voters), learners=frozenset(learners))
    for node_id in everyone:
        cluster[node_id].bootstrap(membership)
    cluster.process()
    return cluster


# --- 1: no message leaves before the term and vote it carries are durable ----------------
def test_single_voter_sends_nothing_before_its_new_term_is_durable_5_1() -> None:
    cluster = founded({1}, {2})
    leader = cluster[1]
    leader.campaign(pre_vote=True)  # one voter: won inside this call
    assert leader.role == "leader"
    leader.propose(b"A")
    ready = leader.ready()
    assert ready.hard_state is not None and ready.hard_state.term == 2 and ready.must_sync
    assert ready.messages == [], "AppendEntries left before term 2 was durable"
    assert any(isinstance(m, AppendEntries) for m in ready.messages_after_persist)

    # What a driver may do with `messages`: send them before the save. Then the power fails
    # before the save, and node 1 comes back at term 1.
    for message in ready.messages:
        cluster[message.to].step(message)
    cluster.crash(1)
    cluster.process()
    cluster.restart(1)
    assert cluster[1].term == 1
    cluster.campaign(1)  # term 2 again
    cluster.propose(1, b"B")
    cluster.tick(3)
    index = cluster[1].log.last_index
    assert cluster[2].log.committed == index
    held = [e.data for e in cluster[2].log.entries if e.kind == EntryKind.NORMAL]
    assert held == [b"B"], f"the learner holds {held}, the leader [b'B']"


@pytest.mark.parametrize("voters", [{1}, {1, 2, 3}])
def test_every_message_sent_early_carries_a_durable_term(voters: set[int]) -> None:
    """The general rule, over elections with learners: whatever leaves in `messages`
    (before the save) carries a term that an earlier Ready made durable. Pre-vote requests
    carry term + 1 but change nobody's term, so they may go early."""
    cluster = founded(voters, {4})
    durable_term = {n: cluster[n].term for n in cluster.ids}
    checked = 0

    def checking_process() -> None:
        nonlocal checked
        for node_id in cluster.ids:
            node = cluster[node_id]
            while node_id not in cluster.down and node.has_ready():
                ready = node.ready()
                for message in ready.messages:
                    pre_vote = isinstance(message, RequestVote) and message.pre_vote
                    assert pre_vote or message.term <= durable_term[node_id], message
                    checked += 1
                if ready.hard_state is not None:
                    durable_term[node_id] = ready.hard_state.term
                cluster.in_flight.extend(ready.messages + ready.messages_after_persist)
                node.advance(ready)

    cluster.process = checking_process  # type: ignore[method-assign]
    for round_number in range(6):
        candidate = sorted(voters)[round_number % len(voters)]
        cluster[candidate].campaign(pre_vote=round_number % 2 == 0)
        cluster.process()
        cluster.deliver()
        if cluster[candidate].role == "leader":
            cluster.propose(candidate, b"w%d" % round_number)
        cluster.tick(4)
    assert checked > 10


# --- 3: membership changes wait for the leader's own term (the 2015 single-server bug) -----
def test_a_new_leader_changes_membership_only_after_committing_its_own_term() -> None:
    """Without the rule, the published counterexample (nodes 1-4; node 1 adds 5, which only
    5 receives; node 2 wins and removes 4, committed by 2 and 3; node 1 wins again with 4
    and 5) commits two different entries at one index."""
    cluster = Cluster([1, 2, 3, 4])
    cluster[1].campaign(pre_vote=False)
    cluster.process()
    leader = cluster[1]
    while leader.role != "leader":
        cluster.deliver(count=1)  # votes only: no answer to the no-op yet
    assert leader.role == "leader" and leader.log.term(leader.log.committed) != leader.term
    with pytest.raises(ProposalDropped, match="not yet committed an entry of its term"):
        leader.propose_membership(Membership(voters=frozenset({1, 2, 3})))
    cluster.deliver()
    assert leader.log.term(leader.log.committed) == leader.term
    index, _ = leader.propose_membership(Membership(voters=frozenset({1, 2, 3})))
    assert leader.membership_index == index


def test_a_follower_reports_a_conflict_inside_its_committed_prefix() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    for k in range(3):
        cluster.propose(1, b"v%d" % k)
    follower = cluster[2]
    committed = follower.log.committed
    assert committed >= 4
    before = list(follower.log.entries)
    forged = AppendEntries(
        to=2,
        term=follower.term,
        leader_id=1,
        prev_log_index=committed - 2,
        prev_log_term=follower.log.term(committed - 2) or 0,
        entries=[
            Entry(term=follower.term + 5, index=committed - 1, data=b"other"),
            Entry(term=follower.term + 5, index=committed, data=b"other"),
        ],
        leader_commit=committed,
    )
    with pytest.raises(SafetyViolation, match=f"index {committed - 1}"):
        follower.step(forged)
    assert follower.log.entries == before


def test_entries_that_do_not_follow_prev_log_index_are_refused() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    follower = cluster[2]
    last = follower.log.last_index
    before = list(follower.log.entries)
    follower.step(
        AppendEntries(
            to=2,
            term=follower.term,
            leader_id=1,
            prev_log_index=last,
            prev_log_term=follower.log.last_term,
            entries=[
                Entry(term=follower.term, index=last + 1),
                Entry(term=follower.term, index=last + 1000),
            ],
            leader_commit=0,
        )
    )
    assert follower.log.entries == before
    ready = follower.ready()
    assert any("does not follow" in event for event in ready.events)
    assert not ready.messages_after_persist


# --- 6: a snapshot transfer in flight is finished, not restarted by a newer snapshot -------
def take_snapshot(cluster: Cluster, node_id: int, size: int, keep: int = 0) -> SnapshotMeta:
    node = cluster[node_id]
    index = node.log.applied
    meta = SnapshotMeta(index, node.log.term(index) or 0, node.membership)
    node.snapshot_taken(meta, bytes([index % 251]) * size, keep_entries=keep)
    return meta


def follower_3_behind_a_snapshot(cluster: Cluster, size: int) -> None:
    """Leader 1 writes while node 3 is cut off, then snapshots (`size` bytes) and compacts
    everything: node 3 needs an InstallSnapshot once the link heals."""
    cluster.campaign(1)
    cluster.isolate(3)
    for k in range(20):
        cluster.propose(1, b"value-%02d" % k)
    take_snapshot(cluster, 1, size)
    cluster.heal()


def test_a_lagging_follower_gets_a_snapshot_under_steady_snapshots() -> None:
    cluster = Cluster([1, 2, 3], snapshot_chunk_bytes=64, snapshot_chunks_inflight_max=2)
    follower_3_behind_a_snapshot(cluster, 1000)
    leader = cluster[1]
    snapshots_taken = 0
    installed_after: int | None = None

    def write_and_snapshot_while_chunks_travel(message: object) -> object:
        # Writes go on, and the leader snapshots more often than a 1000-byte transfer in
        # 64-byte chunks can finish: with defaults, a large state at ~10,000 writes/s.
        # The server keeps trailing entries behind each snapshot, so a follower that
        # installed an older one catches up from the log.
        nonlocal snapshots_taken, installed_after
        if installed_after is None and cluster[3].log.snapshot_index > 0:
            installed_after = snapshots_taken
        if isinstance(message, InstallSnapshot) and snapshots_taken < 200:
            leader.propose(b"more")
            if leader.snapshot is not None and leader.log.applied > leader.snapshot[0].index:
                take_snapshot(cluster, 1, 1000, keep=100)
                snapshots_taken += 1
        return message

    cluster.filter = write_and_snapshot_while_chunks_travel  # type: ignore[assignment]
    cluster.tick(20)
    assert installed_after is not None, "the transfer never completed under steady snapshots"
    assert 5 < installed_after < 200, installed_after
    cluster.filter = None
    cluster.tick(10)
    assert cluster.log_of(3)[-1] == cluster.log_of(1)[-1]


def test_a_stalled_snapshot_transfer_resends_one_chunk_per_heartbeat() -> None:
    cluster = Cluster(
        [1, 2, 3], snapshot_chunk_bytes=64, snapshot_chunks_inflight_max=8, heartbeat_ticks=2
    )
    follower_3_behind_a_snapshot(cluster, 5000)
    # The link to 3 now loses every chunk: nothing is ever acknowledged.
    lost: list[InstallSnapshot] = []

    def lose_chunks(message: object) -> object:
        if isinstance(message, InstallSnapshot):
            lost.append(message)
            return None
        return message

    cluster.filter = lose_chunks  # type: ignore[assignment]
    cluster.tick(2)  # the first heartbeat starts the transfer with a full window
    assert len(lost) == 8
    per_heartbeat = []
    for _ in range(10):
        before = len(lost)
        cluster.tick(2)
        per_heartbeat.append(len(lost) - before)
    assert max(per_heartbeat) <= 1, f"chunks resent per stalled heartbeat: {per_heartbeat}"
    assert sum(per_heartbeat) >= 5, "a stalled transfer must keep retrying"
    assert cluster.leader() == 1


# --- examined: the lease promise outlives a cleared leader_id -----------------------------
def test_a_late_higher_term_answer_does_not_cancel_the_lease_promise_6_4_1() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    follower = cluster[2]
    assert follower.leader_id == 1
    # A late answer from an election this node once ran, at a higher term, clears leader_id.
    follower.step(RequestVoteResponse(to=2, term=follower.term + 1, from_id=3, granted=False))
    assert follower.leader_id is None
    cluster.process()
    cluster.in_flight.clear()
    follower.step(
        RequestVote(
            to=2,
            term=follower.term + 1,
            candidate_id=3,
            last_log_index=follower.log.last_index + 10,
            last_log_term=follower.term + 1,
        )
    )
    ready = follower.ready()
    grants = [
        m
        for m in ready.messages + ready.messages_after_persist
        if isinstance(m, RequestVoteResponse) and m.granted
    ]
    follower.advance(ready)
    assert not grants, "voted while the leader it heard may still hold a lease"


# --- examined: repeated transfer requests do not keep a cut-off leader in office -----------
@pytest.mark.parametrize("targets", [[2], [2, 3]])
def test_repeated_transfer_requests_do_not_postpone_check_quorum(targets: list[int]) -> None:
    cluster = Cluster([1, 2, 3], election_timeout_ticks=10)
    cluster.campaign(1)
    cluster.isolate(1)
    leader = cluster[1]
    leader.transfer_leadership(targets[0])
    for tick in range(40):
        if leader.role != "leader":
            break
        if tick % 5 == 4:  # short of the abort, which would let a repeat start over
            leader.transfer_leadership(targets[tick % len(targets)])
        leader.tick()
        cluster.process()
    assert leader.role != "leader", "a leader cut off from the quorum never stepped down"


def test_a_follower_restarted_mid_transfer_gets_the_snapshot_from_the_start() -> None:
    cluster = Cluster([1, 2, 3], snapshot_chunk_bytes=64, snapshot_chunks_inflight_max=2)
    follower_3_behind_a_snapshot(cluster, 1000)
    chunks = 0

    def crash_after_some_chunks(message: object) -> object:
        nonlocal chunks
        if isinstance(message, InstallSnapshot) and message.to == 3:
            chunks += 1
            if chunks == 6:
                cluster.crash(3)  # loses its partial copy, which was never durable
                return None
        return message

    cluster.filter = crash_after_some_chunks  # type: ignore[assignment]
    cluster.tick(2)
    cluster.filter = None
    cluster.restart(3)
    cluster.tick(30)
    assert cluster[3].log.snapshot_index > 0, "the transfer never started over"
    assert cluster[3].log.last_index == cluster[1].log.last_index
