"""Majority arithmetic for plain and joint configurations (§5.3, §5.2, §6)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from raftkv.core.membership import Membership


class VoteResult(Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority_index(voters: frozenset[int], match: Mapping[int, int]) -> int:
    """The largest index stored on a majority of `voters` (0 for an empty set: no constraint).

    An empty voter set imposes no constraint, so joint arithmetic can treat the outgoing half
    of a non-joint configuration as absent; the callers use `joint_committed_index`.
    """
    if not voters:
        return 1 << 62
    get = match.get
    indexes = sorted([get(voter, 0) for voter in voters], reverse=True)
    return indexes[len(indexes) // 2]


def joint_committed_index(membership: Membership, match: Mapping[int, int]) -> int:
    """Commitment needs a majority of each half of a joint configuration (§6)."""
    index = majority_index(membership.voters, match)
    if membership.voters_outgoing:
        index = min(index, majority_index(membership.voters_outgoing, match))
    return 0 if index == 1 << 62 else index


def vote_result(voters: frozenset[int], votes: Mapping[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.WON
    granted = sum(1 for voter in voters if votes.get(voter) is True)
    rejected = sum(1 for voter in voters if votes.get(voter) is False)
    needed = len(voters) // 2 + 1
    if granted >= needed:
        return VoteResult.WON
    if rejected > len(voters) - needed:
        return VoteResult.LOST
    return VoteResult.PENDING


def joint_vote_result(membership: Membership, votes: Mapping[int, bool]) -> VoteResult:
    """An election needs a majority of each half of a joint configuration (§6)."""
    incoming = vote_result(membership.voters, votes)
    outgoing = vote_result(membership.voters_outgoing, votes)
    if VoteResult.LOST in (incoming, outgoing):
        return VoteResult.LOST
    if incoming is VoteResult.WON and outgoing is VoteResult.WON:
        return VoteResult.WON
    return VoteResult.PENDING


def quorum_active(membership: Membership, active: set[int]) -> bool:
    """Check-quorum: has the leader heard from a majority of each half recently?

    The same answer as `joint_vote_result` with a granted vote from every node in `active`
    (nobody refuses, so no half is ever lost), counted directly: the lease check runs every
    tick."""
    return _majority_in(membership.voters, active) and _majority_in(
        membership.voters_outgoing, active
    )


def _majority_in(voters: frozenset[int], active: set[int]) -> bool:
    return not voters or len(voters & active) >= len(voters) // 2 + 1
