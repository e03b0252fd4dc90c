"""Unit and property tests of the transport's pure parts: frames, queue, backoff, handshake."""

from __future__ import annotations

import itertools
import random
import struct

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.errors import FrameError
from raftkv.transport import TransportLimits
from raftkv.transport.backoff import Backoff
from raftkv.transport.framing import FrameParser, encode_frame, join_frames
from raftkv.transport.handshake import (
    HANDSHAKE_MAGIC,
    PROTOCOL_VERSION,
    Handshake,
    LeaseSettings,
    check_handshake,
    decode_handshake,
    encode_handshake,
)
from raftkv.transport.send_queue import SendQueue


# --- frames --------------------------------------------------------------------------------
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_parser_returns_the_payloads_however_the_stream_is_cut(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = join_frames(payloads)
    assert stream == b"".join(encode_frame(payload) for payload in payloads)
    boundaries = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    parser = FrameParser(frame_bytes_max=300)
    received: list[bytes] = []
    for start, end in itertools.pairwise(boundaries):
        parser.feed(stream[start:end])
        while (payload := parser.next_frame()) is not None:
            received.append(payload)
    assert received == payloads
    assert parser.buffered_bytes == 0


def test_parser_refuses_an_oversized_length_from_the_header_alone() -> None:
    parser = FrameParser(frame_bytes_max=1024)
    parser.feed(struct.pack(">I", 1025))
    with pytest.raises(FrameError, match="announces 1025 bytes, over the limit of 1024"):
        parser.next_frame()
    # Nothing but the 4 header bytes was ever buffered.
    assert parser.buffered_bytes == 4


def test_parser_accepts_a_frame_of_exactly_the_limit() -> None:
    parser = FrameParser(frame_bytes_max=8)
    parser.feed(encode_frame(b"12345678"))
    assert parser.next_frame() == b"12345678"
    assert parser.next_frame() is None


def test_parser_waits_for_a_whole_header_and_payload() -> None:
    parser = FrameParser(frame_bytes_max=8)
    parser.feed(b"\x00\x00")
    assert parser.next_frame() is None
    parser.feed(b"\x00\x03ab")
    assert parser.next_frame() is None
    parser.feed(b"c\x00")
    assert parser.next_frame() == b"abc"
    assert parser.next_frame() is None
    assert parser.buffered_bytes == 1


# --- send queue ----------------------------------------------------------------------------
def test_queue_drops_the_oldest_beyond_its_frame_limit() -> None:
    queue = SendQueue(frames_max=3, bytes_max=1 << 20)
    dropped = [queue.push(bytes([number])) for number in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert queue.take_batch(1 << 20) == [b"\x02", b"\x03", b"\x04"]
    assert len(queue) == 0 and queue.queued_bytes == 0
    assert not queue.nonempty.is_set()


def test_queue_drops_the_oldest_beyond_its_byte_limit() -> None:
    queue = SendQueue(frames_max=100, bytes_max=3 * (10 + 4))
    for number in range(5):
        queue.push(bytes([number]) * 10)
    assert len(queue) == 3
    assert queue.queued_bytes == 3 * 14
    assert [payload[0] for payload in queue.take_batch(1 << 20)] == [2, 3, 4]


def test_queue_keeps_a_frame_larger_than_its_byte_limit_alone() -> None:
    queue = SendQueue(frames_max=100, bytes_max=10)
    queue.push(b"a")
    assert queue.push(b"x" * 50) == 1
    assert queue.take_batch(1) == [b"x" * 50]


def test_take_batch_respects_its_byte_limit_but_always_takes_one() -> None:
    queue = SendQueue(frames_max=100, bytes_max=1 << 20)
    for _ in range(10):
        queue.push(b"y" * 96)  # 100 bytes a frame with its header
    assert len(queue.take_batch(350)) == 3
    assert len(queue.take_batch(1)) == 1
    assert len(queue) == 6
    assert queue.nonempty.is_set()
    assert queue.clear() == 6
    assert not queue.nonempty.is_set()


# --- backoff -------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(0.05, 1.0, random.Random(3))
    delays = [backoff.next_delay_seconds() for _ in range(10)]
    ceilings = [min(1.0, 0.05 * 2**attempt) for attempt in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay_seconds() <= 0.05


def test_backoff_is_reproducible_from_its_seed() -> None:
    def delays(seed: int) -> list[float]:
        backoff = Backoff(0.05, 1.0, random.Random(seed))
        return [backoff.next_delay_seconds() for _ in range(100)]

    assert delays(5) == delays(5)
    assert delays(5) != delays(6)
    assert max(delays(5)) <= 1.0


# --- handshake -----------------------------------------------------------------------------
SETTINGS = LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=15, check_quorum=True)
OURS = "node 1 has election timeout 150 ms (tick 10 ms), check-quorum on"


def hello(**changes: object) -> Handshake:
    fields: dict[str, object] = {
        "magic": HANDSHAKE_MAGIC,
        "protocol_version": PROTOCOL_VERSION,
        "cluster_id": "c",
        "node_id": 2,
        "to_node_id": 1,
        "client_address": "127.0.0.1:8002",
        "lease": SETTINGS,
    }
    fields.update(changes)
    return Handshake(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("handshake", "accept_unknown", "reason"),
    [
        (hello(), False, None),
        (hello(to_node_id=0), False, None),
        (hello(to_node_id=3), False, "addressed to node 3 but this is node 1"),
        (hello(node_id=1), True, "node id 1 is this node's own id"),
        (hello(node_id=0), True, "invalid node id 0"),
        (hello(node_id=9), False, "unknown node id 9 (not a configured peer)"),
        (hello(node_id=9), True, None),
        (
            hello(lease=LeaseSettings(10, 100, True)),
            False,
            "lease settings differ: node 2 has election timeout 100 ms (tick 10 ms), "
            f"check-quorum on; {OURS} (every node needs the same tick, minimum election "
            "timeout and check-quorum setting)",
        ),
        (
            hello(lease=None),
            False,
            f"lease settings differ: node 2 has no lease settings; {OURS} (every node needs the "
            "same tick, minimum election timeout and check-quorum setting)",
        ),
    ],
)
def test_check_handshake(handshake: Handshake, accept_unknown: bool, reason: str | None) -> None:
    answer = check_handshake(
        handshake,
        cluster_id="c",
        node_id=1,
        lease_settings=SETTINGS,
        known_peers={2, 3},
        accept_unknown_peers=accept_unknown,
    )
    if reason is None:
        assert answer is None
    else:
        assert answer is not None and (answer.reply, answer.log) == (reason, reason)


def test_a_wrong_cluster_id_is_answered_without_the_real_one() -> None:
    answer = check_handshake(
        hello(cluster_id="x"),
        cluster_id="secret-cluster",
        node_id=1,
        lease_settings=SETTINGS,
        known_peers={2},
        accept_unknown_peers=False,
    )
    assert answer is not None
    assert answer.reply == "cluster id 'x' is not this node's cluster id"
    assert answer.log == "cluster id 'x' != 'secret-cluster'"


@pytest.mark.parametrize(
    "changes",
    [
        {"tick_ms": 20, "election_timeout_ticks_min": 15},  # 300 ms
        {"tick_ms": 20, "election_timeout_ticks_min": 7},  # 140 ms
        {"election_timeout_ticks_min": 14},
        {"election_timeout_ticks_min": 16},
        {"check_quorum": False},
    ],
)
def test_any_lease_setting_that_differs_is_refused(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "tick_ms": 10,
        "election_timeout_ticks_min": 15,
        "check_quorum": True,
    }
    fields.update(changes)
    theirs = LeaseSettings.of(**fields)  # type: ignore[arg-type]
    answer = check_handshake(
        hello(lease=theirs),
        cluster_id="c",
        node_id=1,
        lease_settings=SETTINGS,
        known_peers={2},
        accept_unknown_peers=False,
    )
    assert answer is not None and theirs.describe() in answer.log and OURS in answer.log


def test_lease_settings_are_the_effective_ones() -> None:
    # The timeout the core counts (ticks times the tick), not the flag's text.
    assert LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=15, check_quorum=True) == (
        LeaseSettings(tick_ms=10, election_timeout_ms_min=150, check_quorum=True)
    )


def test_handshake_round_trips_and_ignores_fields_of_a_later_version() -> None:
    assert decode_handshake(encode_handshake(hello())) == hello()
    later = msgspec.msgpack.encode(
        {
            "magic": HANDSHAKE_MAGIC,
            "protocol_version": PROTOCOL_VERSION,
            "cluster_id": "c",
            "node_id": 2,
            "compression": "zstd",
        }
    )
    assert decode_handshake(later).node_id == 2


def test_handshake_of_another_version_is_refused_for_its_version() -> None:
    other = msgspec.msgpack.encode({"magic": HANDSHAKE_MAGIC, "protocol_version": 1, "ids": []})
    with pytest.raises(FrameError, match=f"protocol version 1 != {PROTOCOL_VERSION}"):
        decode_handshake(other)


# --- limits --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"send_queue_frames_max": 0},
        {"frame_bytes_max": 1 << 32},
        {"handshake_timeout_seconds": 0.0},
        {"reconnect_backoff_initial_seconds": 2.0, "reconnect_backoff_max_seconds": 1.0},
    ],
)
def test_limits_refuse_nonsense(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TransportLimits(**changes)  # type: ignore[arg-type]
