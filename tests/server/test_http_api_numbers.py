"""Numbers in requests (SPEC §3): a seq, after_index, hash index or member id that is not
ASCII digits, or does not fit in 64 bits, is a 400 `bad_request` — never an exception out
of the handler (a 500 and a traceback in the node's log)."""

from __future__ import annotations

import pytest

from raftkv.server.api_requests import NUMBER_MAX

from .test_http_api_sessions import call, make_api

SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes; int() says no
ARABIC_THREE = "\u0663"  # int() takes it, but it is not ASCII


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("PUT", "/v1/kv/k", {"value": "v", "client_id": "a", "seq": 10**30}, None),
        ("PUT", "/v1/kv/k", {"value": "v", "client_id": "a", "seq": NUMBER_MAX + 1}, None),
        ("PUT", "/v1/kv/k", {"value": "v", "client_id": "a", "seq": 1, "after_index": 2**64}, None),
        ("DELETE", "/v1/kv/k", None, {"client_id": "a", "seq": SUPERSCRIPT_TWO}),
        ("DELETE", "/v1/kv/k", None, {"client_id": "a", "seq": ARABIC_THREE}),
        ("DELETE", "/v1/kv/k", None, {"client_id": "a", "seq": str(10**30)}),
        ("DELETE", "/v1/kv/k", None, {"client_id": "a", "seq": "1", "after_index": "9" * 5000}),
        ("GET", "/v1/hash", None, {"index": SUPERSCRIPT_TWO}),
        ("GET", "/v1/hash", None, {"index": str(10**30)}),
        ("DELETE", "/v1/members/" + SUPERSCRIPT_TWO, None, None),
        ("DELETE", "/v1/members/" + str(2**64), None, None),
        ("DELETE", "/v1/members/0", None, None),
        ("POST", "/v1/members", {"id": 2**64, "address": "h:1"}, None),
        ("POST", "/v1/transfer-leader", {"to": 2**64}, None),
    ],
)
def test_numbers_that_are_not_ascii_digits_or_out_of_range_are_400(
    method: str, path: str, body: object, query: dict[str, str] | None
) -> None:
    api, server = make_api()
    status, answer = call(api, method, path, body, query)
    assert (status, answer["error"]) == (400, "bad_request"), answer
    assert server.requests.index == 0  # nothing proposed


def test_the_largest_number_is_still_taken() -> None:
    api, _ = make_api()
    write = {"value": "v", "client_id": "a", "seq": NUMBER_MAX, "after_index": 0}
    assert call(api, "PUT", "/v1/kv/k", write)[0] == 200
    assert call(api, "GET", "/v1/hash", query={"index": str(NUMBER_MAX)})[0] == 404
