"""The wire schema of the messages between nodes (SPEC §4): one msgspec Struct per message,
with the seed's field names and the bounds a peer's numbers must keep. `codec.py` is the only
user: it encodes a native message (`messages.py`) through its Struct here and decodes a
frame into a Struct (msgspec validates every field and bound) and then into the native
message the core steps.

The Structs mirror the native classes field for field, in the same order, so converting is
one positional call either way; `tests/core/test_wire.py` holds the two in agreement, and so
does `_check_mirrors` when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any

import msgspec

from raftkv.core import messages
from raftkv.core.entries import (
    NODE_ID_LIMIT,
    Entry,
    Index,
    NodeId,
    RoundNumber,
    SnapshotOffset,
    Term,
)
from raftkv.core.messages import ForwardKind


class Message(msgspec.Struct, frozen=True, tag_field="type", gc=False):
    """Base of every message's wire form; `to` is the destination node id.

    Not tracked by the garbage collector (gc=False, inherited): a message holds numbers,
    bytes and lists of untracked entries, never a reference back to itself, so it can never
    be part of a cycle."""

    to: NodeId
    term: Term


class AppendEntries(Message, frozen=True, tag="AppendEntries"):
    leader_id: NodeId
    prev_log_index: Index
    prev_log_term: Term
    entries: list[Entry]
    leader_commit: Index
    read_context: RoundNumber = 0


class AppendEntriesResponse(Message, frozen=True, tag="AppendEntriesResponse"):
    from_id: NodeId
    success: bool
    match_index: Index
    conflict_index: Index = 0
    conflict_term: Term = 0
    read_context: RoundNumber = 0


class RequestVote(Message, frozen=True, tag="RequestVote"):
    candidate_id: NodeId
    last_log_index: Index
    last_log_term: Term
    pre_vote: bool = False
    transfer: bool = False


class RequestVoteResponse(Message, frozen=True, tag="RequestVoteResponse"):
    from_id: NodeId
    granted: bool
    pre_vote: bool = False


class InstallSnapshot(Message, frozen=True, tag="InstallSnapshot"):
    leader_id: NodeId
    last_included_index: Index
    last_included_term: Term
    offset: SnapshotOffset
    data: bytes
    done: bool
    membership: bytes = b""


class InstallSnapshotResponse(Message, frozen=True, tag="InstallSnapshotResponse"):
    from_id: NodeId
    last_included_index: Index
    next_offset: SnapshotOffset
    done: bool = False


class TimeoutNow(Message, frozen=True, tag="TimeoutNow"):
    leader_id: NodeId


# --- not Raft: the embedding API's requests to the leader (messages.Forward) ---------------
RequestId = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
# Error codes and messages are short; a longer one from a peer is a malformed frame.
ShortText = Annotated[str, msgspec.Meta(max_length=1024)]


class Forward(Message, frozen=True, tag="Forward"):
    from_id: NodeId
    request_id: RequestId
    kind: ForwardKind
    payload: bytes = b""


class ForwardReply(Message, frozen=True, tag="ForwardReply"):
    from_id: NodeId
    request_id: RequestId
    error: ShortText = ""
    message: ShortText = ""
    leader_id: Annotated[int, msgspec.Meta(ge=0, lt=NODE_ID_LIMIT)] = 0
    index: Index = 0
    entry_term: Term = 0
    # Last and defaulted: a node without it ignores the field, and one with it reads an
    # older reply as empty.
    payload: bytes = b""


WireMessage = (
    AppendEntries
    | AppendEntriesResponse
    | RequestVote
    | RequestVoteResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | Forward
    | ForwardReply
)


# Native type -> (its Struct, the getter of its fields in the Struct's order), and back.
_TO_WIRE: dict[type, tuple[type[Message], Callable[[Any], tuple[Any, ...]]]] = {}
_FROM_WIRE: dict[type, type[messages.Message]] = {}


def _check_mirrors() -> None:
    """Pair each native message with its Struct, and refuse to start if their fields
    differ: a field added to one and not the other would vanish on the wire."""
    for struct_type in WireMessage.__args__:
        native_type: type[messages.Message] = getattr(messages, struct_type.__name__)
        names = struct_type.__struct_fields__
        if names != native_type.FIELDS:
            raise TypeError(
                f"{struct_type.__name__}: wire fields {names} differ from"
                f" the native message's {native_type.FIELDS}"
            )
        _TO_WIRE[native_type] = (struct_type, attrgetter(*names))
        _FROM_WIRE[struct_type] = native_type


def to_wire(message: messages.AnyMessage) -> WireMessage:
    struct_type, fields = _TO_WIRE[type(message)]
    return struct_type(*fields(message))  # type: ignore[return-value]


def from_wire(struct: WireMessage) -> messages.AnyMessage:
    return _FROM_WIRE[type(struct)](*msgspec.structs.astuple(struct))  # type: ignore[return-value]


_check_mirrors()
