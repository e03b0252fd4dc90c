"""Each invariant check on its own, fed states that break it."""

from __future__ import annotations

import random

import pytest

from raftkv.core import Entry, EntryKind, Membership, RaftConfig, RaftNode, Role
from raftkv.sim import InvariantChecker, InvariantViolation

MEMBERSHIP = Membership(voters=frozenset({1, 2, 3}))


def node(node_id: int, term: int = 1, role: Role = Role.FOLLOWER) -> RaftNode:
    raft = RaftNode(RaftConfig(node_id=node_id), random.Random(node_id))
    raft.bootstrap(MEMBERSHIP)
    raft.term = term
    raft.role = role
    return raft


def append(raft: RaftNode, term: int, data: bytes = b"") -> Entry:
    entry = Entry(term=term, index=raft.log.last_index + 1, kind=EntryKind.NORMAL, data=data)
    raft.log.append([entry])
    return entry


def test_two_leaders_in_one_term_break_election_safety() -> None:
    checker = InvariantChecker()
    checker.observe(1, node(1, term=5, role=Role.LEADER))
    with pytest.raises(InvariantViolation, match="Election Safety"):
        checker.observe(2, node(2, term=5, role=Role.LEADER))


def test_the_same_leader_seen_again_is_fine() -> None:
    checker = InvariantChecker()
    leader = node(1, term=5, role=Role.LEADER)
    checker.observe(1, leader)
    append(leader, 5)
    checker.observe(1, leader)
    assert checker.leader_of_term == {5: 1}


def test_a_leader_truncating_its_log_breaks_append_only() -> None:
    checker = InvariantChecker()
    leader = node(1, term=2, role=Role.LEADER)
    append(leader, 2)
    append(leader, 2)
    checker.observe(1, leader)
    del leader.log.entries[-1]
    with pytest.raises(InvariantViolation, match="Leader Append-Only"):
        checker.observe(1, leader)


def test_a_leader_replacing_an_entry_breaks_append_only() -> None:
    checker = InvariantChecker()
    leader = node(1, term=2, role=Role.LEADER)
    append(leader, 2, b"a")
    checker.observe(1, leader)
    leader.log.entries[-1] = Entry(term=2, index=leader.log.last_index, data=b"b")
    append(leader, 2)
    with pytest.raises(InvariantViolation, match="Leader Append-Only"):
        checker.observe(1, leader)


def test_same_index_and_term_with_other_content_breaks_log_matching() -> None:
    checker = InvariantChecker()
    checker.on_entries(1, 1, [Entry(term=2, index=2, data=b"a")])
    checker.on_entries(2, 1, [Entry(term=2, index=2, data=b"a")])
    with pytest.raises(InvariantViolation, match="Log Matching"):
        checker.on_entries(3, 1, [Entry(term=2, index=2, data=b"b")])


def test_same_entry_after_another_previous_term_breaks_log_matching() -> None:
    checker = InvariantChecker()
    checker.on_entries(1, 1, [Entry(term=3, index=3)])
    with pytest.raises(InvariantViolation, match="previous term"):
        checker.on_entries(2, 2, [Entry(term=3, index=3)])


def test_different_commands_applied_at_one_index_break_state_machine_safety() -> None:
    checker = InvariantChecker()
    checker.on_apply(1, Entry(term=2, index=5, data=b"a"), "hash")
    with pytest.raises(InvariantViolation, match="State Machine Safety"):
        checker.on_apply(2, Entry(term=3, index=5, data=b"b"), "hash")


def test_different_state_after_one_index_breaks_state_machine_safety() -> None:
    checker = InvariantChecker()
    checker.on_apply(1, Entry(term=2, index=5, data=b"a"), "one")
    with pytest.raises(InvariantViolation, match="state hash"):
        checker.on_apply(2, Entry(term=2, index=5, data=b"a"), "two")


def test_commit_index_going_back_without_a_crash_is_caught() -> None:
    checker = InvariantChecker()
    follower = node(1)
    append(follower, 1)
    follower.log.commit_to(2)
    checker.observe(1, follower)
    follower.log.committed = 1
    with pytest.raises(InvariantViolation, match="Commit monotonic"):
        checker.observe(1, follower)


def test_commit_index_may_go_back_across_a_restart() -> None:
    checker = InvariantChecker()
    follower = node(1)
    append(follower, 1)
    follower.log.commit_to(2)
    checker.observe(1, follower)
    checker.on_crash(1)
    checker.on_start(1)
    checker.observe(1, node(1))


def test_a_new_leader_lacking_a_committed_entry_breaks_leader_completeness() -> None:
    checker = InvariantChecker()
    follower = node(1, term=2)
    append(follower, 2)
    follower.log.commit_to(2)
    checker.observe(1, follower)
    with pytest.raises(InvariantViolation, match="Leader Completeness"):
        checker.observe(2, node(2, term=3, role=Role.LEADER))


def test_a_stale_leader_may_lack_an_entry_committed_in_a_later_term() -> None:
    checker = InvariantChecker()
    stale = node(2, term=3, role=Role.LEADER)
    checker.observe(2, stale)
    follower = node(1, term=4)
    append(follower, 2)  # an entry of term 2 ...
    follower.log.commit_to(2)  # ... committed in term 4
    checker.observe(1, follower)
    append(stale, 3)
    checker.observe(2, stale)


def test_acknowledging_a_write_that_was_not_applied_is_caught() -> None:
    checker = InvariantChecker()
    checker.on_apply(1, Entry(term=2, index=5, data=b"a"), "hash")
    checker.on_acknowledged(5, 2)
    with pytest.raises(InvariantViolation, match="Acknowledged writes"):
        checker.on_acknowledged(5, 3)
