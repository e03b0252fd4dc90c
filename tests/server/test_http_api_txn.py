"""`POST /v1/txn` (SPEC §6, "Transactions"): the answer, validation and limits."""

from __future__ import annotations

from typing import Any

import pytest

from raftkv.server.api_requests import TXN_OPS_MAX
from tests.server.test_http_api_sessions import call, make_api


def test_a_transaction_answers_its_branch_and_results() -> None:
    api, server = make_api(sessions_max=10)
    assert call(api, "PUT", "/v1/kv/a", {"value": "1"})[0] == 200
    body = {
        "compare": [{"key": "a", "target": "value", "op": "==", "value": "1"}],
        "success": [{"op": "put", "key": "b", "value": "2"}, {"op": "get", "key": "a"}],
        "failure": [{"op": "range", "prefix": "a"}],
        "client_id": "c1",
        "seq": 7,
        "after_index": 0,  # a first write of a session may have any seq with it
    }
    status, answer = call(api, "POST", "/v1/txn", body)
    assert status == 200
    assert (answer["succeeded"], answer["index"], answer["ok"]) == (True, 2, True)
    assert answer["results"][0] == {"op": "put", "key": "b", "mod_index": 2}
    assert answer["results"][1]["kv"]["value"] == "1"
    body["compare"][0]["value"] = "nope"
    body["seq"] = 8
    status, answer = call(api, "POST", "/v1/txn", body)
    assert (status, answer["succeeded"]) == (200, False)
    assert answer["results"] == [
        {
            "op": "range",
            "kvs": [{"key": "a", "value": "1", "create_index": 1, "mod_index": 1, "version": 1}],
            "count": 1,
            "more": False,
        }
    ]
    assert server.requests.store.get("b") == "2"


@pytest.mark.parametrize(
    "body",
    [
        {"compare": "x"},
        {"compare": [{"key": "a", "target": "colour", "op": "==", "value": "1"}]},
        {"compare": [{"key": "a", "target": "version", "op": "==", "value": "1"}]},
        {"compare": [{"key": "a", "target": "exists", "op": "<", "value": True}]},
        {"compare": [{"key": "", "target": "value", "op": "==", "value": "1"}]},
        {"success": [{"op": "explode", "key": "a"}]},
        {"success": [{"op": "put", "key": "a"}]},
        {"success": [{"op": "get"}]},
        {"success": [{"op": "range", "prefix": "a", "start": "b"}]},
        {"success": [{"op": "range", "limit": 0}]},
        {"success": [{"op": "get", "key": "a"}] * (TXN_OPS_MAX + 1)},
    ],
)
def test_bad_transactions_are_400(body: dict[str, Any]) -> None:
    api, server = make_api()
    status, answer = call(api, "POST", "/v1/txn", body)
    assert (status, answer["error"]) == (400, "bad_request"), answer
    assert server.requests.index == 0


def test_values_beyond_the_limit_are_413() -> None:
    api, server = make_api()
    big = "x" * (600 << 10)
    body = {
        "success": [
            {"op": "put", "key": "a", "value": big},
            {"op": "put", "key": "b", "value": big},
        ]
    }
    status, answer = call(api, "POST", "/v1/txn", body)
    assert (status, answer["error"]) == (413, "too_large")
    assert server.requests.index == 0
