"""The wire codec and the quorum arithmetic against simple references."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.core import AppendEntries, Entry, Membership, RequestVote
from raftkv.core.codec import decode, encode, from_json, to_json
from raftkv.core.quorum import (
    VoteResult,
    joint_committed_index,
    joint_vote_result,
    majority_index,
    vote_result,
)
from raftkv.errors import FrameError


def test_messages_round_trip_through_msgpack_and_the_seed_json_shape() -> None:
    message = AppendEntries(
        to=2,
        term=5,
        leader_id=1,
        prev_log_index=10,
        prev_log_term=4,
        entries=[Entry(5, 11, 0, b"set x=1")],
        leader_commit=9,
    )
    assert decode(encode(message)) == message
    shape = json.loads(to_json(message))
    for field, value in {
        "term": 5,
        "leader_id": 1,
        "prev_log_index": 10,
        "prev_log_term": 4,
        "leader_commit": 9,
    }.items():
        assert shape[field] == value
    assert shape["type"] == "AppendEntries"
    assert from_json(to_json(message)) == message
    vote = RequestVote(to=1, term=5, candidate_id=2, last_log_index=10, last_log_term=4)
    assert json.loads(to_json(vote))["candidate_id"] == 2
    assert decode(encode(vote)) == vote


@pytest.mark.parametrize(
    "frame", [b"", b"\x00", b"\xff" * 10, encode(RequestVote(1, 1, 1, 1, 1))[:-3]]
)
def test_malformed_frames_raise_frame_error(frame: bytes) -> None:
    with pytest.raises(FrameError):
        decode(frame)


def test_wrong_field_types_raise_frame_error() -> None:
    with pytest.raises(FrameError):
        from_json(
            b'{"type":"RequestVote","to":1,"term":"five","candidate_id":2,'
            b'"last_log_index":1,"last_log_term":1}'
        )


def brute_force_majority_index(voters: frozenset[int], match: dict[int, int]) -> int:
    candidates = sorted({0, *match.values()}, reverse=True)
    for index in candidates:
        if sum(1 for v in voters if match.get(v, 0) >= index) * 2 > len(voters):
            return index
    return 0


voter_sets = st.frozensets(st.integers(1, 7), min_size=1, max_size=7)


@given(voter_sets, st.dictionaries(st.integers(1, 7), st.integers(0, 20)))
def test_majority_index_matches_brute_force(voters: frozenset[int], match: dict[int, int]) -> None:
    assert majority_index(voters, match) == brute_force_majority_index(voters, match)


@given(voter_sets, voter_sets, st.dictionaries(st.integers(1, 7), st.integers(0, 20)))
def test_joint_commit_needs_both_majorities(
    incoming: frozenset[int], outgoing: frozenset[int], match: dict[int, int]
) -> None:
    joint = Membership(voters=incoming, voters_outgoing=outgoing)
    expected = min(
        brute_force_majority_index(incoming, match), brute_force_majority_index(outgoing, match)
    )
    assert joint_committed_index(joint, match) == expected


@given(voter_sets, st.dictionaries(st.integers(1, 7), st.booleans()))
def test_vote_result_matches_counting(voters: frozenset[int], votes: dict[int, bool]) -> None:
    granted = sum(1 for v in voters if votes.get(v) is True)
    undecided = sum(1 for v in voters if v not in votes)
    result = vote_result(voters, votes)
    if granted * 2 > len(voters):
        assert result is VoteResult.WON
    elif (granted + undecided) * 2 <= len(voters):
        assert result is VoteResult.LOST
    else:
        assert result is VoteResult.PENDING


def test_joint_election_needs_both_halves() -> None:
    joint = Membership(voters=frozenset({1, 2, 3}), voters_outgoing=frozenset({3, 4, 5}))
    assert joint_vote_result(joint, {1: True, 2: True}) is VoteResult.PENDING
    assert joint_vote_result(joint, {1: True, 2: True, 4: True, 3: False}) is VoteResult.PENDING
    assert joint_vote_result(joint, {1: True, 2: True, 3: True, 4: True}) is VoteResult.WON
    assert joint_vote_result(joint, {4: False, 5: False}) is VoteResult.LOST
