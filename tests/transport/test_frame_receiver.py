"""An accepted connection's frames delivered from the transport's callback once the stream
is taken over (transport/frame_receiver.py): in order, the bytes read before and buffered by
the stream first; its end, a malformed frame and a failed delivery each end it; the writer
still closes as a stream's does. On asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from raftkv.errors import FrameError
from raftkv.transport.frame_receiver import FrameReceiver
from raftkv.transport.framing import FrameParser, encode_frame
from tests.waiting import wait_until

FRAME_BYTES_MAX = 1 << 20
Server = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    if request.param == "uvloop":
        return lambda main: uvloop.run(main)
    return lambda main: asyncio.run(main)


def frames(numbers: range) -> bytes:
    return b"".join(encode_frame(b"frame %d" % n) for n in numbers)


async def serve_one(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A listening socket whose one connection runs `server`; the client's streams."""
    listener = await asyncio.start_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    connection = await asyncio.open_connection("127.0.0.1", port)
    listener.close()
    return connection


def test_frames_read_and_buffered_before_come_first_in_order(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    delivered: list[bytes] = []

    async def main() -> None:
        taken_over = asyncio.Event()
        more = asyncio.Event()
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            parser = FrameParser(FRAME_BYTES_MAX)
            first = await reader.readexactly(20)  # frame 0 and part of frame 1
            await wait_until(lambda: len(reader._buffer) > 0, "bytes behind in the stream")  # type: ignore[attr-defined]
            parser.feed(first)
            receiver = FrameReceiver.take_over(reader, writer, parser, delivered.append)
            assert receiver is not None
            taken_over.set()
            await more.wait()
            await receiver.ended
            ended.set_result(None)

        _, client = await serve_one(server)
        client.write(frames(range(5)))
        await taken_over.wait()
        assert delivered == [b"frame %d" % n for n in range(5)]  # at once, in the call
        client.write(frames(range(5, 10)))
        await wait_until(lambda: len(delivered) == 10, "the later frames")
        more.set()
        client.close()
        await asyncio.wait_for(ended, 20)  # the end of the stream ends it, with no error

    run(main())
    assert delivered == [b"frame %d" % n for n in range(10)]


def test_an_end_the_stream_saw_first_ends_the_receiver_after_its_frames(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    delivered: list[bytes] = []

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            parser = FrameParser(FRAME_BYTES_MAX)
            parser.feed(await reader.readexactly(4))
            await wait_until(lambda: reader._eof, "the stream at its end")  # type: ignore[attr-defined]
            receiver = FrameReceiver.take_over(reader, writer, parser, delivered.append)
            assert receiver is not None
            await asyncio.wait_for(receiver.ended, 20)
            assert writer.transport.is_closing()
            done.set_result(None)

        _, client = await serve_one(server)
        client.write(frames(range(3)))
        client.close()
        await asyncio.wait_for(done, 20)

    run(main())
    assert delivered == [b"frame %d" % n for n in range(3)]


@pytest.mark.parametrize("failure", ["malformed frame", "failed delivery"])
def test_an_error_ends_the_receiver_and_closes_the_connection(
    run: Callable[[Coroutine[Any, Any, None]], None], failure: str
) -> None:
    delivered: list[bytes] = []

    def deliver(payload: bytes) -> None:
        if payload == b"frame 1" and failure == "failed delivery":
            raise ValueError("undecodable")
        delivered.append(payload)

    async def main() -> None:
        error: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            receiver = FrameReceiver.take_over(reader, writer, FrameParser(64), deliver)
            assert receiver is not None
            try:
                await receiver.ended
            except Exception as ended_by:
                # The stream's protocol was told of the close, or its writer would wait on.
                await asyncio.wait_for(writer.wait_closed(), 20)
                error.set_result(ended_by)

        client_reader, client = await serve_one(server)
        if failure == "malformed frame":
            client.write(encode_frame(b"frame 0") + encode_frame(b"x" * 65))
        else:
            client.write(frames(range(3)))
        ended_by = await asyncio.wait_for(error, 20)
        assert await asyncio.wait_for(client_reader.read(), 20) == b""  # closed on the client
        expected = FrameError if failure == "malformed frame" else ValueError
        assert isinstance(ended_by, expected)

    run(main())
    assert delivered == [b"frame 0"]  # nothing after the error


def test_a_stream_without_the_buffer_read_here_is_left_alone() -> None:
    class OtherReader:  # a future StreamReader that keeps its bytes elsewhere
        pass

    assert (
        FrameReceiver.take_over(
            OtherReader(),  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            FrameParser(FRAME_BYTES_MAX),
            lambda payload: None,
        )
        is None
    )
