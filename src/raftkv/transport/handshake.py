"""The first frame each way on a peer connection (SPEC §4): who is talking, and may it?

The connecting side sends a `Handshake`; the accepting side checks it with
`check_handshake` and answers with a `HandshakeReply` that accepts or refuses, with a reason.
Both are MessagePack maps, not arrays, so a later version can add fields that this one
ignores; and the magic and version are checked before the rest is validated, so a peer of
another version is refused for its version rather than for a field it no longer sends.
"""

from __future__ import annotations

from collections.abc import Container

import msgspec

from raftkv.errors import FrameError

HANDSHAKE_MAGIC = "raftkv"
PROTOCOL_VERSION = 1


class Handshake(msgspec.Struct, frozen=True):
    magic: str
    protocol_version: int
    cluster_id: str
    node_id: int
    # The node the sender believes it dialed (0: unknown), so an address that points at the
    # wrong node is refused instead of silently misrouting messages.
    to_node_id: int = 0
    # The sender's client address ("host:port"), for leader hints (SPEC §1).
    client_address: str = ""


class HandshakeReply(msgspec.Struct, frozen=True):
    accepted: bool
    reason: str = ""
    node_id: int = 0
    client_address: str = ""


class _Preamble(msgspec.Struct):
    """The fields every protocol version keeps, decoded before the rest."""

    magic: str
    protocol_version: int


_encoder = msgspec.msgpack.Encoder()
_preamble_decoder = msgspec.msgpack.Decoder(_Preamble)
_handshake_decoder = msgspec.msgpack.Decoder(Handshake)
_reply_decoder = msgspec.msgpack.Decoder(HandshakeReply)


def encode_handshake(handshake: Handshake | HandshakeReply) -> bytes:
    return _encoder.encode(handshake)


def decode_handshake(payload: bytes) -> Handshake:
    """Decode a handshake; raises `FrameError` for anything that is not a raftkv handshake
    of this protocol version."""
    try:
        preamble = _preamble_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise FrameError(f"malformed handshake: {error}") from error
    if preamble.magic != HANDSHAKE_MAGIC:
        raise FrameError(f"not a raftkv handshake (magic {preamble.magic!r})")
    if preamble.protocol_version != PROTOCOL_VERSION:
        raise FrameError(f"protocol version {preamble.protocol_version} != {PROTOCOL_VERSION}")
    try:
        return _handshake_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise FrameError(f"malformed handshake: {error}") from error


def decode_reply(payload: bytes) -> HandshakeReply:
    try:
        return _reply_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise FrameError(f"malformed handshake reply: {error}") from error


def check_handshake(
    handshake: Handshake,
    *,
    cluster_id: str,
    node_id: int,
    known_peers: Container[int],
    accept_unknown_peers: bool,
) -> str | None:
    """Why the handshake is refused, or None when it is accepted."""
    if handshake.cluster_id != cluster_id:
        return f"cluster id {handshake.cluster_id!r} != {cluster_id!r}"
    if handshake.to_node_id not in (0, node_id):
        return f"addressed to node {handshake.to_node_id} but this is node {node_id}"
    if handshake.node_id == node_id:
        return f"node id {node_id} is this node's own id"
    if handshake.node_id <= 0:
        return f"invalid node id {handshake.node_id}"
    if handshake.node_id not in known_peers and not accept_unknown_peers:
        return f"unknown node id {handshake.node_id} (not a configured peer)"
    return None
