"""The one place where messages become bytes: MessagePack on the wire, JSON for traces.

A message goes through its wire form (`wire.py`, msgspec Structs) both ways: encoding
converts the native message to its Struct, decoding builds the Struct (msgspec checks every
field and bound) and then the native message.

Decoding validates types, so a malformed frame raises `FrameError` instead of producing a
half-built message: a frame that is not MessagePack (or JSON), that breaks the schema or its
bounds, holds a string that is not UTF-8, or nests deeper than the interpreter's recursion
limit (msgspec raises `UnicodeDecodeError` and `RecursionError` for the last two).
"""

from __future__ import annotations

import msgspec

from raftkv.core.membership import Membership
from raftkv.core.messages import AnyMessage, AppendEntries, EntryKind, InstallSnapshot
from raftkv.core.wire import WireMessage, from_wire, to_wire
from raftkv.errors import FrameError

_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(WireMessage)
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(WireMessage)
# A plain int: comparing with the IntEnum member costs several times more per entry.
_MEMBERSHIP = int(EntryKind.MEMBERSHIP)


def encode(message: AnyMessage) -> bytes:
    return _msgpack_encoder.encode(to_wire(message))


def _check_memberships(message: AnyMessage) -> None:
    """Decode the configurations the core will decode: a membership entry's data, and the
    membership of a snapshot's last chunk. Undecodable, the core would raise while
    stepping the message, and that stops the node rather than refusing one frame."""
    if type(message) is AppendEntries:
        for entry in message.entries:
            if entry.kind == _MEMBERSHIP:
                Membership.decode(entry.data)
    elif type(message) is InstallSnapshot and message.done:
        Membership.decode(message.membership)


def decode(frame: bytes | memoryview) -> AnyMessage:
    try:
        message = from_wire(_msgpack_decoder.decode(frame))
        _check_memberships(message)
        return message
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise FrameError(f"malformed message: {error}") from error


def to_json(message: AnyMessage) -> bytes:
    """The seed's JSON shape (SPEC §4), used by `--trace-rpc` and transcripts."""
    return _json_encoder.encode(to_wire(message))


def from_json(text: bytes | str) -> AnyMessage:
    try:
        message = from_wire(_json_decoder.decode(text))
        _check_memberships(message)
        return message
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise FrameError(f"malformed message: {error}") from error
