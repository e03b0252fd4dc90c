"""`GET /v1/watch` on the client API (SPEC §6, "Watches"): the query's validation, the
stream it answers (NDJSON, bounded per client), 410 `compacted` with the oldest index still
held, 503 `overloaded` past the watchers a node allows, and its `read` role."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from raftkv.kv import KVStore
from raftkv.server.auth import AccessPolicy, Identity, Role, TokenTable
from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import Request, Response, StreamResponse
from raftkv.server.watch_history import HistoryLimits
from raftkv.server.watches import WatchHub, WatchLimits
from tests.server.test_http_api_sessions import FakeServer, call


class WatchedServer(FakeServer):
    """The API's fake node, its store feeding a watch hub as the runtime's does."""

    def __init__(self, limits: WatchLimits) -> None:
        self.watches = WatchHub(limits)
        super().__init__(KVStore(observer=self.watches))

    def applied(self) -> None:
        self.watches.applied_through(self.requests.index)


def make(
    limits: WatchLimits | None = None, access: AccessPolicy | None = None
) -> tuple[ClientApi, WatchedServer]:
    server = WatchedServer(limits or WatchLimits(flush_seconds=0.0))
    return ClientApi(server, value_bytes_max=1 << 20, access=access), server


async def watch(
    api: ClientApi, query: dict[str, str], authorization: str = ""
) -> Response | StreamResponse:
    return await api.handle(
        Request("GET", "/v1/watch", query, b"", True, authorization=authorization)
    )


def test_a_watch_streams_ndjson_lines_of_its_range() -> None:
    api, server = make()
    for key in ["a/1", "b", "a/2"]:
        assert call(api, "PUT", f"/v1/kv/{key}", {"value": key})[0] == 200
    server.applied()

    async def body() -> list[dict[str, Any]]:
        response = await watch(api, {"prefix": "a/", "from_index": "1", "prev": "true"})
        assert isinstance(response, StreamResponse)
        assert (response.status, response.content_type) == (200, "application/x-ndjson")
        piece = await response.pieces.__anext__()
        await response.pieces.aclose()  # type: ignore[attr-defined]
        return [json.loads(line) for line in piece.splitlines()]

    assert asyncio.run(body()) == [
        {"type": "put", "key": "a/2", "value": "a/2", "mod_index": 3, "create_index": 3,
         "version": 1},
        {"type": "progress", "index": 3},
    ]  # fmt: skip
    assert server.watches.watchers == 0


@pytest.mark.parametrize(
    "query",
    [
        {"key": "k", "prefix": "k"},
        {"key": ""},
        {"prefix": "a", "start": "b"},
        {"from_index": "-1"},
        {"from_index": "soon"},
        {"prev": "yes"},
    ],
)
def test_a_bad_watch_query_is_400(query: dict[str, str]) -> None:
    api, server = make()
    response = asyncio.run(watch(api, query))
    assert isinstance(response, Response)
    assert (response.status, json.loads(response.body)["error"]) == (400, "bad_request")
    assert server.watches.watchers == 0


def test_a_from_index_no_longer_held_is_410_with_the_oldest_index() -> None:
    api, server = make(WatchLimits(history=HistoryLimits(events_max=4), flush_seconds=0.0))
    for number in range(10):
        assert call(api, "PUT", f"/v1/kv/k{number}", {"value": "v"})[0] == 200
        server.applied()
    oldest = server.watches.history.oldest_index
    assert oldest > 0
    response = asyncio.run(watch(api, {"from_index": str(oldest - 1)}))
    assert isinstance(response, Response) and response.status == 410
    body = json.loads(response.body)
    assert (body["error"], body["oldest_index"]) == ("compacted", oldest)


def test_watchers_past_the_limit_are_503_overloaded() -> None:
    api, server = make(WatchLimits(watchers_max=1))

    async def body() -> None:
        first = await watch(api, {})
        assert isinstance(first, StreamResponse)
        refused = await watch(api, {"key": "k"})
        assert isinstance(refused, Response) and refused.status == 503
        assert json.loads(refused.body)["error"] == "overloaded"
        await first.pieces.aclose()  # type: ignore[attr-defined]
        again = await watch(api, {})
        assert isinstance(again, StreamResponse)
        assert server.watches.watchers == 1

    asyncio.run(body())


def test_a_watch_asked_of_a_stopping_node_is_503_no_leader() -> None:
    """A request read while the node stops (its hub closed) opens no stream that nothing
    would end: the client is told to watch on another node (`no_leader` is retried)."""
    api, server = make()

    async def body() -> None:
        server.watches.close()
        refused = await watch(api, {})
        assert isinstance(refused, Response) and refused.status == 503
        assert json.loads(refused.body)["error"] == "no_leader"
        assert server.watches.watchers == 0

    asyncio.run(body())


def test_watching_needs_the_read_role() -> None:
    reader, writer = "r" * 20, "w" * 20
    tokens = TokenTable(
        (Identity(name, role), hashlib.sha256(token.encode()).digest())
        for name, role, token in [("reader", Role.READ, reader), ("writer", Role.WRITE, writer)]
    )
    api, server = make(access=AccessPolicy(tokens))
    refused = asyncio.run(watch(api, {}))
    assert isinstance(refused, Response) and refused.status == 401
    assert server.watches.watchers == 0
    served = asyncio.run(watch(api, {}, authorization="Bearer " + reader))
    assert isinstance(served, StreamResponse) and server.watches.watchers == 1
