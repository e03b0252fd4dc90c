"""Peer messages (core/codec.py, core/messages.py, core/membership.py): whatever bytes a
peer sends, `codec.decode` returns a message within SPEC §6's bounds or raises
`FrameError`; valid messages survive MessagePack and JSON round trips unchanged."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.core import codec
from raftkv.core.membership import Membership
from raftkv.core.messages import (
    INDEX_LIMIT,
    NODE_ID_LIMIT,
    SNAPSHOT_OFFSET_LIMIT,
    TERM_LIMIT,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Forward,
    ForwardReply,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.errors import FrameError

from .fuzzing import deep_json, deep_msgpack, edge_integers, fuzz, hostile, raises_only

terms = st.integers(min_value=0, max_value=TERM_LIMIT - 1)
indexes = st.integers(min_value=0, max_value=INDEX_LIMIT - 1)
node_ids = st.integers(min_value=1, max_value=NODE_ID_LIMIT - 1)
offsets = st.integers(min_value=0, max_value=SNAPSHOT_OFFSET_LIMIT - 1)
short_text = st.text(max_size=30)

memberships = st.builds(
    Membership,
    voters=st.frozensets(node_ids, max_size=5),
    voters_outgoing=st.frozensets(node_ids, max_size=3),
    learners=st.frozensets(node_ids, max_size=3),
    addresses=st.dictionaries(node_ids, st.text(max_size=20), max_size=3),
)
membership_bytes = memberships.map(Membership.encode)

entries = st.builds(
    Entry,
    term=terms,
    index=indexes,
    kind=st.integers(min_value=0, max_value=1),
    data=st.binary(max_size=40),
) | st.builds(Entry, term=terms, index=indexes, kind=st.just(2), data=membership_bytes)

messages = st.one_of(
    st.builds(
        AppendEntries,
        to=node_ids,
        term=terms,
        leader_id=node_ids,
        prev_log_index=indexes,
        prev_log_term=terms,
        entries=st.lists(entries, max_size=4),
        leader_commit=indexes,
        read_context=indexes,
    ),
    st.builds(
        AppendEntriesResponse,
        to=node_ids,
        term=terms,
        from_id=node_ids,
        success=st.booleans(),
        match_index=indexes,
        conflict_index=indexes,
        conflict_term=terms,
        read_context=indexes,
    ),
    st.builds(
        RequestVote,
        to=node_ids,
        term=terms,
        candidate_id=node_ids,
        last_log_index=indexes,
        last_log_term=terms,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    st.builds(
        RequestVoteResponse, to=node_ids, term=terms, from_id=node_ids, granted=st.booleans()
    ),
    st.builds(
        InstallSnapshot,
        to=node_ids,
        term=terms,
        leader_id=node_ids,
        last_included_index=indexes,
        last_included_term=terms,
        offset=offsets,
        data=st.binary(max_size=40),
        done=st.booleans(),
        membership=membership_bytes,
    ),
    st.builds(
        InstallSnapshotResponse,
        to=node_ids,
        term=terms,
        from_id=node_ids,
        last_included_index=indexes,
        next_offset=offsets,
        done=st.booleans(),
    ),
    st.builds(TimeoutNow, to=node_ids, term=terms, leader_id=node_ids),
    st.builds(
        Forward,
        to=node_ids,
        term=st.just(0),
        from_id=node_ids,
        request_id=st.integers(min_value=0, max_value=2**63 - 1),
        kind=st.sampled_from(["propose", "read_index", "lease_read", "add", "remove", "transfer"]),
        payload=st.binary(max_size=40),
    ),
    st.builds(
        ForwardReply,
        to=node_ids,
        term=st.just(0),
        from_id=node_ids,
        request_id=st.integers(min_value=0, max_value=2**63 - 1),
        error=short_text,
        message=short_text,
        leader_id=st.integers(min_value=0, max_value=NODE_ID_LIMIT - 1),
        index=indexes,
        entry_term=terms,
    ),
)

valid_frames = messages.map(codec.encode)


def _within_bounds(message: object) -> None:
    """What SPEC §6 promises of every decoded message."""
    assert 0 <= message.term < TERM_LIMIT  # type: ignore[attr-defined]
    assert 1 <= message.to < NODE_ID_LIMIT  # type: ignore[attr-defined]
    assert 1 <= message.sender < NODE_ID_LIMIT  # type: ignore[attr-defined]
    if isinstance(message, AppendEntries):
        for entry in message.entries:
            assert 0 <= entry.term < TERM_LIMIT and 0 <= entry.index < INDEX_LIMIT
            assert 0 <= entry.kind <= 2
            if entry.kind == EntryKind.MEMBERSHIP:  # the core decodes it when appending
                Membership.decode(entry.data)
    if isinstance(message, InstallSnapshot) and message.done:  # decoded on installing
        Membership.decode(message.membership)


def _frame(**fields: object) -> bytes:
    return msgspec.msgpack.encode({"to": 1, "term": 1, **fields})


# Configurations the core would fail to decode while stepping the message (stopping the node).
_BAD_MEMBERSHIP_ENTRY = _frame(
    type="AppendEntries",
    leader_id=2,
    prev_log_index=0,
    prev_log_term=0,
    entries=[[1, 1, 2, b"\xc1"]],
    leader_commit=0,
)
_BAD_SNAPSHOT_MEMBERSHIP = _frame(
    type="InstallSnapshot",
    leader_id=2,
    last_included_index=5,
    last_included_term=1,
    offset=0,
    data=b"",
    done=True,
    membership=b"",
)


# A field the schema does not know, holding nesting deeper than the recursion limit.
_RV = {"type": "RequestVote", "to": 1, "term": 1, "candidate_id": 2}
_DEEP_UNKNOWN_FIELD = (
    b"\x87"
    + msgspec.msgpack.encode(_RV)[1:]
    + msgspec.msgpack.encode({"last_log_index": 1, "last_log_term": 1})[1:]
    + b"\xa2zz"
    + deep_msgpack(100_000)
)
# Not UTF-8 in a string field.
_BAD_UTF8 = msgspec.msgpack.encode({**_RV, "type": "X"}).replace(b"\xa1X", b"\xa1\xff")


@fuzz
@given(frame=hostile(valid_frames))
@example(frame=_DEEP_UNKNOWN_FIELD)
@example(frame=_BAD_UTF8)
@example(frame=deep_msgpack(100_000))
@example(frame=_BAD_MEMBERSHIP_ENTRY)
@example(frame=_BAD_SNAPSHOT_MEMBERSHIP)
@example(frame=b"\x81\xa4type\xabForwardReply" + b"\xdb\xff\xff\xff\xff")
def test_any_frame_decodes_within_bounds_or_raises_frame_error(frame: bytes) -> None:
    message = raises_only(codec.decode, FrameError, frame)
    if message is not None:
        _within_bounds(message)
        assert codec.decode(codec.encode(message)) == message


@pytest.mark.parametrize("frame", [_BAD_MEMBERSHIP_ENTRY, _BAD_SNAPSHOT_MEMBERSHIP])
def test_a_configuration_the_core_cannot_decode_is_a_malformed_frame(frame: bytes) -> None:
    with pytest.raises(FrameError):
        codec.decode(frame)


@fuzz
@given(text=hostile(messages.map(codec.to_json)))
@example(text=b'{"type":"RequestVote","zz":' + deep_json(100_000) + b"}")
@example(text=b'{"type":"\xff"}')
def test_any_json_trace_line_decodes_or_raises_frame_error(text: bytes) -> None:
    message = raises_only(codec.from_json, FrameError, text)
    if message is not None:
        _within_bounds(message)


@fuzz
@given(
    field=st.sampled_from(["to", "term", "candidate_id", "last_log_index", "last_log_term"]),
    value=edge_integers | st.floats() | st.none() | st.text(max_size=5) | st.booleans(),
)
def test_wrong_types_and_out_of_range_integers_are_frame_errors(field: str, value: object) -> None:
    fields = {**_RV, "last_log_index": 1, "last_log_term": 1, field: value}
    message = raises_only(codec.decode, FrameError, msgspec.msgpack.encode(fields))
    if message is not None:
        _within_bounds(message)


@fuzz
@given(message=messages)
def test_messages_round_trip_through_msgpack_and_json(message: object) -> None:
    assert codec.decode(codec.encode(message)) == message  # type: ignore[arg-type]
    assert codec.from_json(codec.to_json(message)) == message  # type: ignore[arg-type]
    frame = codec.encode(message)  # type: ignore[arg-type]
    assert codec.encode(codec.decode(frame)) == frame


@fuzz
@given(membership=memberships)
def test_memberships_round_trip(membership: Membership) -> None:
    assert Membership.decode(membership.encode()) == membership


@fuzz
@given(data=hostile(memberships.map(Membership.encode)))
@example(data=b"\x81\xa6voters" + deep_msgpack(100_000))
@example(data=b"\x82\xa6voters\x90\xa9addresses\x81\x01\xa1\xff")
def test_any_membership_bytes_decode_or_raise_value_error(data: bytes) -> None:
    # Membership.decode documents no error of its own: msgspec's, all ValueErrors.
    raises_only(Membership.decode, ValueError, data)
