"""Streamed answers on the HTTP server (`StreamResponse`, the dashboard's Server-Sent
Events): the head and framing, the end of the stream closing the connection, and the bound
on what a client that does not read can make the node hold: it is cut off, its stream is
closed, and the node keeps serving everyone else."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

from raftkv.server.http_server import (
    STREAM_UNSENT_BYTES_MAX,
    HttpServer,
    Request,
    Response,
    StreamResponse,
)
from tests.waiting import wait_until

EVENTS = [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b'data: {"n":3}\n\n']


class Streams:
    """A handler: `/events` streams EVENTS and ends, `/flood` streams without end, every
    other path answers a small JSON body."""

    def __init__(self) -> None:
        self.closed = 0
        self.pieces_sent = 0

    async def handle(self, request: Request) -> Response | StreamResponse:
        if request.path == "/events":
            return StreamResponse(self._events())
        if request.path == "/flood":
            return StreamResponse(self._flood())
        return Response.json({"ok": True})

    async def _events(self) -> AsyncIterator[bytes]:
        try:
            for event in EVENTS:
                yield event
        finally:
            self.closed += 1

    async def _flood(self) -> AsyncIterator[bytes]:
        try:
            piece = b"data: " + b"x" * (16 << 10) + b"\n\n"
            while True:
                self.pieces_sent += 1
                yield piece
                await asyncio.sleep(0)
        finally:
            self.closed += 1


async def serve(streams: Streams) -> HttpServer:
    server = HttpServer(streams.handle, body_bytes_max=1 << 20)
    await server.start("127.0.0.1", 0)
    return server


async def read_all(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(-1), 20)
    finally:
        writer.close()


def test_a_stream_has_no_length_closes_the_connection_and_serves_nothing_after_it() -> None:
    async def run() -> None:
        streams = Streams()
        server = await serve(streams)
        try:
            # A request pipelined after the stream is never served: the stream is last.
            raw = await read_all(
                server.port,
                b"GET /events HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            head, _, body = raw.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0] == b"HTTP/1.1 200 OK"
            assert b"Content-Type: text/event-stream" in lines
            assert b"Connection: close" in lines and b"Cache-Control: no-store" in lines
            assert not any(line.lower().startswith(b"content-length") for line in lines)
            assert body == b"".join(EVENTS)
            assert streams.closed == 1

            head_only = await read_all(server.port, b"HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head_only.endswith(b"\r\n\r\n") and b"event-stream" in head_only
        finally:
            await server.close(grace_seconds=1.0)

    asyncio.run(run())


def test_a_client_that_never_reads_is_cut_off_and_the_node_keeps_serving() -> None:
    async def run() -> None:
        streams = Streams()
        server = await serve(streams)
        stalled = socket.socket()
        try:
            # A small receive window: the server's output piles up in its own buffer.
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.setblocking(False)
            await asyncio.get_running_loop().sock_connect(stalled, ("127.0.0.1", server.port))
            stalled.send(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
            # Never read from here on.
            await wait_until(lambda: streams.closed == 1, "the stalled stream cut off")
            # Cut off once the unsent bytes passed the bound: what was written in all is the
            # bound, what the kernel's buffers took, and one piece.
            assert streams.pieces_sent * (16 << 10) < STREAM_UNSENT_BYTES_MAX + (32 << 20)
            await wait_until(lambda: not server.connections, "the connection closed")
            answer = await read_all(server.port, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b'{"ok":true}')
        finally:
            stalled.close()
            await server.close(grace_seconds=1.0)

    asyncio.run(run())


def test_a_stream_whose_client_leaves_is_closed_at_once() -> None:
    async def run() -> None:
        streams = Streams()
        waiting = asyncio.Event()

        async def forever() -> AsyncIterator[bytes]:
            try:
                yield b": open\n\n"
                await waiting.wait()  # no next piece for a long time
                yield b"data: late\n\n"
            finally:
                streams.closed += 1

        async def handle(request: Request) -> Response | StreamResponse:
            return StreamResponse(forever())

        server = HttpServer(handle, body_bytes_max=1 << 20)
        await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b": open\n\n")
            writer.close()
            await wait_until(lambda: streams.closed == 1, "the stream closed with its client")
        finally:
            await server.close(grace_seconds=1.0)

    asyncio.run(run())
