"""The lease routes (SPEC §6, "Leases"): answers, validation and errors, on the API's fake
node (writes applied at once, this node leading)."""

from __future__ import annotations

from typing import Any

import pytest

from raftkv.kv.leases import LEASE_TTL_MAX_SECONDS
from tests.server.test_http_api_sessions import call, make_api


def test_grant_put_with_lease_info_list_keepalive_and_revoke() -> None:
    api, server = make_api(sessions_max=10)
    status, granted = call(api, "POST", "/v1/lease", {"ttl": 10})
    assert status == 200
    assert granted == {"ok": True, "leader": 1, "index": 1, "id": 1, "ttl": 10}
    assert call(api, "POST", "/v1/lease", {"ttl": 20, "id": 50})[1]["id"] == 50
    assert call(api, "PUT", "/v1/kv/b", {"value": "x", "lease": 1})[0] == 200
    assert call(api, "PUT", "/v1/kv/a", {"value": "y", "lease": 1})[0] == 200
    status, got = call(api, "GET", "/v1/kv/a")
    assert (status, got["lease"]) == (200, 1)
    status, info = call(api, "GET", "/v1/lease/1")
    assert status == 200
    assert info == {
        "id": 1,
        "ttl": 10,
        "remaining": 1.5,
        "keys": ["a", "b"],
        "key_count": 2,
        "index": 4,
    }
    status, listing = call(api, "GET", "/v1/leases", query={"consistency": "stale"})
    assert status == 200
    assert listing == {
        "leases": [{"id": 1, "ttl": 10}, {"id": 50, "ttl": 20}],
        "count": 2,
        "index": 4,
    }
    assert server.consistencies[-1] == "stale"
    assert call(api, "POST", "/v1/lease/50/keepalive") == (200, {"id": 50, "ttl": 20})
    status, revoked = call(api, "DELETE", "/v1/lease/1", query={"client_id": "c", "seq": "1"})
    assert (status, revoked["deleted"]) == (200, 2)
    assert server.requests.store.data == {}
    assert call(api, "GET", "/v1/lease/1")[1]["error"] == "lease_not_found"


def test_a_transaction_put_attaches_to_its_lease() -> None:
    api, server = make_api()
    call(api, "POST", "/v1/lease", {"ttl": 5})
    body = {"success": [{"op": "put", "key": "k", "value": "v", "lease": 1}]}
    assert call(api, "POST", "/v1/txn", body)[0] == 200
    assert server.requests.store.lease(1) == (5, ["k"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/kv/k", {"value": "v", "lease": 7}),
        ("DELETE", "/v1/lease/7", None),
        ("POST", "/v1/lease/7/keepalive", None),
        ("GET", "/v1/lease/7", None),
        ("POST", "/v1/txn", {"success": [{"op": "put", "key": "k", "value": "v", "lease": 7}]}),
    ],
)
def test_an_unknown_lease_is_404_lease_not_found(
    method: str, path: str, body: dict[str, Any] | None
) -> None:
    api, server = make_api()
    status, answer = call(api, method, path, body)
    assert (status, answer["error"]) == (404, "lease_not_found")
    assert server.requests.store.data == {}


def test_a_taken_id_is_409() -> None:
    api, _ = make_api()
    assert call(api, "POST", "/v1/lease", {"ttl": 5, "id": 9})[0] == 200
    status, answer = call(api, "POST", "/v1/lease", {"ttl": 5, "id": 9})
    assert (status, answer["error"]) == (409, "lease_exists")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ttl": 0},
        {"ttl": "10"},
        {"ttl": 1.5},
        {"ttl": True},
        {"ttl": LEASE_TTL_MAX_SECONDS + 1},
        {"ttl": 10, "id": -1},
        {"ttl": 10, "id": "3"},
        {"ttl": 10, "id": 1 << 63},
    ],
)
def test_a_bad_grant_is_400_and_proposes_nothing(body: dict[str, Any]) -> None:
    api, server = make_api()
    status, answer = call(api, "POST", "/v1/lease", body)
    assert (status, answer["error"]) == (400, "bad_request")
    assert server.requests.index == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/v1/kv/k", {"value": "v", "lease": -1}, 400),
        ("PUT", "/v1/kv/k", {"value": "v", "lease": "1"}, 400),
        (
            "POST",
            "/v1/txn",
            {"success": [{"op": "put", "key": "k", "value": "v", "lease": "x"}]},
            400,
        ),
        (
            "POST",
            "/v1/txn",
            {"success": [{"op": "put", "key": "k", "value": "v", "lease": -2}]},
            400,
        ),
        ("GET", "/v1/lease/0", None, 400),
        ("GET", "/v1/lease/abc", None, 400),
        ("POST", "/v1/lease/3", None, 404),
        ("GET", "/v1/lease/3/keepalive", None, 404),
        ("PUT", "/v1/lease/3", None, 405),
    ],
)
def test_bad_lease_requests(method: str, path: str, body: Any, status: int) -> None:
    api, server = make_api()
    assert call(api, method, path, body)[0] == status
    assert server.requests.index == 0
