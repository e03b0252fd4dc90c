"""`GET /v1/kv` and `DELETE /v1/kv` (SPEC §6, "Ranges"): pages, tokens, validation, the
consistency asked for, and a delete range applied once under retries."""

from __future__ import annotations

import pytest

from tests.server.test_http_api_sessions import call, make_api


def test_pages_follow_the_next_token() -> None:
    api, server = make_api(sessions_max=10)
    for key in ["p/3", "p/1", "q", "p/2", "o"]:
        assert call(api, "PUT", f"/v1/kv/{key}", {"value": key.upper()})[0] == 200
    status, body = call(api, "GET", "/v1/kv", query={"prefix": "p/", "limit": "2"})
    assert status == 200
    assert body["kvs"] == [
        {"key": "p/1", "value": "P/1", "create_index": 2, "mod_index": 2, "version": 1},
        {"key": "p/2", "value": "P/2", "create_index": 4, "mod_index": 4, "version": 1},
    ]
    assert (body["count"], body["more"], body["index"]) == (3, True, 5)
    query = {"prefix": "p/", "limit": "2", "after": body["next"], "keys_only": "true"}
    status, body = call(api, "GET", "/v1/kv", query=query)
    assert body["kvs"] == [{"key": "p/3", "create_index": 1, "mod_index": 1, "version": 1}]
    assert (body["more"], body["next"]) == (False, None)
    status, body = call(api, "GET", "/v1/kv", query={"start": "o", "end": "p/2"})
    assert [kv["key"] for kv in body["kvs"]] == ["o", "p/1"]
    status, body = call(api, "GET", "/v1/kv", query={"consistency": "lease"})
    assert body["count"] == 5
    assert server.consistencies == ["linearizable", "linearizable", "linearizable", "lease"]


@pytest.mark.parametrize(
    "query",
    [
        {"prefix": ""},
        {"prefix": "a", "start": "b"},
        {"start": "x" * 2000},
        {"limit": "0"},
        {"limit": "10001"},
        {"limit": "ten"},
        {"keys_only": "yes"},
        {"after": "%%%"},
        {"after": ""},
        {"consistency": "eventual"},
    ],
)
def test_bad_range_queries_are_400(query: dict[str, str]) -> None:
    api, server = make_api()
    status, body = call(api, "GET", "/v1/kv", query=query)
    assert (status, body["error"]) == (400, "bad_request")
    assert server.consistencies == []  # nothing read


def test_delete_range_once_under_retries() -> None:
    api, server = make_api(sessions_max=10)
    for key in ["a1", "a2", "b"]:
        assert call(api, "PUT", f"/v1/kv/{key}", {"value": "v"})[0] == 200
    query = {"prefix": "a", "client_id": "c", "seq": "1"}
    status, body = call(api, "DELETE", "/v1/kv", query=query)
    assert (status, body) == (200, {"ok": True, "leader": 1, "index": 4, "deleted": 2})
    assert call(api, "PUT", "/v1/kv/a3", {"value": "v"})[0] == 200
    status, body = call(api, "DELETE", "/v1/kv", query=query)  # a retry: the first answer
    assert (status, body["deleted"]) == (200, 2)
    assert server.requests.store.data == {"a3": "v", "b": "v"}


def test_delete_range_needs_a_range() -> None:
    api, server = make_api()
    status, body = call(api, "DELETE", "/v1/kv", query={"client_id": "c", "seq": "1"})
    assert (status, body["error"]) == (400, "bad_request")
    assert server.requests.index == 0
