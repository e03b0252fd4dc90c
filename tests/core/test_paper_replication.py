"""Paper tests for log replication (§5.3), the commitment rule (§5.4.2, Figure 8),
application, persistence discipline, pipelining and batching."""

from __future__ import annotations

import pytest

from raftkv.core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
)
from raftkv.core.progress import ProgressState
from raftkv.errors import InvariantViolation
from tests.core.harness import Cluster


def normal_indexes(entries: list[Entry]) -> list[int]:
    return [e.index for e in entries if e.kind == EntryKind.NORMAL]


def test_append_entries_carries_the_seed_fields_and_commit_advances_on_majority_5_3() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    cluster.delivered.clear()
    index, term = cluster.propose(1, b"set x=1")
    appends = [m for m in cluster.delivered if isinstance(m, AppendEntries) and m.entries]
    assert {m.to for m in appends} == {2, 3}
    first = appends[0]
    assert (first.term, first.leader_id, first.prev_log_index) == (term, 1, index - 1)
    assert first.entries[0].data == b"set x=1"
    assert cluster[1].log.committed == index
    # Followers learn the commit index from leader_commit (with the next entries or, none
    # coming, at the leader's next tick: tests/core/test_commit_notices.py) and apply in
    # order, exactly once.
    cluster.tick(1, only=[1])
    for node_id in cluster.ids:
        assert cluster[node_id].log.committed == index
        applied = [e.index for e in cluster.applied[node_id]]
        assert applied == list(range(1, index + 1))


def test_commit_needs_a_majority_5_3() -> None:
    cluster = Cluster([1, 2, 3, 4, 5])
    cluster.campaign(1)
    committed = cluster[1].log.committed
    cluster.partition([1, 2], [3, 4, 5])
    cluster.propose(1, b"x")
    assert cluster[1].log.committed == committed
    cluster.heal()
    cluster.tick(3)
    assert cluster[1].log.committed == committed + 1


def test_consistency_check_rejects_missing_prev_entry_5_3() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    follower = cluster[2]
    term = follower.term
    follower.step(
        AppendEntries(
            to=2,
            term=term,
            leader_id=1,
            prev_log_index=10,
            prev_log_term=term,
            entries=[Entry(term, 11)],
            leader_commit=0,
        )
    )
    reply = follower.ready().messages_after_persist[0]
    assert isinstance(reply, AppendEntriesResponse)
    assert not reply.success and reply.match_index == 10
    assert follower.log.last_index == 2  # nothing appended past the gap


def test_conflicting_suffix_is_truncated_5_3() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False)
    cluster.campaign(1)
    # Node 1 leads term 2 but its entries only reach node 1 itself.
    cluster.isolate(1)
    cluster.propose(1, b"lost-1")
    cluster.propose(1, b"lost-2")
    assert cluster[1].log.last_index == 4
    cluster.tick(60, only=[2, 3])
    leaders = [i for i in cluster.leaders() if i != 1]
    assert leaders, "nodes 2 and 3 elect a new leader"
    new_leader = leaders[0]
    cluster.propose(new_leader, b"kept")
    cluster.heal()
    cluster.tick(10)
    assert cluster.leader() == new_leader
    log_1 = [e.data for e in cluster[1].log.entries if e.kind == EntryKind.NORMAL]
    assert log_1 == [b"kept"], "the deposed leader's uncommitted entries were overwritten"
    assert cluster.log_of(1) == cluster.log_of(new_leader)


def test_committed_entry_is_never_truncated() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    cluster.propose(1, b"x")
    follower = cluster[2]
    committed = follower.log.committed
    with pytest.raises(InvariantViolation, match="truncating committed"):
        follower.log.merge([Entry(term=99, index=committed)])


def test_fast_backtracking_repairs_long_divergent_log_in_few_round_trips_5_3() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    cluster.campaign(1)
    # Node 3 alone collects 300 uncommitted entries over three terms as an isolated leader.
    cluster.isolate(3)
    for _ in range(3):
        cluster[3].campaign(pre_vote=False)
        cluster.process()
        cluster[3]._become_leader([3])  # force: a minority leader, as if from older terms
        cluster.process()
        for k in range(100):
            cluster[3].propose(b"stale-%d" % k)
        cluster.process()
    cluster.in_flight.clear()
    # Meanwhile the majority commits 200 entries in a later term.
    cluster.campaign(1) if cluster[1].role != "leader" else None
    cluster[1].campaign(pre_vote=False)
    cluster.process()
    cluster.deliver()
    cluster[1].term = max(cluster[1].term, cluster[3].term + 1)
    leader = cluster.leaders()[0] if cluster.leaders() else 1
    cluster.tick(30, only=[1, 2])
    leader = next(i for i in cluster.leaders() if i != 3)
    for k in range(200):
        cluster[leader].propose(b"good-%d" % k)
    cluster.process()
    cluster.deliver()
    cluster.heal()
    cluster.delivered.clear()
    cluster.tick(5)
    rejects = [
        m
        for m in cluster.delivered
        if isinstance(m, AppendEntriesResponse) and m.from_id == 3 and not m.success
    ]
    assert cluster.log_of(3) == cluster.log_of(leader)
    assert len(rejects) <= 6, f"{len(rejects)} round trips to repair node 3"


def test_leader_counts_only_its_own_term_entries_figure_8_5_4_2() -> None:
    """Figure 8 (c): a new leader has re-replicated an entry of an older term to a majority;
    it must not count that as committed, since a server that holds a later-term entry there
    (S5) could still win an election and overwrite it."""
    cluster = Cluster([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False)
    cluster.campaign(1)
    # Term 2: leader 1 replicates an entry to node 2 only, then crashes.
    cluster.partition([1, 2], [3, 4, 5])
    index, old_term = cluster.propose(1, b"old-term")
    assert cluster[2].log.last_index == index
    cluster.crash(1)
    # Term 3: node 5 leads with votes of 3 and 4 and appends its own entry at `index`,
    # which reaches nobody.
    cluster.partition([5, 3, 4], [2])
    cluster.filter = lambda m: None if isinstance(m, AppendEntries) else m
    cluster.campaign(5)
    assert cluster[5].role == "leader"
    cluster.isolate(5)
    cluster.propose(5, b"term-3")
    assert cluster[5].log.term(index) == cluster[5].term
    cluster.crash(5)
    # Term 4: node 1 returns and wins with votes of 2 and 3; its AppendEntries are held back.
    cluster.restart(1)
    cluster.heal()
    cluster.cut |= {(1, 4), (4, 1)}
    for _ in range(3):
        if cluster[1].role != "leader":
            cluster[1].campaign(pre_vote=False)
            cluster.process()
            cluster.deliver()
    leader = cluster[1]
    assert leader.role == "leader" and leader.term > 3
    # Node 3 now gets the term-2 entry alone: the entry sits on a majority (1, 2, 3).
    leader.step(
        AppendEntriesResponse(to=1, term=leader.term, from_id=3, success=True, match_index=index)
    )
    leader.step(
        AppendEntriesResponse(to=1, term=leader.term, from_id=2, success=True, match_index=index)
    )
    assert leader.log.term(index) == old_term
    assert leader.log.committed < index, "an older term's entry was committed by counting"


def test_old_term_entry_is_not_committed_by_replica_count_alone_figure_8() -> None:
    cluster = Cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    cluster.campaign(1)
    leader = cluster[1]
    # Pretend the log holds an entry of an older term at the end that a majority stores.
    old_index = leader.log.last_index + 1
    old_term = leader.term - 1
    leader.log.append([Entry(old_term, old_index)])
    leader.log.stable = old_index
    progress = leader.replication.progress
    progress[2].match = old_index
    leader.replication._maybe_commit()
    assert leader.log.committed < old_index
    # With an entry of the current term after it on a majority, both commit.
    leader.log.append([Entry(leader.term, old_index + 1)])
    leader.log.stable = old_index + 1
    progress[2].match = old_index + 1
    leader.replication._maybe_commit()
    assert leader.log.committed == old_index + 1


def test_new_leader_appends_noop_of_its_term_at_once_5_4_2() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(2)
    last = cluster[2].log.entries[-1]
    assert last.kind == EntryKind.NOOP and last.term == cluster[2].term
    assert cluster[2].log.committed == last.index


def test_acknowledgements_wait_for_persistence_but_leader_appends_do_not() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    leader = cluster[1]
    leader.propose(b"x")
    ready = leader.ready()
    assert ready.entries and ready.must_sync
    assert any(isinstance(m, AppendEntries) for m in ready.messages)
    leader.advance(ready)
    follower = cluster[2]
    for message in ready.messages:
        if message.to == 2:
            follower.step(message)
    follower_ready = follower.ready()
    assert follower_ready.entries and follower_ready.must_sync
    assert not follower_ready.messages
    assert any(isinstance(m, AppendEntriesResponse) for m in follower_ready.messages_after_persist)


def test_leader_does_not_count_itself_before_its_own_disk_holds_the_entry() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    leader = cluster[1]
    index, _ = leader.propose(b"x")
    leader.replication.progress[2].match = index  # a follower acked...
    leader.replication._maybe_commit()
    assert leader.log.committed < index  # ...but 1 of 3 durable copies is no majority
    ready = leader.ready()
    leader.advance(ready)  # now the leader's own copy is durable
    assert leader.log.committed == index


def test_many_proposals_travel_in_one_message_bounded_in_bytes() -> None:
    cluster = Cluster([1, 2, 3], message_bytes_max=10_000)
    cluster.campaign(1)
    leader = cluster[1]
    for k in range(50):
        leader.propose(b"v%03d" % k)
    ready = leader.ready()
    to_2 = [m for m in ready.messages if isinstance(m, AppendEntries) and m.to == 2]
    assert len(to_2) == 1 and len(to_2[0].entries) == 50
    leader.advance(ready)
    cluster.process()
    cluster.deliver()
    for _ in range(20):
        leader.propose(b"x" * 3000)
    ready = leader.ready()
    to_2 = [m for m in ready.messages if isinstance(m, AppendEntries) and m.to == 2]
    assert len(to_2) > 1
    assert all(sum(len(e.data) for e in m.entries) <= 10_000 for m in to_2)


def test_pipelining_window_is_bounded_and_probe_sends_one_at_a_time() -> None:
    cluster = Cluster([1, 2, 3], inflight_messages_max=4, message_bytes_max=100)
    cluster.campaign(1)
    leader = cluster[1]
    assert leader.replication.progress[2].state is ProgressState.REPLICATE
    for _ in range(40):
        leader.propose(b"y" * 90)
    ready = leader.ready()
    to_2 = [m for m in ready.messages if isinstance(m, AppendEntries) and m.to == 2]
    assert len(to_2) == 4, "replicate mode: a bounded window of messages in flight"
    leader.advance(ready)
    # A reject sends the follower back to probing: one message until it answers.
    progress = leader.replication.progress[2]
    leader.step(
        AppendEntriesResponse(
            to=1,
            term=leader.term,
            from_id=2,
            success=False,
            match_index=to_2[-1].prev_log_index,
            conflict_index=progress.match,
            conflict_term=leader.log.term(progress.match) or 0,
        )
    )
    assert progress.state is ProgressState.PROBE
    ready = leader.ready()
    assert len([m for m in ready.messages if m.to == 2]) == 1
    leader.advance(ready)


def test_lost_messages_are_retransmitted_10_percent_drops() -> None:
    import random

    rng = random.Random(11)
    cluster = Cluster([1, 2, 3, 4, 5], seed=11)
    cluster.campaign(1)
    cluster.filter = lambda m: None if rng.random() < 0.10 else m
    proposed = 0
    for round_number in range(200):
        leaders = cluster.leaders()
        if leaders:
            try:
                cluster[leaders[0]].propose(b"w%d" % round_number)
                proposed += 1
            except Exception:
                pass
        cluster.tick()
    cluster.filter = None
    cluster.tick(40)
    leader = cluster.leader()
    final = cluster.log_of(leader)
    for node_id in cluster.ids:
        assert cluster.log_of(node_id) == final
        assert cluster[node_id].log.committed == cluster[leader].log.committed
    assert proposed > 150


def test_crash_and_restart_of_all_nodes_keeps_every_committed_entry() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    for k in range(10):
        cluster.propose(1, b"k%d" % k)
    committed = [(e.index, e.term, e.data) for e in cluster.applied[1]]
    for node_id in cluster.ids:
        cluster.crash(node_id)
    for node_id in cluster.ids:
        cluster.restart(node_id)
    cluster.tick(60)
    leader = cluster.leader()
    cluster.propose(leader, b"after")
    for node_id in cluster.ids:
        replayed = [(e.index, e.term, e.data) for e in cluster.applied[node_id]]
        assert replayed[: len(committed)] == committed
