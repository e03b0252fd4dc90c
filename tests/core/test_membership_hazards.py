"""The classic membership-change hazards (Raft thesis §4.2): a removed server that keeps
campaigning, and a new server with an empty log."""

from __future__ import annotations

import pytest

from raftkv.core import Membership
from raftkv.core.progress import Progress
from raftkv.storage import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from tests.core.harness import Cluster


def founded_by(voters: set[int], everyone: list[int]) -> Cluster:
    cluster = Cluster(everyone, bootstrap=False)
    for node_id in everyone:
        cluster[node_id].bootstrap(Membership(voters=frozenset(voters)))
    cluster.process()
    return cluster


def test_removed_server_that_keeps_campaigning_does_not_disrupt_the_cluster() -> None:
    cluster = founded_by({1, 2, 3}, [1, 2, 3])
    cluster.campaign(1)
    cluster.propose(1, b"before")
    # Node 3 is cut off, then removed: it never learns of its removal.
    cluster.isolate(3)
    cluster[1].propose_membership(
        Membership(voters=frozenset({1, 2}), voters_outgoing=frozenset({1, 2, 3}))
    )
    cluster.process()
    cluster.deliver()
    cluster.tick(10)  # 1 and 2 are a majority of both halves: it commits without 3
    assert cluster[1].membership.voters == frozenset({1, 2})
    term = cluster[1].term
    cluster.heal()
    cluster.cut |= {(1, 3), (3, 1)}  # 3 only reaches 2 now, campaigning in vain
    for round_number in range(20):
        cluster.tick(5)
        cluster.propose(1, b"w%d" % round_number)
    assert cluster.leader() == 1 and cluster[1].term == term, "the removed node disrupted"
    assert cluster[2].term == term
    assert cluster[3].role != "leader"
    assert cluster[3].term == term, "pre-vote kept the removed node from bumping terms"


def test_new_server_with_an_empty_log_does_not_stall_commitment() -> None:
    cluster = founded_by({1, 2, 3}, [1, 2, 3, 4])
    cluster.campaign(1)
    for k in range(200):
        cluster.propose(1, b"history-%d" % k)
    # Node 4 joins as a learner; it cannot receive anything yet (slow link).
    cluster.cut |= {(1, 4), (4, 1)}
    cluster[1].propose_membership(Membership(voters=frozenset({1, 2, 3}), learners=frozenset({4})))
    cluster.process()
    cluster.deliver()
    committed = cluster[1].log.committed
    index, _ = cluster.propose(1, b"while the learner catches up")
    assert cluster[1].log.committed >= index > committed, "a learner must not count for commit"
    assert cluster[4].log.last_index <= 1
    # Once the link works it catches up, and only then would it be promoted.
    cluster.heal()
    cluster.tick(20)
    assert cluster.log_of(4) == cluster.log_of(1)


def test_a_leader_that_lost_office_while_removing_itself_can_still_finish_the_change() -> None:
    """Leader 3 removes itself: {2,3} -> joint {2}/{2,3} (committed) -> C_new {2}, which
    only 3 holds when it loses leadership. Node 2 cannot win: the joint configuration needs
    3's vote, and 3's log is more up-to-date. Only 3 can finish the change, so it must be
    allowed to campaign while its removal is uncommitted (as etcd, which applies a
    configuration at commit, allows); it then commits C_new with 2's vote and steps down.
    Found by the whole-node simulator (seed 36, 3 nodes): no leader, ever."""
    cluster = founded_by({2, 3}, [2, 3])
    cluster.campaign(3)
    assert cluster.leader() == 3
    cluster.propose(3, b"before")
    # Node 2 hears of the joint configuration and its commit, never of C_new.
    joint = Membership(voters=frozenset({2}), voters_outgoing=frozenset({2, 3}))

    def drop_c_new(message: object) -> object | None:
        entries = getattr(message, "entries", None) or []
        if any(entry.index > joint_index for entry in entries):
            return None
        return message

    joint_index = cluster[3].log.last_index + 1
    cluster.filter = drop_c_new  # type: ignore[assignment]
    cluster[3].propose_membership(joint)
    cluster.process()
    cluster.deliver()
    cluster.tick(3)
    assert cluster[3].log.committed >= joint_index
    assert cluster[3].membership.voters == frozenset({2}) and not cluster[3].membership.is_joint
    assert cluster[2].membership.is_joint, "node 2 never got C_new"
    # Node 3 loses office before C_new commits (it hears nothing from node 2 for a while).
    cluster.isolate(3)
    cluster.tick(60)
    assert cluster[3].role != "leader"
    cluster.heal()
    cluster.filter = None
    cluster.tick(200)
    assert cluster.leader() == 2, "nobody could finish the change"
    assert cluster[2].membership == Membership(voters=frozenset({2}))
    assert cluster[3].role != "leader"


def test_a_node_that_holds_no_configuration_votes_for_nobody() -> None:
    """Node 2's disk is replaced (an id re-added after a removal, or a rebuilt node) while
    node 1 lags: node 1 still counts 2 as a voter, and an empty log is never more
    up-to-date than anyone's. Granting would elect a leader without committed entries.
    Found by the whole-node simulator (seed 57, 3 nodes: Leader Completeness)."""
    cluster = founded_by({1, 2, 3}, [1, 2, 3])
    cluster.campaign(3)
    cluster.isolate(1)
    for k in range(5):
        cluster.propose(3, b"committed-%d" % k)
    committed = cluster[3].log.committed
    assert committed > cluster[1].log.last_index
    # Node 2 comes back with nothing: no term, no log, no configuration.
    cluster.logs[2] = MemoryLogStore()
    cluster.stables[2] = MemoryStableStore()
    cluster.snapshots[2] = MemorySnapshotStore()
    cluster.nodes[2] = cluster._new_node(2)
    assert not cluster[2].membership.members
    cluster.isolate(3)
    cluster.cut -= {(1, 2), (2, 1)}
    cluster.campaign(1)
    assert cluster[1].role != "leader", "elected with the vote of a node that knows nothing"
    cluster.tick(30, only=[1, 2])
    assert cluster[1].role != "leader" and cluster[2].role != "leader"


def removed_before_acknowledging_its_removal(cluster: Cluster) -> int:
    """Node 2 acknowledges the joint configuration that removes it, then is gone (a removed
    node stops on seeing its removal) before it acknowledges the final one. Returns the
    joint entry's index, where the leader's `match` for node 2 stays."""
    cluster.campaign(1)
    for k in range(20):
        cluster.propose(1, b"before-%d" % k)
    joint_index = cluster[1].log.last_index + 1

    def drop_c_new(message: object) -> object | None:
        entries = getattr(message, "entries", None) or []
        if getattr(message, "to", None) == 2 and any(e.index > joint_index for e in entries):
            return None
        return message

    cluster.filter = drop_c_new  # type: ignore[assignment]
    cluster[1].propose_membership(
        Membership(voters=frozenset({1, 3}), voters_outgoing=frozenset({1, 2, 3}))
    )
    cluster.process()
    cluster.deliver()
    cluster.tick(3)
    assert cluster[1].membership == Membership(voters=frozenset({1, 3}))
    assert cluster[1].log.committed >= cluster[1].membership_index
    assert cluster[2].log.last_index == joint_index, "node 2 holds the joint entry only"
    cluster.crash(2)
    cluster.filter = None
    return joint_index


def come_back_empty(cluster: Cluster, node_id: int) -> None:
    """`node_id` starts again with an empty data dir (as `raft-node --join` on a new disk)."""
    cluster.logs[node_id] = MemoryLogStore()
    cluster.stables[node_id] = MemoryStableStore()
    cluster.snapshots[node_id] = MemorySnapshotStore()
    cluster.restart(node_id)
    assert cluster[node_id].log.last_index == 0


@pytest.mark.timeout(20)  # one of the bugs was a livelock: the harness never went quiet
def test_a_removed_node_that_comes_back_empty_is_added_back_and_catches_up() -> None:
    """As raft-chaos's membership fault does (seed 3, on a loaded machine): the removed
    node starts again with an empty data dir and asks to join; the leader adds it. The
    leader still held its progress, waiting for the acknowledgement of its removal (its
    farewell, `_say_farewell`), `match` at the joint entry. Before the join the newcomer
    rejected the messages meant for the old node at that match point and the leader sent
    them again at once, forever (the harness never went quiet; on a network, as fast as
    it goes); after it, every probe, since a probe never goes below match + 1. It never
    received an entry and was never promoted."""
    cluster = founded_by({1, 2, 3}, [1, 2, 3])
    joint_index = removed_before_acknowledging_its_removal(cluster)
    assert cluster[1].peer_status()[2].match == joint_index, "waiting for its farewell"
    come_back_empty(cluster, 2)
    cluster.propose(1, b"between")
    cluster.tick(3)
    assert cluster[2].log.last_index == 0
    cluster[1].propose_membership(Membership(voters=frozenset({1, 3}), learners=frozenset({2})))
    cluster.process()
    cluster.deliver()
    for k in range(5):
        cluster.propose(1, b"after-%d" % k)
        cluster.tick(3)
    assert cluster.log_of(2) == cluster.log_of(1), "the re-added node never caught up"
    assert cluster[1].peer_status()[2].match == cluster[1].log.last_index


@pytest.mark.timeout(20)
def test_a_node_added_back_under_its_old_id_is_replicated_from_scratch() -> None:
    """The same removed node, added back (as a learner) while still down, then started
    with an empty log: the leader still held its old progress, `match` at the joint entry,
    and a probe never goes below match + 1, so the newcomer rejected every probe and never
    received an entry; in raft-chaos it was never promoted. A member that was not one
    before is a new incarnation now: its progress starts afresh."""
    cluster = founded_by({1, 2, 3}, [1, 2, 3])
    joint_index = removed_before_acknowledging_its_removal(cluster)
    cluster.propose(1, b"between")
    cluster.tick(3)
    cluster[1].propose_membership(Membership(voters=frozenset({1, 3}), learners=frozenset({2})))
    cluster.process()
    cluster.deliver()
    assert cluster[1].peer_status()[2].match < joint_index
    come_back_empty(cluster, 2)
    for k in range(5):
        cluster.propose(1, b"after-%d" % k)
        cluster.tick(3)
    assert cluster.log_of(2) == cluster.log_of(1), "the re-added node never caught up"
    assert cluster[1].peer_status()[2].match == cluster[1].log.last_index


def test_a_probe_rejected_at_or_below_match_waits_for_the_next_heartbeat() -> None:
    """A follower that rejects an index it acknowledged no longer holds that log. The probe
    cannot go below match + 1; sending it again at once would repeat forever."""
    progress = Progress(11, inflight_max=4)
    progress.match = 10
    progress.sent_entries(10)  # the probe at prev_log_index 10
    assert not progress.decrease_to(10, 0)
    assert (progress.next, progress.is_paused()) == (11, True)
    progress.update_match(10)  # (a normal back-off still works above match)
    progress.next = 15
    progress.sent_entries(14)
    assert progress.decrease_to(14, 12) and progress.next == 13
