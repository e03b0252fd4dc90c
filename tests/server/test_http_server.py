"""The HTTP/1.1 server under the client API, over raw sockets: keep-alive, pipelining order,
`Expect: 100-continue`, chunked bodies, every limit, garbage, idle and slow clients, HEAD,
handler failures and shutdown. Each test runs its own server on a free loopback port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from raftkv.server import http_server
from raftkv.server.http_server import (
    HEADER_FIELDS_MAX,
    PIPELINE_MAX,
    URL_BYTES_MAX,
    HttpServer,
    Request,
    Response,
)

BODY_MAX = 1000
DEADLINE = 10.0
# Timeouts are checked by calling `server.sweep(now)` with a chosen `now`; the server's own
# sweeper is set never to run.
NEVER = 3600.0
IDLE = 5.0
REQUEST = 30.0


class Recorder:
    """A handler that echoes each request as JSON, and can be held at `/hold/...` until
    the test releases it."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.held: dict[str, asyncio.Event] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def hold(self, path: str) -> None:
        self.held[path] = asyncio.Event()
        self.arrived[path] = asyncio.Event()

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if request.path in self.held:
            self.arrived[request.path].set()
            await self.held[request.path].wait()
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        return Response.json(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "body": request.body.decode(),
            }
        )


def open_connections(server: HttpServer) -> int:
    """Connections the server has not closed (closing is immediate; leaving the set is not)."""
    return sum(1 for connection in server.connections if connection.is_open)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the loop run (it has socket events to handle) until `condition` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read one response: (status, lower-cased headers, body)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers, b""

    async def full_response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status, headers, _ = await self.response()
        length = 0 if head_only else int(headers["content-length"])
        body = await asyncio.wait_for(self.reader.readexactly(length), DEADLINE)
        return status, headers, body

    async def closed(self) -> bool:
        """True once the server has closed the connection (EOF), within the deadline."""
        rest = await asyncio.wait_for(self.reader.read(), DEADLINE)
        return rest == b""


def run(
    test: Callable[[HttpServer, Recorder, Callable[[], Awaitable[Client]]], Awaitable[None]],
    **options: float,
) -> None:
    async def main() -> None:
        recorder = Recorder()
        server = HttpServer(recorder, body_bytes_max=BODY_MAX, **options)
        await server.start("127.0.0.1", 0)
        clients: list[Client] = []

        async def connect() -> Client:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            clients.append(Client(reader, writer))
            return clients[-1]

        try:
            await test(server, recorder, connect)
        finally:
            for client in clients:
                client.writer.close()
            await server.close(grace_seconds=1.0)

    asyncio.run(main())


def put(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path.encode(),
        len(body),
        extra,
        body,
    )


def get(path: str, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: t\r\n%s\r\n" % (path.encode(), version, extra)


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        for number in range(3):
            await client.send(put(f"/v1/kv/k{number}", b'{"value":"v"}'))
            status, headers, body = await client.full_response()
            assert status == 200
            assert headers["content-type"] == "application/json"
            assert "date" in headers and "connection" not in headers
            assert json.loads(body) == {
                "method": "PUT",
                "path": f"/v1/kv/k{number}",
                "query": {},
                "body": '{"value":"v"}',
            }
        assert len(server.connections) == 1

    run(test)


def test_pipelined_responses_keep_request_order() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        recorder.hold("/slow")
        client = await connect()
        await client.send(get("/slow") + get("/fast") + put("/third", b"x"))
        await asyncio.wait_for(recorder.arrived["/slow"].wait(), DEADLINE)
        # The later requests are parsed but wait their turn behind the held one.
        assert [r.path for r in recorder.requests] == ["/slow"]
        recorder.held["/slow"].set()
        paths = [json.loads((await client.full_response())[2])["path"] for _ in range(3)]
        assert paths == ["/slow", "/fast", "/third"]

    run(test)


def test_a_long_pipeline_in_one_write_is_answered_in_order() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        count = PIPELINE_MAX * 6
        await client.send(b"".join(get(f"/p/{n}") for n in range(count)))
        for n in range(count):
            status, _, body = await client.full_response()
            assert status == 200 and json.loads(body)["path"] == f"/p/{n}"

    run(test)


@pytest.mark.parametrize(
    ("request_bytes", "version"),
    [(get("/a", version=b"1.0"), "1.0"), (get("/a", b"Connection: close\r\n"), "1.1")],
)
def test_a_request_without_keep_alive_is_answered_then_closed(
    request_bytes: bytes, version: str
) -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        # A request after the last one is ignored, not answered.
        await client.send(request_bytes + get("/ignored"))
        status, headers, _ = await client.full_response()
        assert status == 200 and headers["connection"] == "close", version
        assert await client.closed()
        assert [r.path for r in recorder.requests] == ["/a"]

    run(test)


def test_expect_100_continue_is_answered_before_the_body() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        body = b'{"value":"after continue"}'
        head = b"PUT /k HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
        await client.send(head)
        status, _, _ = await client.response()
        assert status == 100
        await client.send(body)
        status, _, answer = await client.full_response()
        assert status == 200 and json.loads(answer)["body"] == body.decode()

    run(test)


def test_expect_100_continue_with_too_big_a_body_gets_413_and_no_continue() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        head = b"PUT /k HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (
            BODY_MAX + 1
        )
        await client.send(head)
        status, headers, body = await client.full_response()
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["error"] == "too_large"
        # The server half-closes at once (the client sees the end of the answer), then
        # closes for good once it has waited a little for a body that never comes.
        assert await client.closed()
        now = asyncio.get_running_loop().time()
        server.sweep(now + http_server.LINGER_SECONDS / 2)
        assert open_connections(server) == 1, "closed while still lingering"
        server.sweep(now + http_server.LINGER_SECONDS + 1)
        await wait_until(lambda: not server.connections)
        assert recorder.requests == []

    run(test, sweep_seconds=NEVER)


def test_an_oversized_body_is_drained_then_answered_413_and_closed() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(get("/before") + put("/big", b"x" * (BODY_MAX * 50)))
        assert json.loads((await client.full_response())[2])["path"] == "/before"
        status, headers, body = await client.full_response()
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["error"] == "too_large"
        assert await client.closed()
        assert [r.path for r in recorder.requests] == ["/before"]

    run(test)


def test_chunked_bodies_are_decoded_and_limited() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        chunked = b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        await client.send(chunked + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        status, _, body = await client.full_response()
        assert status == 200 and json.loads(body)["body"] == "abcde"
        chunk = b"x" * 600
        await client.send(chunked + (b"258\r\n" + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
        status, _, body = await client.full_response()
        assert status == 413 and json.loads(body)["error"] == "too_large"
        assert await client.closed()
        assert len(recorder.requests) == 1

    run(test)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)), 400),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"PUT /k HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (get("/" + "u" * URL_BYTES_MAX), 414),
        (get("/h", b"".join(b"X-%d: 1\r\n" % n for n in range(HEADER_FIELDS_MAX + 1))), 431),
        (get("/h", b"X-Big: " + b"b" * (17 << 10) + b"\r\n"), 431),
        (get("/%ff%fe"), 400),
        (get("http://elsewhere/absolute"), 400),
    ],
    ids=["tls", "garbage", "bad-length", "long-url", "many-headers", "big-header", "utf8", "abs"],
)
def test_bad_requests_get_one_json_error_and_a_close(raw: bytes, status: int) -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(raw)
        got, headers, body = await client.full_response()
        assert got == status and headers["connection"] == "close"
        assert json.loads(body)["error"] == "bad_request"
        assert await client.closed()
        assert recorder.requests == []
        # The server itself is unharmed.
        other = await connect()
        await other.send(get("/ok"))
        assert (await other.full_response())[0] == 200

    run(test)


def test_paths_are_percent_decoded_and_the_first_query_value_wins() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(get("/v1/kv/a%2Fb%20%C3%A9?consistency=stale&x=1&x=2&empty="))
        body = json.loads((await client.full_response())[2])
        assert body["path"] == "/v1/kv/a/b é"
        assert body["query"] == {"consistency": "stale", "x": "1", "empty": ""}

    run(test)


def test_head_gets_the_headers_of_get_without_the_body() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(b"HEAD /h HTTP/1.1\r\n\r\n" + get("/after"))
        status, headers, _ = await client.full_response(head_only=True)
        assert status == 200 and int(headers["content-length"]) > 0
        status, _, body = await client.full_response()
        assert json.loads(body)["path"] == "/after"

    run(test)


def test_a_handler_failure_is_a_500_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(get("/boom") + get("/after"))
        status, _, body = await client.full_response()
        assert status == 500 and json.loads(body)["error"] == "internal"
        assert (await client.full_response())[0] == 200

    run(test)
    assert "handler bug" in caplog.text


def test_an_upgrade_is_answered_without_upgrading_then_closed() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(get("/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n") + b"xx")
        assert (await client.full_response())[0] == 200
        assert await client.closed()

    run(test)


def test_idle_connections_are_closed() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(get("/once"))
        assert (await client.full_response())[0] == 200
        now = asyncio.get_running_loop().time()
        server.sweep(now + IDLE / 2)
        assert open_connections(server) == 1, "closed before its idle timeout"
        server.sweep(now + IDLE + 1)
        assert await client.closed()

    run(test, idle_timeout=IDLE, sweep_seconds=NEVER)


def test_a_request_that_never_finishes_is_cut_off() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(b"GET /slowloris HTTP/1.1\r\nX-1: a\r\n")
        await wait_until(lambda: any(c.mid_request for c in server.connections))
        now = asyncio.get_running_loop().time()
        server.sweep(now + IDLE + 1)  # past the idle timeout, but a request is under way
        assert open_connections(server) == 1, "cut off before its request timeout"
        server.sweep(now + REQUEST + 1)
        assert await client.closed()
        assert recorder.requests == []

    run(test, idle_timeout=IDLE, request_timeout=REQUEST, sweep_seconds=NEVER)


def test_a_held_request_is_not_idle() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        recorder.hold("/slow")
        client = await connect()
        await client.send(get("/slow"))
        await asyncio.wait_for(recorder.arrived["/slow"].wait(), DEADLINE)
        # Long past the idle timeout while the handler works: the connection stays.
        server.sweep(asyncio.get_running_loop().time() + IDLE * 100)
        assert open_connections(server) == 1
        recorder.held["/slow"].set()
        assert (await client.full_response())[0] == 200

    run(test, idle_timeout=IDLE, sweep_seconds=NEVER)


def test_close_lets_requests_in_flight_answer_then_closes_connections() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        recorder.hold("/slow")
        client = await connect()
        idle_client = await connect()
        await client.send(get("/slow"))
        await asyncio.wait_for(recorder.arrived["/slow"].wait(), DEADLINE)
        port = server.port
        closing = asyncio.create_task(server.close(grace_seconds=DEADLINE))
        recorder.held["/slow"].set()
        assert (await client.full_response())[0] == 200
        await asyncio.wait_for(closing, DEADLINE)
        assert await client.closed()
        assert await idle_client.closed()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    run(test)


@pytest.mark.parametrize("length", [b"9" * 20, b"9" * 5000])
def test_an_absurd_content_length_is_refused_without_a_handler_call(
    length: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(b"PUT /k HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\nxx")
        status, headers, _ = await client.full_response()
        assert status in (400, 413) and headers["connection"] == "close"
        assert await client.closed()
        assert recorder.requests == []

    run(test)
    assert "callback failed" not in caplog.text


def test_connections_over_the_cap_get_503_overloaded_and_a_close() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        first, second = await connect(), await connect()
        third = await connect()
        status, headers, body = await third.full_response()
        assert status == 503 and headers["connection"] == "close"
        assert json.loads(body)["error"] == "overloaded"
        assert await third.closed()
        for client in (first, second):
            await client.send(get("/still-served"))
            assert (await client.full_response())[0] == 200
        first.writer.close()
        await wait_until(lambda: len(server.connections) < 2)
        fourth = await connect()
        await fourth.send(get("/room-again"))
        assert (await fourth.full_response())[0] == 200

    run(test, max_connections=2)


@pytest.mark.parametrize(
    "ending",
    [
        get("/%ff"),  # a bad URL, found only once the message is complete
        b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % (BODY_MAX + 1)
        + b"x" * (BODY_MAX + 1)
        + b"\r\n0\r\n\r\n",  # a chunked body over the limit, drained to its end
    ],
    ids=["bad-url", "chunked-too-large"],
)
def test_requests_pipelined_after_a_rejection_are_never_served(ending: bytes) -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        await client.send(get("/first") + ending + get("/after") + put("/after2", b"{}"))
        assert (await client.full_response())[0] == 200
        status, headers, _ = await client.full_response()
        assert status in (400, 413) and headers["connection"] == "close"
        assert await client.closed()
        assert [r.path for r in recorder.requests] == ["/first"]

    run(test)


def test_http10_keep_alive_is_confirmed_and_kept() -> None:
    async def test(server: HttpServer, recorder: Recorder, connect) -> None:
        client = await connect()
        for path in ("/one", "/two"):
            await client.send(get(path, b"Connection: keep-alive\r\n", version=b"1.0"))
            status, headers, body = await client.full_response()
            assert status == 200 and headers["connection"] == "keep-alive"
            assert json.loads(body)["path"] == path
        await client.send(get("/last", version=b"1.0"))
        status, headers, _ = await client.full_response()
        assert headers["connection"] == "close"
        assert await client.closed()

    run(test)
