"""The client API's side of sessions (SPEC §3, §6): `after_index` is validated and reaches the
store; a write of a forgotten session is answered `session_expired` 409; a write that fails
after it was proposed says `"outcome": "unknown"`, one refused before says nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from raftkv.errors import NotLeader, Timeout
from raftkv.kv import KVStore, Result
from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import Request
from raftkv.server.requests import RequestFailed

T = TypeVar("T")


class StubRequests:
    """Applies each proposal to a store at once, or fails it with `failure`."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self.index = 0
        self.failure: Exception | None = None

    async def propose(self, data: bytes) -> tuple[Any, int]:
        if self.failure is not None:
            raise self.failure
        self.index += 1
        result: Result = self.store.apply(self.index, data)
        return result, self.index


class Unused:
    """The member, metrics and status routes, which these tests never call."""

    def describe(self) -> dict[str, Any]:
        raise AssertionError("not used here")

    async def add(self, member: int, address: str) -> dict[str, Any]:
        raise AssertionError("not used here")

    async def remove(self, member: int) -> dict[str, Any]:
        raise AssertionError("not used here")

    async def transfer_leadership(self, target: int, timeout_seconds: float | None = None) -> int:
        raise AssertionError("not used here")

    def render(self) -> bytes:
        raise AssertionError("not used here")


class FakeServer:
    """The node as the API sees it (http_api.ApiBackend): node 1, no leader known to
    redirect to, writes applied at once by `requests`, reads answered from its store."""

    def __init__(self, store: KVStore) -> None:
        self.id = 1
        self.storage_failure: str | None = None
        self.applied_hashes: dict[int, str] = {}
        self.requests = StubRequests(store)
        self.members = self.metrics = Unused()
        self.consistencies: list[str] = []  # of each read, in order
        self.report = self

    def leader_client_address(self, leader_id: int | None) -> str | None:
        return None

    async def read_query(
        self, consistency: str, query: Callable[[Any], T], *, leader_only: bool = False
    ) -> tuple[T, int]:
        self.consistencies.append(consistency)
        return query(self.requests.store), self.requests.index

    def status(self) -> dict[str, Any]:
        raise AssertionError("not used here")

    # Leases (server/lease_api.py): this fake leads, and its lessor is `remaining`.
    lease_ttl_min_seconds = 1

    async def lease_keep_alive(self, lease_id: int) -> int | None:
        found = self.requests.store.lease(lease_id)
        return None if found is None else found[0]

    def lease_remaining(self, lease_id: int) -> float | None:
        return 1.5


def make_api(sessions_max: int = 1) -> tuple[ClientApi, FakeServer]:
    server = FakeServer(KVStore(sessions_max=sessions_max))
    return ClientApi(server, value_bytes_max=1 << 20), server


def call(
    api: ClientApi, method: str, path: str, body: object = None, query: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    raw = b"" if body is None else json.dumps(body).encode()
    request = Request(method, path, query or {}, raw, keep_alive=True)
    response = asyncio.run(api.handle(request))
    return response.status, json.loads(response.body)


def test_a_retry_of_a_forgotten_session_gets_session_expired_409() -> None:
    api, server = make_api(sessions_max=1)
    first = {"value": "v", "if_absent": True, "client_id": "a", "seq": 1, "after_index": 0}
    assert call(api, "PUT", "/v1/kv/k", first) == (200, {"ok": True, "leader": 1, "index": 1})
    assert call(api, "DELETE", "/v1/kv/k", {"client_id": "b", "seq": 1})[0] == 200  # evicts a
    status, body = call(api, "PUT", "/v1/kv/k", first)
    assert status == 409
    assert body["error"] == "session_expired" and body["index"] == 3
    assert "outcome is unknown" in body["message"] and "new client_id" in body["message"]
    assert server.requests.store.get("k") is None


def test_delete_takes_after_index_in_the_query() -> None:
    api, server = make_api(sessions_max=1)
    assert call(api, "PUT", "/v1/kv/k", {"value": "v", "client_id": "a", "seq": 1})[0] == 200
    assert call(api, "PUT", "/v1/kv/j", {"value": "v", "client_id": "b", "seq": 1})[0] == 200
    query = {"client_id": "c", "seq": "1", "after_index": "0"}  # 0 < 1: a forgotten one?
    assert call(api, "DELETE", "/v1/kv/k", query=query)[1]["error"] == "session_expired"
    query["after_index"] = "3"
    assert call(api, "DELETE", "/v1/kv/k", query=query)[0] == 200
    assert server.requests.store.get("k") is None


@pytest.mark.parametrize(
    "extra",
    [
        {"client_id": "a", "seq": 1, "after_index": -1},
        {"client_id": "a", "seq": 1, "after_index": "soon"},
        {"client_id": "a", "seq": 1, "after_index": True},
        {"client_id": "a", "seq": 1, "after_index": 1.5},
        {"after_index": 3},  # no session to speak of
    ],
)
def test_a_bad_after_index_is_a_bad_request(extra: dict[str, object]) -> None:
    api, server = make_api()
    status, body = call(api, "PUT", "/v1/kv/k", {"value": "v", **extra})
    assert (status, body["error"]) == (400, "bad_request")
    assert "after_index" in body["message"]
    assert server.requests.index == 0  # nothing proposed


def test_failures_after_proposing_say_the_outcome_is_unknown() -> None:
    api, server = make_api()
    write = {"value": "v", "client_id": "a", "seq": 1, "after_index": 0}
    server.requests.failure = Timeout("entry 7 not applied in time; it may still commit")
    status, body = call(api, "PUT", "/v1/kv/k", write)
    assert (status, body["error"], body["outcome"]) == (504, "timeout", "unknown")
    # Shutting down (or a disk failing) while the entry waits: it may still commit.
    server.requests.failure = RequestFailed("shutting down")
    status, body = call(api, "PUT", "/v1/kv/k", write)
    assert (status, body["error"], body["outcome"]) == (503, "no_leader", "unknown")


def test_refusals_before_proposing_say_nothing_of_an_outcome() -> None:
    api, server = make_api()
    write = {"value": "v", "client_id": "a", "seq": 1, "after_index": 0}
    server.storage_failure = "disk full"
    server.requests.failure = RequestFailed("storage failed: disk full")
    status, body = call(api, "PUT", "/v1/kv/k", write)
    assert (status, body["error"]) == (503, "storage_failed") and "outcome" not in body
    server.storage_failure = None
    server.requests.failure = NotLeader(None)
    status, body = call(api, "DELETE", "/v1/kv/k", write)
    assert (status, body["error"]) == (503, "no_leader") and "outcome" not in body
