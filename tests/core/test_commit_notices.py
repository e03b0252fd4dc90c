"""When followers learn of a commit (RaftConfig.defer_commit_notices): by default with the
next AppendEntries that carries entries, or at the leader's next tick when none comes, or as
soon as the commit reaches an index a follower waits for (`RaftNode.announce_commit`);
with the option off, at once in an AppendEntries of its own."""

from __future__ import annotations

from raftkv.core.messages import AppendEntries
from tests.core.harness import Cluster


def settled(**config: object) -> Cluster:
    """A 3-node cluster whose leader (1) has told everyone of its no-op's commit, just
    after a heartbeat (the next is 3 ticks away)."""
    cluster = Cluster([1, 2, 3], heartbeat_ticks=3, **config)
    cluster.campaign(1)
    cluster.tick(3, only=[1])
    assert all(cluster[i].log.committed == cluster[1].log.committed for i in cluster.ids)
    cluster.delivered.clear()
    return cluster


def commit_only(cluster: Cluster) -> list[AppendEntries]:
    return [m for m in cluster.delivered if isinstance(m, AppendEntries) and not m.entries]


def test_a_commit_rides_on_the_next_entries_and_sends_nothing_of_its_own() -> None:
    cluster = settled()
    first, _ = cluster.propose(1, b"a")
    assert cluster[1].log.committed == first
    assert [cluster[i].log.committed for i in (2, 3)] == [first - 1, first - 1]
    second, _ = cluster.propose(1, b"b")
    carrying = [m for m in cluster.delivered if isinstance(m, AppendEntries) and m.entries]
    assert [
        (m.entries[0].index, m.leader_commit) for m in carrying if m.entries[0].index == second
    ] == [
        (second, first),
        (second, first),
    ]
    assert commit_only(cluster) == []  # no message of their own for either commit so far
    assert [cluster[i].log.committed for i in (2, 3)] == [first, first]
    assert [e.data for e in cluster.applied[2][-1:]] == [b"a"]


def test_with_no_next_entries_the_next_tick_tells_the_commit() -> None:
    cluster = settled()
    index, _ = cluster.propose(1, b"a")
    assert commit_only(cluster) == []
    cluster.tick(1, only=[1])  # not a heartbeat's tick
    told = commit_only(cluster)
    assert sorted((m.to, m.leader_commit) for m in told) == [(2, index), (3, index)]
    assert [cluster[i].log.committed for i in (2, 3)] == [index, index]
    cluster.delivered.clear()
    cluster.tick(1, only=[1])  # told once: nothing more until the heartbeat
    assert commit_only(cluster) == []


def test_a_heartbeat_tick_tells_the_commit_once() -> None:
    cluster = settled()
    cluster.tick(2, only=[1])  # the next tick is the heartbeat's
    index, _ = cluster.propose(1, b"a")
    cluster.delivered.clear()
    cluster.tick(1, only=[1])
    appends = [m for m in cluster.delivered if isinstance(m, AppendEntries)]
    assert sorted((m.to, m.leader_commit) for m in appends) == [(2, index), (3, index)]


def test_an_announced_index_is_told_as_soon_as_it_commits() -> None:
    cluster = settled()
    leader = cluster[1]
    index, _ = leader.propose(b"forwarded")
    # A follower forwarded this proposal and waits for it: told when it commits, later.
    assert not leader.announce_commit(index)
    cluster.process()
    cluster.deliver()
    told = commit_only(cluster)
    assert sorted((m.to, m.leader_commit) for m in told) == [(2, index), (3, index)]
    assert [cluster[i].log.committed for i in (2, 3)] == [index, index]


def test_an_announced_index_already_committed_is_told_in_the_next_ready() -> None:
    cluster = settled()
    index, _ = cluster.propose(1, b"a")
    assert commit_only(cluster) == []
    leader = cluster[1]
    assert leader.announce_commit(index)  # a follower's read was given this index
    assert leader.has_ready()
    cluster.process()
    cluster.deliver()
    assert sorted((m.to, m.leader_commit) for m in commit_only(cluster)) == [
        (2, index),
        (3, index),
    ]


def test_an_announce_with_nothing_untold_sends_nothing() -> None:
    cluster = settled()
    leader = cluster[1]
    assert not leader.announce_commit(leader.log.committed)
    assert not leader.has_ready()
    follower = cluster[2]
    assert not follower.announce_commit(1)  # not the leader: nothing
    assert not follower.has_ready()


def test_told_at_once_when_the_option_is_off() -> None:
    cluster = settled(defer_commit_notices=False)
    index, _ = cluster.propose(1, b"a")
    told = commit_only(cluster)
    assert sorted((m.to, m.leader_commit) for m in told) == [(2, index), (3, index)]
    assert [cluster[i].log.committed for i in (2, 3)] == [index, index]


def test_a_leader_that_steps_down_forgets_what_it_owed() -> None:
    cluster = settled()
    leader = cluster[1]
    index, _ = leader.propose(b"a")
    leader.announce_commit(index + 5)
    cluster.process()
    cluster.deliver()
    leader.become_follower(leader.term + 1, None)
    cluster.process()
    replication = leader.replication
    assert (replication._commit_owed, replication._commit_due, replication._announce_through) == (
        False,
        False,
        0,
    )
