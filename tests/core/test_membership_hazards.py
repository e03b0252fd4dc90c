"""The classic membership-change hazards (Raft thesis §4.2): a removed server that keeps
campaigning, and a new server with an empty log."""

from __future__ import annotations

from raftkv.core import Membership
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
