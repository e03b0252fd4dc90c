"""Quorum-first replication (RaftConfig.quorum_first): a lone command proposed while enough
followers are idle and caught up goes at once to as many voters as commit it with the
leader; the other followers get it with the leader's next tick. Anything else (a batch, a
follower with entries in flight, a membership change, a transfer, a commit a follower
waits for) goes to every follower at once, as without it."""

from __future__ import annotations

from raftkv.core import Membership
from raftkv.core.messages import AppendEntries
from tests.core.harness import Cluster


def settled(ids: list[int], quorum_first: bool = True, **config: object) -> Cluster:
    """A cluster led by node 1, every follower caught up, just after a heartbeat (the next
    is 5 ticks away)."""
    cluster = Cluster(ids, heartbeat_ticks=5, quorum_first=quorum_first, **config)
    cluster.campaign(1)
    cluster.tick(5, only=[1])
    leader_last = cluster[1].log.last_index
    assert all(cluster[i].log.last_index == leader_last for i in ids)
    cluster.delivered.clear()
    return cluster


def carriers(cluster: Cluster, index: int) -> list[int]:
    """The nodes an AppendEntries carrying entry `index` was delivered to."""
    return sorted(
        m.to
        for m in cluster.delivered
        if isinstance(m, AppendEntries)
        and m.entries
        and m.entries[0].index <= index <= m.entries[-1].index
    )


def test_a_lone_command_goes_to_one_follower_of_two_and_to_the_other_at_the_next_tick() -> None:
    cluster = settled([1, 2, 3])
    index, _ = cluster.propose(1, b"a")
    assert carriers(cluster, index) == [2]
    assert cluster[1].log.committed == index  # the leader and node 2: a majority
    assert cluster[3].log.last_index == index - 1
    cluster.delivered.clear()
    cluster.tick(1, only=[1])  # not a heartbeat's tick
    assert carriers(cluster, index) == [3]
    told = [m for m in cluster.delivered if isinstance(m, AppendEntries) and m.to == 3]
    assert [m.leader_commit for m in told] == [index]  # with the commit
    assert cluster[3].log.committed == index
    cluster.delivered.clear()
    cluster.tick(1, only=[1])
    assert [m for m in cluster.delivered if isinstance(m, AppendEntries)] == []


def test_the_left_out_follower_gets_a_tick_of_commands_in_one_message() -> None:
    cluster = settled([1, 2, 3])
    indexes = [cluster.propose(1, b"x%d" % n)[0] for n in range(4)]
    assert all(carriers(cluster, index) == [2] for index in indexes)
    cluster.delivered.clear()
    cluster.tick(1, only=[1])
    to_3 = [m for m in cluster.delivered if isinstance(m, AppendEntries) and m.to == 3]
    assert [[e.index for e in m.entries] for m in to_3] == [indexes]  # and no commit alone


def test_five_voters_a_lone_command_goes_to_two_of_four() -> None:
    cluster = settled([1, 2, 3, 4, 5])
    index, _ = cluster.propose(1, b"a")
    assert carriers(cluster, index) == [2, 3]
    assert cluster[1].log.committed == index
    cluster.delivered.clear()
    cluster.tick(1, only=[1])
    assert carriers(cluster, index) == [4, 5]


def test_commands_proposed_together_go_to_every_follower() -> None:
    cluster = settled([1, 2, 3])
    first, _ = cluster[1].propose(b"a")
    second, _ = cluster[1].propose(b"b")
    cluster.process()
    cluster.deliver()
    assert carriers(cluster, first) == [2, 3]
    assert carriers(cluster, second) == [2, 3]


def test_while_a_follower_has_entries_in_flight_a_command_goes_to_every_follower() -> None:
    cluster = settled([1, 2, 3])
    first, _ = cluster[1].propose(b"a")
    cluster.process()  # to node 2, not yet delivered
    second, _ = cluster[1].propose(b"b")
    cluster.process()
    cluster.deliver()
    assert carriers(cluster, first) == [2, 3]  # node 3 gets the first one with the second
    assert carriers(cluster, second) == [2, 3]


def test_the_follower_chosen_stays_chosen_while_it_keeps_up() -> None:
    cluster = settled([1, 2, 3])
    for n in range(3):
        index, _ = cluster.propose(1, b"x%d" % n)
        assert carriers(cluster, index) == [2]
        cluster.tick(1, only=[1])  # node 3 catches up each time, and is idle again
        assert carriers(cluster, index) == [2, 3]


def test_a_follower_that_does_not_answer_costs_the_command_a_tick_then_is_passed_over() -> None:
    cluster = settled([1, 2, 3])
    cluster.crash(2)
    index, _ = cluster.propose(1, b"a")
    assert cluster[1].log.committed == index - 1  # it went to node 2 alone
    cluster.tick(1, only=[1])
    assert cluster[1].log.committed == index  # node 3 got it with the tick
    cluster.delivered.clear()
    second, _ = cluster.propose(1, b"b")
    assert carriers(cluster, second) == [3]  # node 2 has an entry in flight
    assert cluster[1].log.committed == second


def test_a_membership_change_goes_to_every_follower() -> None:
    cluster = settled([1, 2, 3])
    index, _ = cluster[1].propose_membership(
        Membership(voters=frozenset({1, 2, 3}), learners=frozenset({4}))
    )
    cluster.process()
    cluster.deliver()
    assert carriers(cluster, index) == [2, 3]


def test_a_command_a_follower_waits_for_goes_to_every_follower() -> None:
    """A follower's forwarded write: it applies the entry itself, so it must hold it."""
    cluster = settled([1, 2, 3])
    index, _ = cluster[1].propose(b"forwarded by 3")
    cluster[1].announce_commit(index)
    cluster.process()
    cluster.deliver()
    assert carriers(cluster, index) == [2, 3]


def test_two_voters_a_command_goes_to_the_one_follower() -> None:
    cluster = settled([1, 2])
    index, _ = cluster.propose(1, b"a")
    assert carriers(cluster, index) == [2]
    assert cluster[1].log.committed == index


def test_without_it_every_follower_gets_every_command_at_once() -> None:
    cluster = settled([1, 2, 3], quorum_first=False)
    index, _ = cluster.propose(1, b"a")
    assert carriers(cluster, index) == [2, 3]


def test_a_follower_left_out_that_waits_for_a_committed_index_gets_it_at_once() -> None:
    """A follower's read: the leader answers it its commit index, which the follower waits
    to apply; left out of the writes since the last tick, it must not wait for the next."""
    cluster = settled([1, 2, 3])
    first, _ = cluster.propose(1, b"a")
    cluster[1].propose(b"b")  # tells node 2 of the first's commit: none owed
    cluster.process()
    assert cluster[1].log.committed == first and cluster[3].log.last_index == first - 1
    assert cluster[1].announce_commit(first)  # the driver has a Ready to make
    cluster.process()
    cluster.deliver()
    assert carriers(cluster, first) == [2, 3]
    assert cluster[3].log.committed >= first


def test_a_follower_left_out_does_not_chase_each_command_with_its_acknowledgements() -> None:
    """Its acknowledgement of a tick's batch arrives while the next lone command is out to
    the chosen follower: sent that command at once, it would get every next one a step
    behind, a message and a sync per write after all."""
    cluster = settled([1, 2, 3])
    first, _ = cluster.propose(1, b"a")
    cluster[1].tick()
    cluster.process()  # the tick's batch to node 3, not yet delivered
    second, _ = cluster[1].propose(b"b")
    cluster.process()  # to node 2 alone
    cluster.deliver()  # node 3 acknowledges the batch while node 2 holds the second
    assert carriers(cluster, first) == [2, 3]
    assert carriers(cluster, second) == [2]
    assert cluster[1].log.committed == second
    cluster.delivered.clear()
    cluster.tick(1, only=[1])
    assert carriers(cluster, second) == [3]


def test_commits_told_at_once_reach_a_follower_left_out_only_with_its_entries() -> None:
    """With `defer_commit_notices` off the commit goes out at once, but not to a follower
    left out: that would send it the entries it lacks with every write."""
    cluster = settled([1, 2, 3], defer_commit_notices=False)
    index, _ = cluster.propose(1, b"a")
    to_3 = [m for m in cluster.delivered if isinstance(m, AppendEntries) and m.to == 3]
    assert to_3 == []
    told_2 = [m for m in cluster.delivered if isinstance(m, AppendEntries) and m.to == 2]
    assert [m.leader_commit for m in told_2 if not m.entries] == [index]
    cluster.delivered.clear()
    cluster.tick(1, only=[1])
    assert carriers(cluster, index) == [3]
    assert cluster[3].log.committed == index
