"""Length-prefixed frames (transport/framing.py, transport/streams.py): whatever bytes
arrive, cut wherever, `FrameParser` yields exactly the payloads that were framed or raises
`FrameError` for a length over its limit as soon as the 4 header bytes arrive, without
buffering or allocating the announced size; `read_frame` adds `ConnectionClosed` at the end
of the stream."""

from __future__ import annotations

import asyncio
import itertools
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.errors import ConnectionClosed, FrameError
from raftkv.transport.framing import FrameParser, encode_frame, join_frames
from raftkv.transport.streams import read_frame

from .fuzzing import fuzz

LIMIT = 1024

payload_lists = st.lists(st.binary(max_size=300), max_size=6)


def _pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def _parse(parser: FrameParser, pieces: list[bytes]) -> list[bytes]:
    payloads = []
    for piece in pieces:
        parser.feed(piece)
        while (payload := parser.next_frame()) is not None:
            payloads.append(payload)
    return payloads


@fuzz
@given(payloads=payload_lists, cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_framed_payloads_come_back_whatever_the_cuts(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = join_frames(payloads)
    assert stream == b"".join(encode_frame(payload) for payload in payloads)
    parser = FrameParser(LIMIT)
    assert _parse(parser, _pieces(stream, cuts)) == payloads
    assert parser.buffered_bytes == 0


@fuzz
@given(
    stream=st.binary(max_size=600) | payload_lists.map(join_frames),
    length=st.sampled_from([LIMIT + 1, 2**31 - 1, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1),
    position=st.integers(min_value=0),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
)
@example(stream=b"", length=2**31, position=0, cuts=[])
def test_any_stream_yields_bounded_payloads_or_a_frame_error(
    stream: bytes, length: int, position: int, cuts: list[int]
) -> None:
    at = position % (len(stream) + 1)
    stream = stream[:at] + struct.pack(">I", length) + stream[at:]
    parser = FrameParser(LIMIT)
    payloads: list[bytes] = []
    try:
        for piece in _pieces(stream, cuts):
            parser.feed(piece)
            while (payload := parser.next_frame()) is not None:
                payloads.append(payload)
    except FrameError:
        # Refused as soon as a header over the limit was whole: nothing more was buffered
        # than the pieces fed so far, never the announced size.
        assert parser.buffered_bytes <= len(stream)
    assert all(len(payload) <= LIMIT for payload in payloads)
    assert parser.buffered_bytes <= len(stream)


@fuzz
@given(payloads=payload_lists, tail=st.binary(max_size=20), chunk=st.integers(1, 64))
def test_read_frame_returns_the_payloads_then_closed_or_frame_error(
    payloads: list[bytes], tail: bytes, chunk: int
) -> None:
    async def main() -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(join_frames(payloads) + tail)
        reader.feed_eof()
        parser = FrameParser(LIMIT)
        got: list[bytes] = []
        try:
            while True:
                got.append(await read_frame(reader, parser, chunk))
        except FrameError:
            assert len(tail) >= 4  # only a header in the tail can be over the limit
        except ConnectionClosed:
            pass
        return got

    got = asyncio.run(main())
    assert got[: len(payloads)] == payloads
    assert all(len(payload) <= LIMIT for payload in got)
