"""The messages' wire form (core/wire.py) against the native messages (core/messages.py):
the same fields in the same order, the bytes of SPEC §4 unchanged, and the value semantics
(equality, hashing, repr, replace) a msgspec Struct had."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from raftkv.core import codec, wire
from raftkv.core.membership import Membership
from raftkv.core.messages import (
    AnyMessage,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    Forward,
    ForwardReply,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    replace,
)

MEMBERS = Membership(voters=frozenset({1, 2})).encode()  # decoded with the last chunk
# Every field of every type set, no two values alike within a message (and none left at
# its default): a field converted into another's place changes the message.
EVERY_TYPE: list[AnyMessage] = [
    AppendEntries(2, 7, 1, 10, 6, [Entry(term=6, index=11, kind=0, data=b"put")], 9, 3),
    AppendEntriesResponse(1, 7, 2, True, 11, 4, 5, 3),
    RequestVote(2, 7, 3, 10, 6, True, True),
    RequestVoteResponse(3, 7, 2, True, True),
    InstallSnapshot(2, 7, 1, 100, 6, 4096, b"chunk", True, MEMBERS),
    InstallSnapshotResponse(1, 7, 2, 100, 8192, True),
    TimeoutNow(2, 7, 1),
    Forward(1, 0, 2, 7, "propose", b"payload"),
    ForwardReply(2, 0, 1, 7, "not_leader", "try node 3", 3, 42, 5, b"{}"),
]


def test_every_message_type_is_covered() -> None:
    assert [type(message) for message in EVERY_TYPE] == list(get_args(AnyMessage))


@pytest.mark.parametrize("message", EVERY_TYPE, ids=lambda message: type(message).__name__)
def test_each_field_survives_msgpack_and_json_in_its_own_place(message: AnyMessage) -> None:
    assert codec.decode(codec.encode(message)) == message
    assert codec.from_json(codec.to_json(message)) == message
    shown = msgspec.json.decode(codec.to_json(message))
    assert list(shown) == ["type", *type(message).FIELDS]
    assert shown["type"] == type(message).__name__
    assert codec.decode(codec.encode(message)).values() == message.values()


def test_the_bytes_on_the_wire_are_those_of_the_msgspec_messages_before() -> None:
    # Encoded by the msgspec Struct messages that were the core's own until session 11.
    heartbeat = AppendEntries(
        to=2,
        term=7,
        leader_id=1,
        prev_log_index=10,
        prev_log_term=6,
        entries=[Entry(term=7, index=11, kind=0, data=b"put"), Entry(term=7, index=12, kind=1)],
        leader_commit=9,
        read_context=3,
    )
    assert codec.encode(heartbeat).hex() == (
        "89a474797065ad417070656e64456e7472696573a2746f02a47465726d07a96c65616465725f696401ae"
        "707265765f6c6f675f696e6465780aad707265765f6c6f675f7465726d06a7656e7472696573929407"
        "0b00c40370757494070c01c400ad6c65616465725f636f6d6d697409ac726561645f636f6e74657874"
        "03"
    )
    assert codec.to_json(heartbeat) == (
        b'{"type":"AppendEntries","to":2,"term":7,"leader_id":1,"prev_log_index":10,'
        b'"prev_log_term":6,"entries":[[7,11,0,"cHV0"],[7,12,1,""]],"leader_commit":9,'
        b'"read_context":3}'
    )
    reply = ForwardReply(2, 0, 1, 7, leader_id=1, index=42, entry_term=3, payload=b"{}")
    assert codec.to_json(reply) == (
        b'{"type":"ForwardReply","to":2,"term":0,"from_id":1,"request_id":7,"error":"",'
        b'"message":"","leader_id":1,"index":42,"entry_term":3,"payload":"e30="}'
    )


def test_a_frame_without_the_defaulted_fields_still_decodes() -> None:
    # An older peer's frame: no read_context, conflict hints nor pre_vote.
    frame = msgspec.msgpack.encode(
        {"type": "AppendEntriesResponse", "to": 1, "term": 3, "from_id": 2, "success": True}
        | {"match_index": 4}
    )
    assert codec.decode(frame) == AppendEntriesResponse(1, 3, 2, True, 4)


def test_messages_compare_hash_and_show_by_value() -> None:
    vote = RequestVoteResponse(to=3, term=7, from_id=2, granted=True)
    twin = RequestVoteResponse(3, 7, 2, True, False)
    assert vote == twin and hash(vote) == hash(twin)
    assert vote != replace(vote, granted=False)
    # Same values, another type: not equal (a response is not the request it answers).
    assert TimeoutNow(2, 7, 1) != RequestVoteResponse(2, 7, 1, False)
    assert vote != (3, 7, 2, True, False)
    assert repr(vote) == (
        "RequestVoteResponse(to=3, term=7, from_id=2, granted=True, pre_vote=False)"
    )


def test_replace_changes_only_what_it_names_and_refuses_unknown_fields() -> None:
    chunk = EVERY_TYPE[4]
    moved = replace(chunk, offset=0, done=False)
    assert moved.values() == (2, 7, 1, 100, 6, 0, b"chunk", False, MEMBERS)
    assert chunk.values()[5] == 4096  # the original is left as it was
    with pytest.raises(TypeError, match="no field"):
        replace(chunk, ofset=0)


def test_a_struct_whose_fields_differ_from_its_native_message_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The native TimeoutNow calls its third field leader_id.
    renamed = msgspec.defstruct("TimeoutNow", [("to", int), ("term", int), ("leader", int)])
    monkeypatch.setattr(wire, "WireMessage", renamed | wire.RequestVote)
    with pytest.raises(TypeError, match="TimeoutNow: wire fields"):
        wire._check_mirrors()
