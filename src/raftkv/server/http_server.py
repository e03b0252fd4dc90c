"""A small HTTP/1.1 server: asyncio protocols on uvloop, requests parsed by httptools (the
llhttp parser uvicorn uses).

Why not aiohttp's server: on this project's 2-core target, the leader, its followers and the
load generator share the CPUs, and aiohttp's request/response machinery costs about 42 µs of
CPU per request against about 15 µs here (a JSON PUT at 64 connections, same machine;
`make bench-http`). That was half of the leader's CPU at 10,000 writes/s. The API needs
little of HTTP: small JSON bodies, keep-alive, pipelining, `Expect: 100-continue`, chunked
bodies (which httptools decodes), limits on every part of a request, and closing idle
connections.

What a client can rely on:
- Responses come back in request order on each connection (pipelined requests wait their
  turn; the server stops reading at `PIPELINE_MAX` of them or a body's worth of bytes).
- While the client does not read its answers (more than `OUTPUT_BYTES_HIGH` unsent), the
  server stops reading *and serving* that connection: its output is bounded by that plus
  one answer.
- A request line over 8 KiB, headers over 16 KiB or 100 fields (a head still unfinished
  after `HEAD_BYTES_MAX`, counted per chunk as it arrives), or a body over the limit
  gets one error response (`Connection: close`) and the connection closes; an oversized
  body is answered 413 at once, then the server half-closes and drains what is still
  coming (up to `DISCARD_BYTES_MAX`, for `LINGER_SECONDS`) so the client sees the answer.
  A body is held in one buffer, so its memory follows its size, not its chunk count.
- Bytes that are not HTTP get a 400 and a close; they never reach a handler.
- A connection with no request begun and no answer written for `idle_timeout` seconds
  (blank lines are not requests), whose answers have not drained for as long (a client
  reading a large answer counts as draining while it takes `OUTPUT_BYTES_HIGH` more of it
  within each such period), or
  mid-request for `request_timeout` seconds, is closed. Connections over `max_connections`,
  or over `max_connections_per_address` from one IPv4 address or IPv6 /64, get a 503
  `overloaded` and a close.
- A handler may answer with a `StreamResponse` (Server-Sent Events): its head, then each
  piece its iterator yields, unframed, until the iterator ends or the client goes; the
  connection then closes (the body ends with it, so it is the connection's last answer).
  A client that lets more than `STREAM_UNSENT_BYTES_MAX` of it pile up unsent is cut off:
  a viewer that stops reading costs the node that much memory at most, and no waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, unquote_to_bytes

import httptools

from raftkv.async_cleanup import then_clean_up

# The records are msgspec Structs, kept in an interpreted module (setup.py compiles this
# one); imported back under their names, where callers have always found them.
from raftkv.server.http_messages import Request as Request
from raftkv.server.http_messages import Response as Response
from raftkv.tls import CLIENT_PORT_HANDSHAKE_TIMEOUT_SECONDS

logger = logging.getLogger("raftkv.http")

URL_BYTES_MAX = 8 << 10
HEADER_BYTES_MAX = 16 << 10
HEADER_FIELDS_MAX = 100
# The raw bytes of an unfinished request head (request line and headers with their framing),
# counted as they arrive: httptools hands a header over only once it ends, and buffers it by
# concatenation until then, so one that never ends would otherwise grow without bound at
# quadratic cost. Counted per chunk received, not per byte; the chunk a head begins in is
# not counted, so a head is cut off within one read (at most 256 KiB) of this.
HEAD_BYTES_MAX = URL_BYTES_MAX + HEADER_BYTES_MAX + (4 << 10)
PIPELINE_MAX = 32
# Answers written but not yet taken by the socket, per connection: past this the server
# stops reading *and serving* until the client reads, so a connection holds at most this
# plus one answer of output.
OUTPUT_BYTES_HIGH = 64 << 10
DISCARD_BYTES_MAX = 16 << 20
# Unsent bytes of a streamed answer past which its client is cut off rather than waited
# for: a stream never pauses (the node must not slow down for a viewer), so this is its
# bound. Several of the dashboard's snapshots, a few KiB each.
STREAM_UNSENT_BYTES_MAX = 256 << 10
# An answer body from this size on is written after its head rather than copied into one
# buffer with it (backups of the whole state are tens of megabytes).
SEPARATE_BODY_BYTES = 1 << 20
# A chunked body of more pieces than this is refused (400): each piece costs a parser
# callback, and a multi-megabyte body in 1-byte chunks kept the event loop busy for a
# quarter of a second, long enough to depose a leader (tests/process/test_attacks.py).
# Clients send kilobytes per chunk: a body at the largest allowance needs 3 KiB pieces.
CHUNKS_PER_BODY_MAX = 4096
SWEEP_SECONDS = 1.0
LINGER_SECONDS = 2.0
CONNECTIONS_MAX = 10_000
# Connections from one client address (one IPv6 /64), so one host cannot take them all: a
# quarter of the connections allowed, but at least 256 (a load generator's) and at most this.
CONNECTIONS_PER_ADDRESS_MAX = 1_000
CONNECTIONS_PER_ADDRESS_MIN = 256


class StreamOutput:
    """What the producer of a stream may know of its connection: how much it has written
    that the client has not taken yet (0 until the stream starts and after it ends), so it
    can hold back rather than pile up output for a client that is behind (watches)."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None

    def unsent_bytes(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0


class StreamResponse:
    """An answer whose body is written piece by piece as `pieces` yields them (a Server-
    Sent Events stream, or NDJSON), with no length: the connection closes after it.
    `pieces` is closed (`aclose()`) when the stream ends for any reason, so it can let go
    of what it holds. `output`, if given, is told the connection's transport while the
    stream runs. A client that lets more than `unsent_bytes_max` pile up is cut off."""

    def __init__(
        self,
        pieces: AsyncIterator[bytes],
        content_type: str = "text/event-stream",
        headers: tuple[str, ...] = ("Cache-Control: no-store",),
        status: int = 200,
        *,
        output: StreamOutput | None = None,
        unsent_bytes_max: int = 0,
    ) -> None:
        self.pieces = pieces
        self.content_type = content_type
        self.headers = headers
        self.status = status
        self.output = output
        self.unsent_bytes_max = unsent_bytes_max or STREAM_UNSENT_BYTES_MAX


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


class _Rejected(Exception):
    """Raised from a parser callback: answer with this and close the connection."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class _StopParsing(Exception):
    """Raised from a parser callback when a message begins after the last one this
    connection will serve: the rest of the bytes are not looked at."""


_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH")}


class _Clock:
    """The `Date` header, formatted once per second rather than once per response."""

    def __init__(self) -> None:
        self._second = 0
        self._header = b""

    def date_header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


def _decode_target(url: bytes) -> tuple[str, dict[str, str]]:
    raw_path, _, raw_query = url.partition(b"?")
    if not raw_path.startswith(b"/"):
        raise _Rejected(Response.error(400, "bad_request", "the request target must be a path"))
    try:
        # Not `b"%" in raw_path`: CPython's bytes.__contains__ first tries its argument as an
        # integer, raising and clearing a TypeError (a message formatted) for every target.
        escaped = raw_path.find(b"%") >= 0
        path = (unquote_to_bytes(raw_path) if escaped else raw_path).decode("utf-8")
        query = _decode_query(raw_query.decode("ascii")) if raw_query else {}
    except UnicodeError:
        raise _Rejected(Response.error(400, "bad_request", "the URL must be UTF-8")) from None
    return path, query


def _decode_query(text: str) -> dict[str, str]:
    """The query's fields, the first of each name winning, as `parse_qsl` reads them
    (blank values kept, empty fields skipped, a field without `=` a blank value). A query
    with nothing to unquote (no `%`, no `+`: `?consistency=linearizable`) is split here:
    `parse_qsl` is interpreted Python, and took 5-8 % of a leader's CPU serving reads."""
    query: dict[str, str] = {}
    if "%" in text or "+" in text:
        for name, value in parse_qsl(text, keep_blank_values=True, errors="strict"):
            query.setdefault(name, value)
        return query
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            query.setdefault(name, value)
    return query


def _address_key(peer: object) -> str | None:
    """What connections are counted by: the peer's IPv4 address, or its IPv6 /64 (one host
    commonly holds a whole /64); None for a peer that is not an IP address."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        # The message being parsed.
        self._url = b""
        self._header_bytes = 0
        self._header_fields = 0
        self._authorization = b""
        # Bytes received while the head was unfinished (None: no head under way), and
        # whether the head began in the chunk being parsed.
        self._head_bytes: int | None = None
        self._head_began = False
        # The body so far: the first piece as received (most bodies come in one), then one
        # bytearray, so memory follows the body's size, not its number of chunks.
        self._body: bytes | bytearray = b""
        self._body_bytes = 0
        self._chunks = 0  # pieces of the current chunked body (CHUNKS_PER_BODY_MAX)
        self._message_started: float | None = None
        # Whole requests (or prepared rejections) waiting for the one being served.
        self._queue: deque[Request | Response] = deque()
        self._queued_bytes = 0  # the bodies of the requests in `_queue`
        self._serving: asyncio.Task[None] | None = None
        self._discarding = False  # reading and dropping an oversized body
        self._lingering_since: float | None = None  # answered, half-closed, still draining
        self._accepting = True  # False once no further request will be served
        self._reading_paused = False
        self._streaming = False  # serving a StreamResponse: the connection's last answer
        self._writing_paused = False
        self._writing_paused_since = 0.0
        # Output unsent when writing paused or the client last showed progress reading it.
        self._unsent_seen = 0
        self._address: str | None = None  # counted in the server's per-address table
        # When the last request began or the last answer was written: idle time is measured
        # on requests, so bytes that begin none (blank lines) do not keep a connection open.
        self.last_active = self._loop.time()

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=OUTPUT_BYTES_HIGH)
        server = self._server
        server.connections.add(self)
        address = _address_key(transport.get_extra_info("peername"))
        from_address = 0
        if address is not None:
            from_address = server.connections_by_address.get(address, 0) + 1
            server.connections_by_address[address] = from_address
            self._address = address
        if server.client_certificates_required and not transport.get_extra_info("peercert"):
            message = "this node requires a client certificate signed by its --client-ca"
            self._reject(Response.error(401, "client_certificate_required", message))
        elif len(server.connections) > server.max_connections:
            # Refused with an answer rather than by running out of file descriptors, which
            # would also starve the WAL, snapshots and peer connections.
            message = "too many client connections; try again later"
            self._reject(Response.error(503, "overloaded", message))
        elif from_address > server.max_connections_per_address:
            message = "too many client connections from this address; try again later"
            self._reject(Response.error(503, "overloaded", message))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._streaming and self._serving is not None:
            # A stream waits for its next piece, perhaps for long: end it now, so what it
            # holds (a dashboard viewer's place) is let go at once.
            self._serving.cancel()
        self._queue.clear()
        self._queued_bytes = 0
        server = self._server
        server.connections.discard(self)
        address = self._address
        if address is not None:
            self._address = None
            left = server.connections_by_address[address] - 1
            if left:
                server.connections_by_address[address] = left
            else:
                del server.connections_by_address[address]

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._writing_paused_since = self._loop.time()
        if self._transport is not None:
            self._unsent_seen = self._transport.get_write_buffer_size()
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._serve_next()  # serving waited for the client to read

    def data_received(self, data: bytes) -> None:
        if not self._accepting and not self._discarding:
            return  # the connection closes once the queued responses are written
        try:
            self._parser.feed_data(data)
            if self._head_bytes is not None:
                self._count_head(len(data))
        except httptools.HttpParserUpgrade:
            self._stop_accepting()  # the request before the upgrade is served; no upgrade
            self._close_if_done()
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _StopParsing):
                pass
            elif isinstance(cause, _Rejected):
                self._reject(cause.response)
            else:  # a bug of ours, not the client's: say so, and drop this connection only
                logger.error("HTTP parser callback failed", exc_info=cause)
                self._reject(Response.error(500, "internal", "internal error"))
        except httptools.HttpParserError as error:
            if self._accepting:
                self._reject(Response.error(400, "bad_request", f"malformed HTTP: {error}"))
            else:  # bytes after the last request we serve, or inside a dropped body
                self._discarding = False
                self._close_if_done()

    # --- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self._accepting:
            # Pipelined after a request that ends the connection (a rejection, or one
            # without keep-alive): never served, never answered.
            raise _StopParsing
        self._url = b""
        self._header_bytes = 0
        self._header_fields = 0
        self._authorization = b""
        self._head_bytes = 0
        self._head_began = True
        self._body = b""
        self._body_bytes = 0
        self._chunks = 0
        self._message_started = self.last_active = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > URL_BYTES_MAX:
            raise _Rejected(Response.error(414, "bad_request", "the URL is too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > HEADER_BYTES_MAX or self._header_fields > HEADER_FIELDS_MAX:
            response = Response.error(431, "bad_request", "the request headers are too large")
            raise _Rejected(response)
        lowered = name.lower()
        if lowered == b"content-length":
            # llhttp rejects a malformed length itself, after this callback. (The length
            # check first: int() refuses strings of over 4,300 digits.)
            limit = self._server.body_bytes_max
            if value.isdigit() and (len(value) > 15 or int(value) > limit):
                self._refuse_body()
        elif lowered == b"authorization":
            self._authorization += (b", " if self._authorization else b"") + value
        elif lowered == b"expect" and value.lower() == b"100-continue":
            # Only when nothing is ahead of it: a 100 must not precede an earlier answer.
            # Otherwise the client sends the body after its own short wait.
            idle = self._serving is None and not self._queue
            if idle and self._accepting and self._transport is not None:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_headers_complete(self) -> None:
        self._head_bytes = None

    def on_chunk_header(self) -> None:
        self._chunks += 1
        if self._chunks > CHUNKS_PER_BODY_MAX and not self._discarding:
            raise _Rejected(
                Response.error(
                    400,
                    "bad_request",
                    f"a chunked body of more than {CHUNKS_PER_BODY_MAX} chunks; send larger ones",
                )
            )

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._discarding:
            if self._body_bytes > DISCARD_BYTES_MAX and self._transport is not None:
                self._transport.close()
            return
        if self._body_bytes > self._server.body_bytes_max:
            self._refuse_body()  # a chunked body that grew past the limit
            return
        if not self._body:
            self._body = body
        elif isinstance(self._body, bytearray):
            self._body += body
        else:
            self._body = bytearray(self._body) + body

    def on_message_complete(self) -> None:
        self._message_started = None
        if self._discarding:
            self._discarding = False
            self._close_if_done()
            return
        try:
            path, query = _decode_target(self._url)
        except _Rejected as rejected:
            self._reject(rejected.response)
            return
        parser = self._parser
        keep_alive = parser.should_keep_alive()
        method = parser.get_method()
        request = Request(
            _METHODS.get(method) or method.decode("latin-1"),
            path,
            query,
            self._body if isinstance(self._body, bytes) else bytes(self._body),
            keep_alive,
            parser.get_http_version() == "1.0",
            # latin-1: any bytes decode, and a token outside ASCII matches no token.
            self._authorization.decode("latin-1"),
        )
        self._body = b""
        self._authorization = b""
        if not keep_alive:
            self._stop_accepting()
        self._queue.append(request)
        self._queued_bytes += len(request.body)
        self._update_reading()
        self._serve_next()

    def _count_head(self, received: int) -> None:
        """After a chunk is parsed with a head still unfinished: count it (unless the head
        began in it) and refuse the request once its head is over HEAD_BYTES_MAX."""
        if self._head_began:
            self._head_began = False
            return
        head_bytes = cast(int, self._head_bytes) + received
        self._head_bytes = head_bytes
        if head_bytes > HEAD_BYTES_MAX and self._accepting:
            self._head_bytes = None
            self._reject(Response.error(431, "bad_request", "the request headers are too large"))

    # --- serving ---------------------------------------------------------------------------
    def _serve_next(self) -> None:
        # Nothing new is served while the client is not reading its answers: each would
        # add a whole answer to the output held for it.
        while self._serving is None and self._queue and not self._writing_paused:
            item = self._queue.popleft()
            if isinstance(item, Response):  # a rejection: the connection's last answer
                self._write(item, head_only=False, last=True)
                self._linger()
            else:
                self._queued_bytes -= len(item.body)
                self._serving = self._loop.create_task(self._serve(item))
        self._update_reading()
        self._close_if_done()

    async def _serve(self, request: Request) -> None:
        server = self._server
        server.in_flight += 1
        try:
            response = await server.handler(request)
        except Exception:
            logger.exception("internal error serving %s %s", request.method, request.path)
            response = Response.error(500, "internal", "internal error; see the node's log")
        finally:
            server.in_flight -= 1
            if server.in_flight == 0:
                server.idle.set()
        if isinstance(response, StreamResponse):
            await self._stream(response, head_only=request.method == "HEAD")
            return
        last = not self._accepting and not self._queue and not self._discarding
        self._write(response, head_only=request.method == "HEAD", last=last, confirm=request.http10)
        self._serving = None
        self._serve_next()

    async def _stream(self, response: StreamResponse, head_only: bool) -> None:
        """Write a streamed answer, then close: nothing pipelined after it is served."""
        self._stop_accepting()
        self._streaming = True
        self._queue.clear()
        self._queued_bytes = 0
        # Ended however the writing ends (through async_cleanup: mypyc miscompiles an
        # awaiting `finally`).
        await then_clean_up(
            self._write_stream(response, head_only), lambda: self._end_stream(response)
        )

    async def _write_stream(self, response: StreamResponse, head_only: bool) -> None:
        pieces = response.pieces
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        responses = self._server.responses
        responses[response.status] = responses.get(response.status, 0) + 1
        extra = b"".join(line.encode("latin-1") + b"\r\n" for line in response.headers)
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s%s%s\r\n"
            % (
                response.status,
                _REASONS.get(response.status, b"Unknown"),
                response.content_type.encode(),
                extra,
                self._server.clock.date_header(),
                _CLOSE,
            )
        )
        if head_only:
            return
        if response.output is not None:
            response.output.transport = transport
        async for piece in pieces:
            transport = self._transport
            if transport is None or transport.is_closing():
                return  # the client went away
            if transport.get_write_buffer_size() > response.unsent_bytes_max:
                logger.info("cut off a stream whose client stopped reading it")
                transport.abort()
                return
            transport.write(piece)
            self.last_active = self._loop.time()

    async def _end_stream(self, response: StreamResponse) -> None:
        if response.output is not None:
            response.output.transport = None
        with contextlib.suppress(Exception):
            await cast(Any, response.pieces).aclose()
        self._serving = None
        transport = self._transport
        if transport is not None:
            transport.close()
            if transport.get_write_buffer_size():
                # Its last lines (an error) are the client's if it reads them soon; a
                # client that does not read must not hold the connection open.
                self._loop.call_later(LINGER_SECONDS, transport.abort)

    def _write(
        self, response: Response, head_only: bool, last: bool, confirm: bool = False
    ) -> None:
        """Send one answer; `last` says the connection closes after it, `confirm` that an
        HTTP/1.0 client asked for keep-alive and must be told it got it."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = response.body
        responses = self._server.responses
        responses[response.status] = responses.get(response.status, 0) + 1
        extra = (
            b"".join(line.encode("latin-1") + b"\r\n" for line in response.headers)
            if response.headers
            else b""
        )
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s%s\r\n" % (
            response.status,
            _REASONS.get(response.status, b"Unknown"),
            response.content_type.encode(),
            len(body),
            extra,
            self._server.clock.date_header(),
            _CLOSE if last else _KEEP_ALIVE if confirm else b"",
        )
        if head_only:
            transport.write(head)
        elif len(body) < SEPARATE_BODY_BYTES:
            transport.write(head + body)  # one write, one system call: the hot path
        else:
            # A large body (a backup) is not copied into one buffer with its head.
            transport.write(head)
            transport.write(body)
        self.last_active = self._loop.time()

    def _refuse_body(self) -> None:
        """Answer 413 once the requests before this one are answered, read and drop the
        body (so the client, still sending, can read the answer), then close."""
        limit = self._server.body_bytes_max
        self._discarding = True
        self._body = b""
        self._stop_accepting()
        message = f"the request body is over {limit} bytes"
        self._queue.append(Response.error(413, "too_large", message))
        self._serve_next()

    def _linger(self) -> None:
        """After the last answer, while a refused body is still arriving: half-close, so
        the client sees the answer and the end of it, and keep draining for a little while
        (closing at once could reset the connection and lose the answer in transit)."""
        transport = self._transport
        if self._discarding and transport is not None and not transport.is_closing():
            if transport.can_write_eof():
                transport.write_eof()
            self._lingering_since = self._loop.time()

    def _reject(self, response: Response) -> None:
        self._stop_accepting()
        self._discarding = False
        self._queue.append(response)
        self._serve_next()

    def _stop_accepting(self) -> None:
        self._accepting = False

    def _close_if_done(self) -> None:
        if (
            not self._accepting
            and not self._discarding
            and self._serving is None
            and not self._queue
            and self._transport is not None
        ):
            self._transport.close()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = (
            self._writing_paused
            or len(self._queue) >= PIPELINE_MAX
            or self._queued_bytes >= self._server.body_bytes_max
        )
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause

    # --- housekeeping --------------------------------------------------------------------
    def busy(self) -> bool:
        """Serving a request, or holding some that wait their turn."""
        return self._serving is not None or bool(self._queue)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def mid_request(self) -> bool:
        """A request has begun arriving and is not complete yet."""
        return self._message_started is not None

    def expired(self, now: float) -> bool:
        if self._lingering_since is not None:
            return now - self._lingering_since > LINGER_SECONDS
        if self._message_started is not None:
            return now - self._message_started > self._server.request_timeout
        if self._writing_paused:  # a client that stopped reading its answers
            transport = self._transport
            unsent = transport.get_write_buffer_size() if transport is not None else 0
            if unsent <= self._unsent_seen - OUTPUT_BYTES_HIGH:
                # It read another OUTPUT_BYTES_HIGH of a large answer (a backup): a slow
                # link, not a stalled client. The clock restarts from here.
                self._writing_paused_since = now
                self._unsent_seen = unsent
            return now - self._writing_paused_since > self._server.idle_timeout
        return not self.busy() and now - self.last_active > self._server.idle_timeout

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class HttpServer:
    """Serves `handler` on one listening socket. `handler` maps a Request to a Response;
    an exception it raises becomes a 500 (and a logged traceback)."""

    def __init__(
        self,
        handler: Handler,
        *,
        body_bytes_max: int,
        idle_timeout: float = 75.0,
        request_timeout: float = 30.0,
        sweep_seconds: float = SWEEP_SECONDS,
        max_connections: int = CONNECTIONS_MAX,
        max_connections_per_address: int | None = None,
    ) -> None:
        self.handler = handler
        self.body_bytes_max = body_bytes_max
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.sweep_seconds = sweep_seconds
        self.max_connections = max_connections
        if max_connections_per_address is None:
            max_connections_per_address = min(
                CONNECTIONS_PER_ADDRESS_MAX,
                max(CONNECTIONS_PER_ADDRESS_MIN, max_connections // 4),
            )
        self.max_connections_per_address = max_connections_per_address
        self.client_certificates_required = False  # set by start()
        self.connections: set[_Connection] = set()
        self.connections_by_address: dict[str, int] = {}
        self.clock = _Clock()
        self.in_flight = 0
        # Answers sent, by HTTP status (for metrics: 4xx and 5xx show misbehaving clients).
        self.responses: dict[int, int] = {}
        self.idle = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        client_certificates_required: bool = False,
    ) -> None:
        """Listen on `host:port`; HTTPS with `ssl_context` (`raftkv.tls.client_port_context`).
        A connection counts against the limits once its TLS handshake is done; until then
        the handshake deadline bounds it. With `client_certificates_required`, a connection
        whose client presented no certificate is answered 401 `client_certificate_required`
        to anything, then closed (the context only asks for one: see client_port_context)."""
        self.client_certificates_required = ssl_context is not None and client_certificates_required
        self._server = await self.loop.create_server(
            lambda: _Connection(self),
            host or None,
            port,
            reuse_address=True,
            ssl=ssl_context,
            ssl_handshake_timeout=CLIENT_PORT_HANDSHAKE_TIMEOUT_SECONDS if ssl_context else None,
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="http-sweeper")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, grace_seconds: float) -> None:
        """Stop listening, give requests being served up to `grace_seconds` to answer,
        then close every connection."""
        self.stop_listening()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.in_flight:
            self.idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), grace_seconds)
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()

    def sweep(self, now: float) -> None:
        """Close the connections idle, unfinished or lingering for too long at `now`."""
        for connection in [c for c in self.connections if c.expired(now)]:
            connection.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            self.sweep(self.loop.time())
