"""The client's decoding of answers (client/protocol.py, client/results.py,
client/errors.py): any status and body a node — or whatever stands at its address — sends
make `read_answer` return a JSON object or raise a `ClientError`, `read_readiness` return a
`NodeHealth` or raise one, and `decode_result` return its typed result or raise
`BadResponse`; typed results round-trip through their JSON."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.client.errors import BadResponse, error_from_answer
from raftkv.client.protocol import NodeHealth, read_answer, read_readiness
from raftkv.client.results import (
    AdminResult,
    Membership,
    NodeStatus,
    ReadResult,
    WriteResult,
    decode_result,
)
from raftkv.errors import ClientError

from .fuzzing import any_text, deep_json, edge_integers, fuzz, mutated, raises_only

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | edge_integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
answer_fields = st.fixed_dictionaries(
    {},
    optional={
        "error": st.sampled_from(["not_leader", "cas_failed", "timeout", "no_leader", "x"])
        | json_values,
        "message": json_values,
        "leader": st.sampled_from(["node2", "node\u00b2", "node" + "9" * 5000, "node", "node-1"])
        | json_values,
        "leader_id": json_values,
        "checks": st.dictionaries(any_text, any_text | edge_integers, max_size=2) | json_values,
        "ok": json_values,
        "current": json_values,
        "index": json_values,
    },
)
answer_bodies = st.one_of(
    answer_fields.map(lambda answer: json.dumps(answer).encode()),
    mutated(answer_fields.map(lambda answer: json.dumps(answer).encode())),
    st.binary(max_size=60),
    st.sampled_from([b'{"error": "\xff"}', b'{"a": ' + deep_json(100_000) + b"}"]),
)
statuses = st.sampled_from(
    [200, 201, 204, 400, 404, 409, 413, 421, 422, 500, 503, 504]
) | st.integers(100, 599)

_NOT_LEADER_SUPERSCRIPT = b'{"error": "not_leader", "leader": "node\xc2\xb2"}'
_NOT_LEADER_LONG = b'{"error": "not_leader", "leader": "node' + b"9" * 5000 + b'"}'


@fuzz
@given(status=statuses, body=answer_bodies)
@example(status=421, body=_NOT_LEADER_SUPERSCRIPT)
@example(status=421, body=_NOT_LEADER_LONG)
@example(status=200, body=b'{"error": "\xff"}')
@example(status=200, body=b'{"a": ' + deep_json(100_000) + b"}")
def test_any_answer_is_an_object_or_a_client_error(status: int, body: bytes) -> None:
    payload = raises_only(read_answer, ClientError, status, body)
    if payload is not None:
        assert isinstance(payload, dict) and 200 <= status < 300


@fuzz
@given(status=statuses, body=answer_bodies)
@example(status=503, body=b'{"checks": {}, "ok": false, "zz": "\xff"}')
@example(status=503, body=b'{"checks": ' + deep_json(100_000) + b"}")
def test_any_readiness_answer_is_a_health_or_a_client_error(status: int, body: bytes) -> None:
    health = raises_only(read_readiness, ClientError, 1, ("h", 1), status, body)
    if health is not None:
        assert isinstance(health, NodeHealth) and health.live
        health.summary()


@fuzz
@given(payload=st.dictionaries(any_text, json_values, max_size=4) | answer_fields)
def test_error_answers_become_client_errors(payload: dict[str, Any]) -> None:
    assert isinstance(error_from_answer(421, payload), ClientError)


result_types = st.sampled_from([WriteResult, ReadResult, NodeStatus, Membership, AdminResult])


@fuzz
@given(
    result_type=result_types,
    payload=st.dictionaries(any_text, json_values, max_size=4) | answer_fields,
)
def test_decode_result_returns_its_type_or_raises_bad_response(
    result_type: type[Any], payload: dict[str, Any]
) -> None:
    result = raises_only(decode_result, BadResponse, payload, result_type)
    if result is not None:
        assert isinstance(result, result_type) and result.raw == payload


write_results = st.builds(WriteResult, leader=st.integers(1, 9), index=st.integers(0, 2**62))
read_results = st.builds(ReadResult, key=any_text, value=any_text, index=st.integers(0, 2**62))


@fuzz
@given(result=write_results | read_results)
def test_results_round_trip_through_their_json(result: WriteResult | ReadResult) -> None:
    body = msgspec.json.encode(msgspec.structs.replace(result, raw={}))
    payload = msgspec.json.decode(body)
    payload.pop("raw")
    decoded = decode_result(read_answer(200, json.dumps(payload).encode()), type(result))
    assert msgspec.structs.replace(decoded, raw={}) == msgspec.structs.replace(result, raw={})
