"""The JSON-lines format, its validation, and the recorder."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pytest

from raftkv.check import (
    HistoryError,
    HistoryRecorder,
    Operation,
    check_history,
    describe_operation,
    dump_history,
    load_history,
)


def test_lines_decode_with_documented_field_names(tmp_path: Path) -> None:
    lines = [
        '{"client":"c1","op":"put","key":"k","value":"a","call":1,"return":2.5,"status":"ok"}',
        "",
        '{"client":"c2","op":"get","key":"k","call":3,"return":4,"result":"a","node":"n1"}',
        '{"client":"c3","op":"cas","key":"k","value":"b","if_value":"z","call":5,'
        '"return":6,"status":"fail","error":"cas_failed","current":null}',
        '{"client":"c4","op":"del","key":"k","call":7,"return":null,"status":"unknown"}',
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    history = load_history(path)
    assert len(history) == 4
    first, read, failed_cas, unknown_delete = history
    assert (first.call_time, first.return_time, first.status) == (1.0, 2.5, "ok")
    assert read.result == "a"  # unknown fields ("node") are ignored
    assert failed_cas.current is None  # null: found absent; a missing field would be UNSET
    assert unknown_delete.return_time is None
    assert load_history(str(path)) == history
    assert load_history(lines) == history


def test_dump_then_load_round_trips_and_omits_defaults(tmp_path: Path) -> None:
    operations = [
        Operation(client="c1", op="put", key="k", value="a", call_time=1, return_time=2),
        Operation(
            client="c2", op="cas", key="k", value="b", if_value="a", call_time=3,
            return_time=4, error="cas_failed", current=None,
        ),
    ]  # fmt: skip
    file = io.StringIO()
    dump_history(operations, file)
    first_line = file.getvalue().splitlines()[0]
    assert first_line == ('{"client":"c1","op":"put","key":"k","value":"a","call":1,"return":2}')
    dump_history(operations, tmp_path / "out.jsonl")
    assert list(load_history(tmp_path / "out.jsonl")) == operations


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 1: JSON is malformed"),
        ('{"client":"c","op":"put","key":"k","value":"a"}', "line 1: Object missing required"),
        ('{"client":"c","op":"inc","key":"k","call":1}', "line 1: Invalid enum value 'inc'"),
        ('{"client":"c","op":"put","key":"k","value":"a","call":2,"return":1}', "before call"),
        ('{"client":"c","op":"put","key":"k","call":1,"return":2}', "put needs a value"),
        ('{"client":"c","op":"get","key":"k","call":1}', "needs a return time"),
        ('{"client":"c","op":"cas","key":"k","value":"a","call":1,"return":2}', "if_value or"),
        (
            '{"client":"c","op":"put","key":"k","value":"a","call":1,"return":2,"error":"x"}',
            "status ok with error 'x'",
        ),
        (
            '{"client":"c","op":"get","key":"k","call":1,"return":2,"current":"a"}',
            "current is only for a cas_failed",
        ),
    ],
)
def test_invalid_lines_are_reported_with_their_line_number(line: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        load_history(["", line] if message.startswith("line 2") else [line])


def test_missing_file_is_a_history_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot read"):
        load_history(tmp_path / "absent.jsonl")


def test_describe_operation_reads_like_the_call() -> None:
    operation = Operation(
        client="c3", op="cas", key="k", value="b", if_value="a", call_time=1.5, return_time=2,
        error="cas_failed", current="z",
    )  # fmt: skip
    assert describe_operation(operation, 12) == (
        "#12 c3 cas 'k' 'a'->'b' [call 1.5, return 2] -> cas_failed (current 'z')"
    )
    pending = Operation(client="c1", op="del", key="k", call_time=3, status="unknown")
    assert describe_operation(pending) == "c1 del 'k' [call 3, no return] outcome unknown"


def test_recorder_records_calls_and_outcomes_with_the_times_it_is_given() -> None:
    recorder = HistoryRecorder()
    write = recorder.invoke("c1", "put", "k", value="a", time=1.0)
    read = recorder.invoke("c2", "get", "k", time=1.5)
    lost = recorder.invoke("c3", "put", "k", value="b", time=1.6)
    recorder.complete(write, "ok", time=2.0)
    recorder.complete(read, "ok", result="a", time=3.0)
    conditional = recorder.invoke("c2", "cas", "k", value="c", if_value="z", time=4.0)
    recorder.complete(conditional, "fail", error="cas_failed", current="a", time=5.0)
    history = recorder.history()
    assert [op.status for op in history] == ["ok", "ok", "unknown", "fail"]
    assert history.operations[lost].return_time is None  # never completed: unknown
    assert check_history(history).ok is True
    file = io.StringIO()
    recorder.dump(file)
    assert len(file.getvalue().splitlines()) == 4


def test_recorder_refuses_invalid_records() -> None:
    recorder = HistoryRecorder()
    with pytest.raises(HistoryError, match="put needs a value"):
        recorder.invoke("c1", "put", "k", time=0)
    handle = recorder.invoke("c1", "get", "k", time=5)
    with pytest.raises(HistoryError, match="before call"):
        recorder.complete(handle, "ok", time=1)
    recorder.complete(handle, "unknown", time=None)
    with pytest.raises(HistoryError, match="completed twice"):
        recorder.complete(handle, "ok", time=6)
    assert msgspec.json.encode(recorder.history().operations[0]).startswith(b'{"client"')
