"""`GET /v1/kv/{key}` answers the key's revisions beside its value (SPEC §3, §6)."""

from __future__ import annotations

from tests.server.test_http_api_sessions import call, make_api


def test_get_answers_revisions_beside_value_and_index() -> None:
    api, _ = make_api(sessions_max=10)
    assert call(api, "PUT", "/v1/kv/a", {"value": "1"})[0] == 200
    assert call(api, "PUT", "/v1/kv/b", {"value": "x"})[0] == 200
    assert call(api, "PUT", "/v1/kv/a", {"value": "2"})[0] == 200
    status, body = call(api, "GET", "/v1/kv/a", query={"consistency": "stale"})
    assert status == 200
    assert body == {
        "key": "a",
        "value": "2",
        "create_index": 1,
        "mod_index": 3,
        "version": 2,
        "index": 3,
    }
    status, body = call(api, "GET", "/v1/kv/nope")
    assert (status, body["error"], body["index"]) == (404, "not_found", 3)
