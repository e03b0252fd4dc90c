"""Hostile clients of the client port (issue #13): heads that never end, clients that
never read, floods of idle connections from one address, bodies of tiny chunks. Each bound
is checked through the server's own accounting, driven either through a fake transport
(exact chunk boundaries) or over real sockets on a free loopback port."""

from __future__ import annotations

import asyncio

from raftkv.server.http_server import (
    HEAD_BYTES_MAX,
    HEADER_BYTES_MAX,
    HEADER_FIELDS_MAX,
    HttpServer,
    _Connection,
)

from .test_http_framing import FakeTransport, answered, echo, parse_responses

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
