"""Issue #13: every integer a peer sends is checked against what storage holds.

One AppendEntries with term 2**63 - 1 once spread that term to every node; the next
election's term + 1 no longer fitted the WAL's signed 64-bit field, and every node stopped
with the term already on disk. Decoding now refuses such a frame (`FrameError`), and the
core never campaigns past the last term that fits.
"""

from __future__ import annotations

import msgspec
import pytest

from raftkv.core import codec
from raftkv.core.membership import Membership
from raftkv.core.messages import (
    INDEX_LIMIT,
    NODE_ID_LIMIT,
    SNAPSHOT_OFFSET_LIMIT,
    TERM_LIMIT,
    AnyMessage,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    replace,
)
from raftkv.errors import FrameError

from .harness import Cluster

WAL_FIELD_MAX = (1 << 63) - 1
HEARTBEAT = AppendEntries(
    to=2, term=3, leader_id=1, prev_log_index=5, prev_log_term=3, entries=[], leader_commit=4
)
RESPONSE = AppendEntriesResponse(to=1, term=3, from_id=2, success=True, match_index=5)
VOTE = RequestVote(to=2, term=3, candidate_id=1, last_log_index=5, last_log_term=3)
CHUNK = InstallSnapshot(
    to=2,
    term=3,
    leader_id=1,
    last_included_index=5,
    last_included_term=3,
    offset=0,
    data=b"x",
    done=False,
)
CHUNK_ACK = InstallSnapshotResponse(to=1, term=3, from_id=2, last_included_index=5, next_offset=1)


def with_entry(**fields: int | bytes) -> AppendEntries:
    entry = msgspec.structs.replace(Entry(term=3, index=6), **fields)
    return replace(HEARTBEAT, entries=[entry])


HOSTILE: list[tuple[str, AnyMessage]] = [
    ("term at the WAL's maximum", replace(HEARTBEAT, term=WAL_FIELD_MAX)),
    ("term at the limit", replace(HEARTBEAT, term=TERM_LIMIT)),
    ("negative term", replace(VOTE, term=-1)),
    ("last log term", replace(VOTE, last_log_term=TERM_LIMIT)),
    ("prev log index", replace(HEARTBEAT, prev_log_index=INDEX_LIMIT)),
    ("prev log term", replace(HEARTBEAT, prev_log_term=-5)),
    ("leader commit", replace(HEARTBEAT, leader_commit=WAL_FIELD_MAX)),
    ("read context", replace(HEARTBEAT, read_context=-1)),
    ("entry term", with_entry(term=TERM_LIMIT)),
    ("entry index", with_entry(index=-6)),
    ("entry kind", with_entry(kind=256)),
    ("match index", replace(RESPONSE, match_index=WAL_FIELD_MAX)),
    ("conflict index", replace(RESPONSE, conflict_index=-1)),
    ("conflict term", replace(RESPONSE, conflict_term=TERM_LIMIT)),
    ("destination id", replace(VOTE, to=NODE_ID_LIMIT)),
    ("destination id zero", replace(VOTE, to=0)),
    ("sender id", replace(VOTE, candidate_id=-1)),
    (
        "voter id",
        RequestVoteResponse(to=1, term=3, from_id=NODE_ID_LIMIT, granted=True),
    ),
    ("leader id", TimeoutNow(to=2, term=3, leader_id=0)),
    ("snapshot index", replace(CHUNK, last_included_index=INDEX_LIMIT)),
    ("snapshot term", replace(CHUNK, last_included_term=-1)),
    ("snapshot offset", replace(CHUNK, offset=SNAPSHOT_OFFSET_LIMIT)),
    ("negative snapshot offset", replace(CHUNK, offset=-1)),
    ("next offset", replace(CHUNK_ACK, next_offset=WAL_FIELD_MAX)),
    ("acknowledged index", replace(CHUNK_ACK, last_included_index=-1)),
]


@pytest.mark.parametrize(("field", "message"), HOSTILE, ids=[field for field, _ in HOSTILE])
def test_an_integer_out_of_bounds_is_a_frame_error(field: str, message: AnyMessage) -> None:
    with pytest.raises(FrameError):
        codec.decode(codec.encode(message))
    with pytest.raises(FrameError):
        codec.from_json(codec.to_json(message))


@pytest.mark.parametrize(
    "message",
    [
        replace(HEARTBEAT, term=TERM_LIMIT - 1, leader_commit=INDEX_LIMIT - 1),
        replace(VOTE, candidate_id=NODE_ID_LIMIT - 1),
        replace(CHUNK, offset=SNAPSHOT_OFFSET_LIMIT - 1),
        with_entry(
            term=TERM_LIMIT - 1,
            index=INDEX_LIMIT - 1,
            kind=2,
            data=Membership(voters=frozenset({1})).encode(),  # decoded: a real one
        ),
    ],
)
def test_the_largest_values_allowed_still_decode(message: AnyMessage) -> None:
    assert codec.decode(codec.encode(message)) == message


def test_a_node_at_the_last_term_does_not_campaign_past_it() -> None:
    cluster = Cluster([1, 2, 3])
    node = cluster[1]
    node.term = TERM_LIMIT - 1
    node.campaign(pre_vote=False)
    assert node.term == TERM_LIMIT - 1
    assert any("not campaigning" in event for event in node.events), node.events
    cluster.process()
    assert cluster.stables[1].hard_state().term < TERM_LIMIT


def test_a_message_past_the_last_term_is_ignored_by_the_core() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    follower = cluster[2]
    term = follower.term
    follower.step(replace(HEARTBEAT, term=WAL_FIELD_MAX))
    assert follower.term == term
    assert any("term 9223372036854775807" in event for event in follower.events)
