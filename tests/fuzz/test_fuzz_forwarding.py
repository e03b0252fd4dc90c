"""Forwarded membership requests (server/forwarding.py): the JSON payload of a forwarded
`add`, `remove` or `transfer` (SPEC §4) gives a node id and address or raises `ValueError`,
which the leader answers `bad_request`; nothing else (an OverflowError or RecursionError
was answered `internal` with a traceback in the log). Valid payloads round-trip."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.core.messages import Forward, ForwardReply
from raftkv.server.forwarding import Forwarding, member_request

from .fuzzing import any_text, deep_json, edge_integers, fuzz, hostile, raises_only

kinds = st.sampled_from(["add", "remove", "transfer"])
fields = st.fixed_dictionaries(
    {},
    optional={
        "id": edge_integers
        | st.floats()
        | any_text
        | st.none()
        | st.booleans()
        | st.lists(st.integers(), max_size=2),
        "to": edge_integers | st.floats() | any_text,
        "address": any_text | edge_integers | st.none(),
    },
)
payloads = fields.map(lambda value: json.dumps(value).encode()) | st.sampled_from(
    [b"[]", b"5", b'"x"', b"null"]
)


@fuzz
@given(kind=kinds, payload=hostile(payloads))
@example(kind="add", payload=b'{"id": 1e400, "address": "h:1"}')
@example(kind="transfer", payload=b'{"to": -Infinity}')
@example(kind="remove", payload=b'{"id": ' + deep_json(100_000) + b"}")
@example(kind="remove", payload=b'{"id": "\xff"}')
def test_any_member_payload_parses_or_raises_value_error(kind: str, payload: bytes) -> None:
    raises_only(member_request, ValueError, kind, payload)


@fuzz
@given(node_id=st.integers(1, 2**31 - 1), address=any_text)
def test_valid_member_payloads_round_trip(node_id: int, address: str) -> None:
    assert member_request("add", json.dumps({"id": node_id, "address": address}).encode()) == (
        node_id,
        address,
    )
    assert member_request("remove", json.dumps({"id": node_id}).encode()) == (node_id, "")
    assert member_request("transfer", json.dumps({"to": node_id}).encode()) == (node_id, "")


class _Host:
    """Just what the leader's side of forwarding touches to refuse a malformed request."""

    id = 1
    node = SimpleNamespace(leader_id=1)

    def __init__(self) -> None:
        self.sent: list[ForwardReply] = []

    def send(self, message: ForwardReply) -> None:
        self.sent.append(message)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("add", b'{"id": 1e400, "address": "h:1"}'),
        ("transfer", b'{"to": Infinity}'),
        ("remove", b'{"id": ' + deep_json(100_000) + b"}"),
    ],
)
def test_a_malformed_forwarded_request_is_answered_bad_request(kind: str, payload: bytes) -> None:
    host = _Host()
    forwarding = Forwarding(host)  # type: ignore[arg-type]
    request = Forward(to=1, term=0, from_id=2, request_id=7, kind=kind, payload=payload)  # type: ignore[arg-type]
    asyncio.run(forwarding._serve(request))
    [reply] = host.sent
    assert (reply.error, reply.request_id) == ("bad_request", 7)  # was "internal", logged as a bug
