"""The checker against a brute-force reference on small random histories (Hypothesis)."""

from __future__ import annotations

import io

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.check import Operation, check_history, dump_history, load_history
from raftkv.check.history import OperationKind, Status
from tests.check.reference import brute_force_linearizable

VALUES = ["a", "b", "c"]
values = st.sampled_from(VALUES)
reported_current = st.sampled_from([msgspec.UNSET, None, *VALUES])
OPERATIONS_MAX = 7
KINDS: list[OperationKind] = ["get", "put", "del", "cas"]
STATUSES: list[Status] = ["ok", "ok", "ok", "unknown", "fail"]


@st.composite
def operations(draw: st.DrawFn, client: str) -> Operation:
    op = draw(st.sampled_from(KINDS))
    key = draw(st.sampled_from(["x", "x", "y"]))
    call = draw(st.integers(0, 10))
    ret = call + draw(st.integers(0, 5))
    status = draw(st.sampled_from(STATUSES))
    fields: dict[str, object] = {}
    if op == "put":
        fields["value"] = draw(values)
    elif op == "cas":
        fields["value"] = draw(values)
        if draw(st.booleans()):
            fields["if_absent"] = True
        else:
            fields["if_value"] = draw(values)
    operation = Operation(
        client=client, op=op, key=key, call_time=call, return_time=ret, status=status,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    replace = msgspec.structs.replace
    if status == "unknown":
        return replace(operation, return_time=draw(st.sampled_from([None, ret])))
    observation = draw(st.booleans())
    if op in ("get", "del") and observation:
        return replace(operation, error="not_found")
    if op == "cas" and observation:
        return replace(operation, error="cas_failed", current=draw(reported_current))
    if status == "fail":
        return replace(operation, error="not_leader")
    if op == "get":
        return replace(operation, result=draw(values))
    return operation


@st.composite
def histories(draw: st.DrawFn) -> list[Operation]:
    count = draw(st.integers(1, OPERATIONS_MAX))
    return [draw(operations(f"c{number}")) for number in range(count)]


@settings(max_examples=400, deadline=None)
@given(histories())
def test_checker_agrees_with_brute_force(history: list[Operation]) -> None:
    result = check_history(history)
    assert result.ok is brute_force_linearizable(history), result.explain()
    explanation = result.explain()
    if result.ok:
        assert explanation == result.summary()
        return
    for key in result.failed_keys:
        minimal = [indexed.operation for indexed in result.keys[key].minimal]
        # The minimal sub-history is itself a proof: it has no linearization either.
        assert minimal
        assert not brute_force_linearizable(minimal), explanation
        assert check_history(minimal).ok is False


@settings(max_examples=100, deadline=None)
@given(histories())
def test_history_round_trips_through_json_lines(history: list[Operation]) -> None:
    file = io.StringIO()
    dump_history(history, file)
    loaded = load_history(file.getvalue().splitlines())
    assert list(loaded) == history
