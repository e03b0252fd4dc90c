"""Hostile clients of the client port (issue #13): heads that never end, clients that
never read, floods of idle connections from one address, bodies of tiny chunks. Each bound
is checked through the server's own accounting, driven either through a fake transport
(exact chunk boundaries) or over real sockets on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc

import pytest

from raftkv.server.http_server import (
    CHUNKS_PER_BODY_MAX,
    HEAD_BYTES_MAX,
    HEADER_BYTES_MAX,
    HEADER_FIELDS_MAX,
    OUTPUT_BYTES_HIGH,
    HttpServer,
    Request,
    Response,
    _address_key,
    _Connection,
)

from .test_http_framing import FakeTransport, answered, echo, parse_responses
from .test_http_server import DEADLINE, wait_until

BODY_MAX = 4096


def fake_connection(server: HttpServer) -> tuple[_Connection, FakeTransport]:
    connection = _Connection(server)
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


# --- item 7: a head is bounded as it arrives ------------------------------------------------
def test_a_header_that_never_ends_is_refused_as_its_bytes_arrive() -> None:
    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX)
        connection, transport = fake_connection(server)
        connection.data_received(b"GET /h HTTP/1.1\r\nX-Endless: ")
        fed = 0
        piece = b"a" * 1024
        while not transport.closed:
            assert fed <= HEAD_BYTES_MAX + len(piece), "an endless header is still buffered"
            connection.data_received(piece)
            fed += len(piece)
        [(status, headers, _)] = parse_responses(bytes(transport.written))
        assert (status, headers["connection"]) == (431, "close")

    asyncio.run(main())


def test_a_head_just_within_the_limits_arriving_byte_by_byte_is_served() -> None:
    value = b"v" * (HEADER_BYTES_MAX // HEADER_FIELDS_MAX - 8)
    fields = b"".join(b"X-%02d: %s\r\n" % (n, value) for n in range(HEADER_FIELDS_MAX))
    request = b"GET /" + b"u" * 8000 + b" HTTP/1.1\r\n" + fields + b"\r\n"

    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX)
        connection, transport = fake_connection(server)
        for n in range(len(request)):
            connection.data_received(request[n : n + 1])
        await answered(connection)
        [(status, _, _)] = parse_responses(bytes(transport.written))
        assert status == 200 and not transport.closed

    asyncio.run(main())


# --- item 10: a chunked body costs memory by its size, not its chunk count ----------------------
def test_a_body_of_tiny_chunks_is_held_in_memory_proportional_to_its_size() -> None:
    chunks = 1500  # 3,000 bytes of body in 2-byte chunks, each fed on its own

    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX)
        connection, transport = fake_connection(server)
        connection.data_received(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(chunks):
                connection.data_received(b"2\r\n%02d\r\n" % (n % 100))
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        body_bytes = 2 * chunks
        assert held < 2 * body_bytes + 2048, f"{held} bytes held for a {body_bytes}-byte body"
        connection.data_received(b"0\r\n\r\n")
        await answered(connection)
        [(status, _, answer)] = parse_responses(bytes(transport.written))
        expected = "".join(f"{n % 100:02d}" for n in range(chunks))
        assert status == 200 and json.loads(answer)["b"] == expected

    asyncio.run(main())


# --- item 8: a client that never reads holds a bounded amount of output -------------------------
ANSWER_BYTES = 256 << 10


served: list[str] = []


async def big_answer(request: Request) -> Response:
    served.append(request.path)
    return Response(200, b"x" * ANSWER_BYTES, "text/plain")


def test_pipelined_requests_of_a_client_that_never_reads_are_not_served_ahead() -> None:
    count = 60  # 15 MiB of answers: far more than the kernel's socket buffers take
    served.clear()

    async def main() -> None:
        server = HttpServer(big_answer, body_bytes_max=BODY_MAX)
        await server.start("127.0.0.1", 0)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer = None
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * count)
            await writer.drain()
            await wait_until(lambda: len(server.connections) == 1)
            [connection] = server.connections
            transport = connection._transport
            assert transport is not None

            def settled() -> bool:
                """The server stopped serving with output backed up (or, unbounded, served
                everything into its buffer)."""
                idle = connection._serving is None
                return idle and (connection._writing_paused or len(served) == count)

            await wait_until(settled)
            pending = transport.get_write_buffer_size()
            assert pending <= OUTPUT_BYTES_HIGH + ANSWER_BYTES + 1024, f"{pending} bytes held"
            assert len(served) < count, "every answer was written whatever the client read"
            # Once the client reads, the rest is served, in order.
            for _ in range(count):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
                assert head.startswith(b"HTTP/1.1 200")
                await asyncio.wait_for(reader.readexactly(ANSWER_BYTES), DEADLINE)
            assert len(served) == count
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()
            await server.close(grace_seconds=1.0)

    asyncio.run(main())


def test_a_client_that_stops_reading_is_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX, idle_timeout=5.0)
        connection, _ = fake_connection(server)
        connection.data_received(b"GET /a HTTP/1.1\r\n\r\n" * 3)
        connection.pause_writing()  # the socket took no more
        if connection._serving is not None:
            await connection._serving  # the one under way is answered, no other is served
        assert connection._serving is None and len(connection._queue) == 2
        now = asyncio.get_running_loop().time()
        assert not connection.expired(now + 4.0)
        assert connection.expired(now + 6.0)

    asyncio.run(main())


# --- item 9: per-address limits; idle time is measured on requests ------------------------------
class ManualClock:
    """The server's event loop with a `time()` the test sets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(self._loop, name)


def test_a_client_reading_a_large_answer_slowly_is_not_closed_while_it_reads() -> None:
    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX, idle_timeout=5.0)
        connection, transport = fake_connection(server)
        transport.unsent = 10 * OUTPUT_BYTES_HIGH  # a backup, mostly unsent
        connection.pause_writing()
        now = asyncio.get_running_loop().time()
        for step in range(1, 6):  # another OUTPUT_BYTES_HIGH read every 4 s: 20 s in all
            transport.unsent -= OUTPUT_BYTES_HIGH
            assert not connection.expired(now + 4.0 * step)
        # Then it stops reading: closed one idle timeout after its last progress.
        assert not connection.expired(now + 20.0 + 4.0)
        assert connection.expired(now + 20.0 + 6.0)

    asyncio.run(main())


def test_blank_lines_do_not_keep_a_connection_open_past_the_idle_timeout() -> None:
    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX, idle_timeout=5.0)
        clock = ManualClock(server.loop)
        server.loop = clock  # type: ignore[assignment]
        connection, transport = fake_connection(server)
        connection.data_received(b"GET /a HTTP/1.1\r\n\r\n")
        await answered(connection)
        clock.now = 4.0
        connection.data_received(b"\r\n" * 100)  # begins no request
        assert connection.expired(5.5), "blank lines counted as activity"
        # A request is activity.
        other, _ = fake_connection(server)
        other.data_received(b"GET /b HTTP/1.1\r\n\r\n")
        await answered(other)
        assert not other.expired(5.5) and other.expired(9.5)
        assert len(parse_responses(bytes(transport.written))) == 1

    asyncio.run(main())


def test_connections_from_one_address_are_capped_and_others_still_served() -> None:
    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX, max_connections_per_address=2)
        await server.start("127.0.0.1", 0)
        writers: list[asyncio.StreamWriter] = []

        async def connect(source: str) -> asyncio.StreamReader:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, local_addr=(source, 0)
            )
            writers.append(writer)
            return reader

        async def answer(reader: asyncio.StreamReader, request: bytes = b"") -> int:
            if request:
                writers[-1].write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
            return int(head.split()[1])

        try:
            await connect("127.0.0.1")
            await connect("127.0.0.1")
            flood = await connect("127.0.0.1")
            assert await answer(flood) == 503
            other = await connect("127.0.0.2")
            assert await answer(other, b"GET /other HTTP/1.1\r\n\r\n") == 200
            writers[0].close()
            await wait_until(lambda: server.connections_by_address.get("127.0.0.1") == 1)
            again = await connect("127.0.0.1")
            assert await answer(again, b"GET /again HTTP/1.1\r\n\r\n") == 200
        finally:
            for writer in writers:
                writer.close()
            await server.close(grace_seconds=1.0)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        (("10.1.2.3", 5), "10.1.2.3"),
        (("2001:db8:1:2:aaaa::1", 5, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5, 0, 0), "2001:db8:1:2::/64"),
        (("::ffff:10.1.2.3", 5, 0, 0), "10.1.2.3"),
        ("/tmp/socket", None),
        (None, None),
    ],
)
def test_connections_are_counted_per_ipv4_address_or_ipv6_64(peer: object, key: str | None) -> None:
    assert _address_key(peer) == key


def test_pipelined_bodies_are_bounded_in_bytes_not_only_in_count() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def held(request: Request) -> Response:
            await gate.wait()
            return await echo(request)

        server = HttpServer(held, body_bytes_max=BODY_MAX)
        connection, transport = fake_connection(server)
        body = b"b" * (BODY_MAX - 100)
        put = b"PUT /p HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        connection.data_received(put * 4)  # far below PIPELINE_MAX requests
        assert not transport.reading, "more than a body's worth of requests queued, still reading"
        gate.set()
        await answered(connection)
        assert transport.reading and len(parse_responses(bytes(transport.written))) == 4

    asyncio.run(main())


@pytest.mark.parametrize(
    ("total", "per_address"), [(2, 256), (1_000, 256), (2_000, 500), (10_000, 1_000)]
)
def test_the_default_per_address_cap_is_a_share_of_the_connections(
    total: int, per_address: int
) -> None:
    async def main() -> int:
        server = HttpServer(echo, body_bytes_max=BODY_MAX, max_connections=total)
        return server.max_connections_per_address

    assert asyncio.run(main()) == per_address


# --- the attack suite's finding: a body in tiny chunks costs time per chunk -----------------
def test_a_chunked_body_of_too_many_pieces_is_refused() -> None:
    """Each piece is a parser callback: 512 KiB in 1-byte chunks kept the loop busy for a
    quarter of a second and cost a leader its office (tests/process/test_attacks.py)."""

    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX)
        connection, transport = fake_connection(server)
        connection.data_received(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        connection.data_received(b"1\r\nx\r\n" * (CHUNKS_PER_BODY_MAX + 10))
        await answered(connection)
        [(status, _, answer)] = parse_responses(bytes(transport.written))
        assert status == 400 and b"chunks" in answer
        assert transport.closed

    asyncio.run(main())


def test_a_chunked_body_within_the_piece_limit_is_served() -> None:
    async def main() -> None:
        server = HttpServer(echo, body_bytes_max=BODY_MAX)
        connection, transport = fake_connection(server)
        connection.data_received(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        connection.data_received(b"1\r\nx\r\n" * (CHUNKS_PER_BODY_MAX - 1) + b"0\r\n\r\n")
        await answered(connection)
        [(status, _, answer)] = parse_responses(bytes(transport.written))
        assert status == 200 and json.loads(answer)["b"] == "x" * (CHUNKS_PER_BODY_MAX - 1)

    asyncio.run(main())
