"""The client port (server/http_server.py, server/http_api.py): any bytes a client sends,
cut anywhere, get well-formed HTTP answers — never a 500 (a parser callback or a handler
raising) and never an exception out of the connection; a request target decodes or is
refused 400; and the API answers any body, number or query of the KV routes with one of
SPEC §3's statuses and JSON error bodies, never an exception out of the handler."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.kv import KVStore
from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import (
    HttpServer,
    Request,
    Response,
    _Connection,
    _decode_query,
    _decode_target,
    _Rejected,
)

from ..server.test_http_api_sessions import FakeServer as _SessionsServer
from ..server.test_http_framing import FakeTransport as _FramingTransport
from ..server.test_http_framing import answered
from .fuzzing import any_text, deep_json, edge_integers, fuzz, mutated, raises_only

BODY_MAX = 2048

T = TypeVar("T")


class FakeTransport(_FramingTransport):
    """Also half-closes, as a refused oversized body has the server do."""

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


async def sized(request: Request) -> Response:
    return Response.json({"m": request.method, "p": request.path, "n": len(request.body)})


def _requests() -> st.SearchStrategy[bytes]:
    def build(method: str, path: str, query: str, body: bytes, chunked: bool) -> bytes:
        target = path + ("?" + query if query else "")
        if chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
            encoded = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        else:
            framing, encoded = b"Content-Length: %d\r\n" % len(body), body
        return b"%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n%s" % (
            method.encode(),
            target.encode(),
            framing,
            encoded,
        )

    return st.builds(
        build,
        st.sampled_from(["GET", "PUT", "DELETE", "POST"]),  # a HEAD answer has no body
        st.sampled_from(["/v1/kv/k", "/v1/status", "/", "/%ff", "/%E2%82%AC"]),
        st.sampled_from(["", "a=1", "a=%ff", "consistency=stale&a", "%zz"]),
        st.binary(max_size=40),
        st.booleans(),
    )


def _answers(data: bytes) -> list[int]:
    statuses = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"an unfinished answer: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        if rest[:5] == b"HTTP/" or not rest:
            length = 0  # the answer to a HEAD: its length, not its body
        body = rest[:length]
        status = int(lines[0].split()[1])
        if status not in (100, 200) and body:
            assert json.loads(body)["error"]
        statuses.append(status)
        data = rest[length:]
    return statuses


@fuzz
@given(
    stream=st.one_of(
        st.binary(max_size=300),
        mutated(st.lists(_requests(), min_size=1, max_size=3).map(b"".join)),
        st.lists(_requests(), min_size=1, max_size=3).map(b"".join),
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
@example(stream=b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n", cuts=[])
@example(stream=b"GET /?\xff=1 HTTP/1.1\r\nHost: t\r\n\r\n", cuts=[])
@example(stream=b"PUT / HTTP/1.1\r\nContent-Length: 4294967296\r\n\r\n", cuts=[])
@example(
    stream=b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", cuts=[]
)
def test_any_byte_stream_gets_well_formed_answers_and_never_a_500(
    stream: bytes, cuts: list[int]
) -> None:
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]

    async def main() -> FakeTransport:
        server = HttpServer(sized, body_bytes_max=BODY_MAX)
        connection = _Connection(server)
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        for piece in pieces:
            if transport.closed:
                break
            connection.data_received(piece)
        await answered(connection)
        connection.connection_lost(None)
        return transport

    transport = asyncio.run(main())
    statuses = _answers(bytes(transport.written))
    assert 500 not in statuses
    assert all(status in (100, 200, 400, 405, 413, 414, 431, 501, 505) for status in statuses), (
        statuses
    )


@fuzz
@given(
    url=st.binary(max_size=60)
    | st.text(max_size=30).map(lambda t: ("/" + t).encode("utf-8", "surrogatepass"))
)
@example(url=b"/%ff")
@example(url=b"/?a=%ff")
@example(url=b"/?\xff")
def test_a_request_target_decodes_or_is_refused_400(url: bytes) -> None:
    decoded = raises_only(_decode_target, _Rejected, url)
    if decoded is None:
        try:
            _decode_target(url)
        except _Rejected as rejected:
            assert rejected.response.status == 400
    else:
        path, query = decoded
        assert path.startswith("/")
        assert all(
            isinstance(name, str) and isinstance(value, str) for name, value in query.items()
        )


def _by_parse_qsl(text: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="strict"):
        query.setdefault(name, value)
    return query


@fuzz
@given(text=st.text(alphabet="ab=&%+;2F0x ", max_size=24) | st.text(max_size=24))
@example(text="a=1&&b&a=2&=c&d=")
@example(text="consistency=linearizable")
@example(text="a=b=c&&&")
def test_a_query_decodes_as_parse_qsl_reads_it(text: str) -> None:
    """`_decode_query`'s split without `parse_qsl` for a query with nothing to unquote
    gives what `parse_qsl` gives: the same fields, blank values, first name winning."""
    try:
        expected: dict[str, str] | None = _by_parse_qsl(text)
    except UnicodeError:
        expected = None
    if expected is None:
        try:
            _decode_query(text)
        except UnicodeError:
            return
        raise AssertionError("parse_qsl refused the query, the fast path did not")
    assert _decode_query(text) == expected


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | edge_integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
write_fields = st.fixed_dictionaries(
    {},
    optional={
        name: json_values | edge_integers
        for name in (
            "value",
            "if_value",
            "if_absent",
            "client_id",
            "seq",
            "after_index",
            "id",
            "to",
            "address",
        )
    },
)
bodies = st.one_of(
    write_fields.map(lambda body: json.dumps(body).encode()),
    mutated(write_fields.map(lambda body: json.dumps(body).encode())),
    st.binary(max_size=60),
    st.sampled_from(
        [
            b'{"value": "\xff"}',
            b'{"value": "v", "zz": ' + deep_json(100_000) + b"}",
            b'{"value": "v", "client_id": "c", "seq": 1e400}',
            b'{"value": "v", "client_id": "c", "seq": NaN}',
            b'{"value": "v", "client_id": "c", "seq": 1, "after_index": -1}',
        ]
    ),
)
queries = st.dictionaries(
    st.sampled_from(["consistency", "client_id", "seq", "after_index", "index"]) | any_text,
    any_text | edge_integers.map(str) | st.sampled_from(["\u00b2", "\u0663", "1" * 30]),
    max_size=3,
)


class Members:
    """Membership changes that succeed at once: the API's parsing is what is fuzzed."""

    def describe(self) -> dict[str, Any]:
        return {"members": []}

    async def add(self, member: int, address: str) -> dict[str, Any]:
        return {"ok": True, "changed": True, "index": 1, "members": [member]}

    async def remove(self, member: int) -> dict[str, Any]:
        return {"ok": True, "index": 1}

    async def transfer_leadership(self, target: int, timeout_seconds: float | None = None) -> int:
        return target


class FakeServer(_SessionsServer):
    """Reads and membership changes too: the store's value at once, changes done."""

    def __init__(self, store: KVStore) -> None:
        super().__init__(store)
        self.members = Members()  # type: ignore[assignment]

    async def read_query(self, consistency: str, query: Callable[[Any], T]) -> tuple[T, int]:
        return query(self.requests.store), self.requests.index


API_STATUSES = {200, 400, 404, 405, 409, 413, 421, 422, 503, 504}


@fuzz
@given(
    method=st.sampled_from(["PUT", "GET", "DELETE", "POST"]),
    path=st.sampled_from(
        [
            "/v1/kv/k",
            "/v1/kv/",
            "/v1/kv/" + "k" * 1100,
            "/v1/hash",
            "/v1/members",
            "/v1/transfer-leader",
        ]
    )
    | st.text(max_size=22).map("/v1/members/".__add__),
    body=bodies,
    query=queries,
)
@example(method="PUT", path="/v1/kv/k", body=b'{"value": "\xff"}', query={})
@example(
    method="PUT",
    path="/v1/kv/k",
    body=b'{"value": "v", "zz": ' + deep_json(100_000) + b"}",
    query={},
)
def test_the_api_answers_any_request_with_a_spec_status(
    method: str, path: str, body: bytes, query: dict[str, str]
) -> None:
    api = ClientApi(FakeServer(KVStore(sessions_max=2)), value_bytes_max=1 << 10)  # type: ignore[arg-type]
    response = asyncio.run(api.handle(Request(method, path, query, body, keep_alive=True)))
    assert response.status in API_STATUSES, response
    answer = json.loads(response.body)
    assert isinstance(answer, dict)
    if response.status != 200:
        assert isinstance(answer["error"], str)
