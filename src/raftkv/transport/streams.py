"""Small helpers over asyncio streams shared by both ends of a TCP peer connection.

Timeouts use `asyncio.timeout()`, never `asyncio.wait_for()`: on Python 3.11 `wait_for` can
swallow a cancellation that arrives as the awaited operation completes, and a peer task that
ignores its cancellation would redial forever after `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from raftkv.errors import ConnectionClosed
from raftkv.transport.framing import FrameParser


async def read_frame(reader: asyncio.StreamReader, parser: FrameParser, chunk_bytes: int) -> bytes:
    """The next payload from the stream; raises `ConnectionClosed` at end of stream and
    `FrameError` for an oversized length."""
    while (payload := parser.next_frame()) is None:
        data = await reader.read(chunk_bytes)
        if not data:
            raise ConnectionClosed("connection closed by the other side")
        parser.feed(data)
    return payload


async def close_writer(writer: asyncio.StreamWriter, timeout_seconds: float) -> None:
    """Close a connection, waiting a bounded time; errors while closing mean it is closed."""
    writer.close()
    # A reset or a timeout here changes nothing: the socket is gone either way.
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout_seconds):
            await writer.wait_closed()


def describe_remote(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def remote_host(remote: str) -> str:
    """The host part of a `describe_remote` answer: refusals are grouped by host, since a
    redialing stranger comes from a new port each time."""
    return remote.rsplit(":", 1)[0]


def set_unacknowledged_send_timeout(writer: asyncio.StreamWriter, timeout_seconds: float) -> None:
    """Set TCP_USER_TIMEOUT where the platform has it (Linux); elsewhere a no-op."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    connection = writer.get_extra_info("socket")
    if option is None or connection is None:
        return
    # Best effort: a platform that refuses the option still has a working connection.
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.IPPROTO_TCP, option, int(timeout_seconds * 1000))
