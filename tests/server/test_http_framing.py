"""The HTTP server's framing, property-tested: any sequence of requests (plain or chunked
bodies, keep-alive or not), cut into pieces at arbitrary byte boundaries, gets exactly one
answer per request, in order, each echoing the request it answers. The connection is driven
through a fake transport so the cut points are exactly the ones generated (TCP would merge
them)."""

from __future__ import annotations

import asyncio
import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.server.http_server import HttpServer, Request, Response, _Connection

BODY_MAX = 4096


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True
        # Output the "socket" has not taken yet: a test sets it to play a client reading.
        self.unsent = 0

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # writes are taken at once

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def echo(request: Request) -> Response:
    return Response.json({"m": request.method, "p": request.path, "b": request.body.decode()})


async def answered(connection: _Connection) -> None:
    """Run the handlers of every request the connection holds, one after another."""
    while connection.busy():
        serving = connection._serving
        assert serving is not None, "requests queued but none being served"
        await serving


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        responses.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


request_strategy = st.tuples(
    st.sampled_from(["GET", "PUT", "DELETE"]),
    st.text(alphabet="abcxyz019-_.~", min_size=1, max_size=12),
    st.binary(max_size=300).map(lambda raw: raw.hex()),  # a body of hex digits
    st.booleans(),  # chunked
)


def encode(method: str, path: str, body: str, chunked: bool, last: bool) -> bytes:
    headers = b"Host: t\r\n" + (b"Connection: close\r\n" if last else b"")
    data = body.encode()
    if chunked and data:
        middle = len(data) // 2
        pieces = [data[:middle], data[middle:]]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
        headers += b"Transfer-Encoding: chunked\r\n"
    else:
        encoded = data
        headers += b"Content-Length: %d\r\n" % len(data)
    return b"%s /%s HTTP/1.1\r\n%s\r\n%s" % (method.encode(), path.encode(), headers, encoded)


@settings(max_examples=150, deadline=None)
@given(
    requests=st.lists(request_strategy, min_size=1, max_size=8),
    close_at_end=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    drains=st.lists(st.booleans(), min_size=13, max_size=13),
)
def test_any_cut_of_a_request_stream_gets_one_answer_per_request_in_order(
    requests: list[tuple[str, str, str, bool]],
    close_at_end: bool,
    cuts: list[int],
    drains: list[bool],
) -> None:
    stream = b"".join(
        encode(*request, last=close_at_end and n == len(requests) - 1)
        for n, request in enumerate(requests)
    )
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]

    async def main() -> FakeTransport:
        server = HttpServer(echo, body_bytes_max=BODY_MAX)
        connection = _Connection(server)
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        for piece, drain in zip(pieces, drains, strict=False):
            connection.data_received(piece)
            if drain:  # answer all that arrived so far before more bytes come, or not
                await answered(connection)
        await answered(connection)
        return transport

    transport = asyncio.run(main())
    answers = parse_responses(bytes(transport.written))
    assert len(answers) == len(requests)
    for (status, _, body), (method, path, sent, _) in zip(answers, requests, strict=True):
        assert status == 200
        assert json.loads(body) == {"m": method, "p": "/" + path, "b": sent}
    assert transport.closed == close_at_end
    assert ("connection" in answers[-1][1]) == close_at_end
