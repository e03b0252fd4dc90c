"""The peer handshake (transport/handshake.py): `decode_handshake` and `decode_reply` turn
any bytes into a handshake or raise `FrameError`; valid ones round-trip."""

from __future__ import annotations

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.errors import FrameError
from raftkv.transport.handshake import (
    HANDSHAKE_MAGIC,
    PROTOCOL_VERSION,
    Handshake,
    HandshakeReply,
    LeaseSettings,
    decode_handshake,
    decode_reply,
    encode_handshake,
)

from .fuzzing import any_text, deep_msgpack, edge_integers, fuzz, hostile, raises_only

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
leases = st.builds(
    LeaseSettings, tick_ms=ints, election_timeout_ms_min=ints, check_quorum=st.booleans()
)
handshakes = st.builds(
    Handshake,
    magic=st.just(HANDSHAKE_MAGIC),
    protocol_version=st.just(PROTOCOL_VERSION),
    cluster_id=any_text,
    node_id=ints,
    to_node_id=ints,
    client_address=any_text,
    lease=st.none() | leases,
    peer_address=any_text,
)
replies = st.builds(
    HandshakeReply, accepted=st.booleans(), reason=any_text, node_id=ints, client_address=any_text
)

_PREFIX = b"\x83\xa5magic\xa6raftkv\xb0protocol_version\x02"
_DEEP = _PREFIX + b"\xaacluster_id" + deep_msgpack(100_000)
_NOT_UTF8 = _PREFIX + b"\xaacluster_id\xa2\xc3\x28"
_DEEP_REPLY = b"\x82\xa8accepted\xc3\xa2zz" + deep_msgpack(100_000)
_NOT_UTF8_REPLY = b"\x82\xa8accepted\xc3\xa6reason\xa1\xff"


@fuzz
@given(payload=hostile(handshakes.map(encode_handshake)))
@example(payload=_DEEP)
@example(payload=_NOT_UTF8)
@example(payload=b"\x82\xa5magic\xa1\xff\xb0protocol_version\x02")
def test_any_handshake_payload_decodes_or_raises_frame_error(payload: bytes) -> None:
    handshake = raises_only(decode_handshake, FrameError, payload)
    if handshake is not None:
        assert handshake.magic == HANDSHAKE_MAGIC
        assert handshake.protocol_version == PROTOCOL_VERSION


@fuzz
@given(payload=hostile(replies.map(encode_handshake)))
@example(payload=_DEEP_REPLY)
@example(payload=_NOT_UTF8_REPLY)
def test_any_reply_payload_decodes_or_raises_frame_error(payload: bytes) -> None:
    raises_only(decode_reply, FrameError, payload)


@fuzz
@given(
    field=st.sampled_from(["cluster_id", "node_id", "to_node_id", "lease", "peer_address"]),
    value=edge_integers
    | st.floats()
    | st.none()
    | any_text
    | st.booleans()
    | st.binary(max_size=4),
)
def test_wrong_types_in_a_handshake_are_frame_errors(field: str, value: object) -> None:
    fields = {
        "magic": HANDSHAKE_MAGIC,
        "protocol_version": PROTOCOL_VERSION,
        "cluster_id": "c",
        "node_id": 2,
        field: value,
    }
    raises_only(decode_handshake, FrameError, msgspec.msgpack.encode(fields))


@fuzz
@given(handshake=handshakes, reply=replies)
def test_handshakes_and_replies_round_trip(handshake: Handshake, reply: HandshakeReply) -> None:
    assert decode_handshake(encode_handshake(handshake)) == handshake
    assert decode_reply(encode_handshake(reply)) == reply
