"""The checker's history reader (check/history.py): any JSON-lines input makes
`load_history` return a History of valid operations or raise `HistoryError` naming the
line, never anything else; valid histories round-trip through `dump_history`."""

from __future__ import annotations

import io

from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.check.history import (
    History,
    HistoryError,
    Operation,
    dump_history,
    encode_operation,
    load_history,
    validate_operation,
)

from .fuzzing import any_text, deep_json, fuzz, mutated, raises_only

times = st.floats(min_value=0, max_value=1e9, allow_nan=False)


@st.composite
def operations(draw: st.DrawFn) -> Operation:
    op = draw(st.sampled_from(["get", "put", "del", "cas"]))
    call = draw(times)
    status = draw(st.sampled_from(["ok", "fail", "unknown"]))
    fields: dict[str, object] = {
        "client": draw(any_text),
        "op": op,
        "key": draw(any_text),
        "call_time": call,
    }
    if op in ("put", "cas"):
        fields["value"] = draw(any_text)
    if op == "cas":
        fields["if_value"] = draw(any_text)
    fields["status"] = status
    if status != "unknown":
        fields["return_time"] = call + draw(times)
    if op == "get" and status == "ok":
        fields["result"] = draw(st.none() | any_text)
    operation = Operation(**fields)  # type: ignore[arg-type]
    assert validate_operation(operation) is None, (operation, validate_operation(operation))
    return operation


histories = st.lists(operations(), max_size=5)
valid_lines = histories.map(lambda ops: b"".join(encode_operation(op) + b"\n" for op in ops))


@fuzz
@given(text=st.one_of(valid_lines, mutated(valid_lines), st.binary(max_size=200)))
@example(text=b'{"client": "\xff", "op": "get", "key": "k", "call": 0, "return": 1}\n')
@example(
    text=b'{"client": "c", "op": "get", "key": "k", "call": 0, "return": 1, "zz": '
    + deep_json(100_000)
    + b"}\n"
)
@example(text=b'{"client": "c", "op": "get", "key": "k", "call": 1e400, "return": 1}\n')
def test_any_history_loads_or_raises_history_error(text: bytes) -> None:
    history = raises_only(load_history, HistoryError, text.splitlines(keepends=True))
    if history is not None:
        assert all(validate_operation(operation) is None for operation in history)


@fuzz
@given(ops=histories)
def test_histories_round_trip(ops: list[Operation]) -> None:
    out = io.StringIO()
    dump_history(ops, out)
    assert load_history(io.StringIO(out.getvalue())) == History(tuple(ops))
