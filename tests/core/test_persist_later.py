"""A leader persisting its entries while the next Ready goes on (Ready.may_persist_later,
`advance_before_persisted`, `entries_persisted`; thesis §10.2.1): the entries are handed off
once, the leader counts itself towards a commit only for what it reported durable, and
nothing else may skip the wait."""

from __future__ import annotations

import pytest

from raftkv.core import RaftNode, Ready
from raftkv.core.messages import AppendEntries, AppendEntriesResponse, Entry
from raftkv.errors import InvariantViolation
from tests.core.harness import Cluster


def elected_leader(cluster: Cluster) -> RaftNode:
    cluster.campaign(1)
    assert cluster.leader() == 1
    return cluster[1]


def leader_ready(cluster: Cluster, count: int, tag: str) -> Ready:
    """Propose `count` entries on node 1, without processing, and take its Ready."""
    node = cluster[1]
    for number in range(count):
        node.propose(f"{tag}{number}".encode())
    assert node.has_ready()
    return node.ready()


def test_the_leader_persists_later_and_counts_itself_only_once_reported() -> None:
    cluster = Cluster([1, 2, 3])
    leader = elected_leader(cluster)
    first = leader_ready(cluster, 3, "a")
    assert first.may_persist_later and [e.data for e in first.entries] == [b"a0", b"a1", b"a2"]
    # Started, not durable: the next Ready hands off only what came since.
    cluster.logs[1].append(first.entries)
    leader.advance_before_persisted(first)
    second = leader_ready(cluster, 2, "b")
    assert [e.data for e in second.entries] == [b"b0", b"b1"]
    cluster.logs[1].append(second.entries)
    leader.advance_before_persisted(second)
    # One follower acknowledges everything; the other hears nothing. The leader has not
    # reported its own disk: one voter of three holds the entries, nothing commits.
    committed_before = leader.log.committed
    cluster.cut.add((1, 3))
    for message in first.messages + second.messages:
        if message.to == 2:
            cluster[2].step(message)
    node2 = cluster[2]
    while node2.has_ready():
        ready = node2.ready()
        cluster.logs[2].append(ready.entries)
        for message in ready.messages_after_persist:
            leader.step(message)
        node2.advance(ready)
    assert leader.log.committed == committed_before
    # The first write ends: the leader and node 2 hold a0..a2, a majority.
    last = first.entries[-1]
    leader.entries_persisted(last.index, last.term)
    assert leader.log.committed == last.index
    # A report for an index the log no longer holds that way changes nothing.
    leader.entries_persisted(second.entries[-1].index, last.term + 5)
    assert leader.log.committed == last.index
    leader.entries_persisted(second.entries[-1].index, second.entries[-1].term)
    assert leader.log.committed == second.entries[-1].index


def test_only_entries_of_a_durable_term_may_skip_the_wait() -> None:
    cluster = Cluster([1, 2, 3])
    node = cluster[1]
    node.campaign(pre_vote=False)  # a term change: its vote must be durable first
    ready = node.ready()
    assert not ready.may_persist_later
    with pytest.raises(InvariantViolation, match="persisted before advance"):
        node.advance_before_persisted(ready)
    cluster.stables[1].set_hard_state(ready.hard_state)  # type: ignore[arg-type]
    cluster._send(ready.messages + ready.messages_after_persist)
    node.advance(ready)
    cluster.process()
    cluster.deliver()
    assert cluster.leader() == 1
    ready = leader_ready(cluster, 1, "x")
    assert ready.may_persist_later
    node.advance(ready)  # the plain advance stays allowed: the driver waited after all
    # A follower's entries may be persisted later too, its acknowledgement sent once they
    # are durable; not in the Ready that makes the new term its own.
    follower = cluster[2]
    for message in ready.messages:
        if message.to == 2:
            follower.step(message)
    follower_ready = follower.ready()
    assert follower_ready.entries and follower_ready.may_persist_later
    [acknowledgement] = follower_ready.messages_after_persist
    assert isinstance(acknowledgement, AppendEntriesResponse) and acknowledgement.success
    assert acknowledgement.match_index == follower_ready.entries[-1].index
    follower.advance_before_persisted(follower_ready)
    assert follower.log.stable < follower_ready.entries[-1].index
    follower.entries_persisted(follower_ready.entries[-1].index, follower_ready.entries[-1].term)
    assert follower.log.stable == follower_ready.entries[-1].index
    newcomer = cluster[3]
    last = newcomer.log.last_index
    newcomer.step(
        AppendEntries(
            to=3,
            term=node.term + 1,
            leader_id=1,
            prev_log_index=last,
            prev_log_term=newcomer.log.term(last) or 0,
            entries=[Entry(term=node.term, index=last + 1, data=b"y")],
            leader_commit=0,
        )
    )
    newcomer_ready = newcomer.ready()
    assert newcomer_ready.entries and not newcomer_ready.may_persist_later
