"""`raft-check`: output and exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from raftkv.check import Operation, dump_history, load_history
from raftkv.check.cli import main
from tests.check.builders import get, put, range_read


def write(path: Path, operations: list[Operation]) -> str:
    dump_history(operations, path)
    return str(path)


def test_linearizable_history_prints_ok_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "h.jsonl", [put("c1", 0, 1, "a"), get("c2", 2, 3, "a", key="k")])
    assert main([path]) == 0
    assert capsys.readouterr().out == "OK n=2 keys=1\n"


def test_violation_prints_the_explanation_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = [put("c1", 0, 1, "a"), put("c2", 2, 3, "b"), get("c3", 4, 5, "a")]
    minimal_path = tmp_path / "minimal.jsonl"
    path = write(tmp_path / "h.jsonl", history)
    assert main([path, "--minimal-out", str(minimal_path)]) == 1
    output = capsys.readouterr().out
    assert output.startswith("NOT LINEARIZABLE n=3 keys=1\n")
    assert "minimal non-linearizable sub-history (3 of 3 operations" in output
    assert list(load_history(minimal_path)) == history


def test_exhausted_budget_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = [put(f"c{n}", 0, 10, f"v{n}") for n in range(6)] + [get("r", 11, 12, "v3")]
    path = write(tmp_path / "h.jsonl", history)
    assert main([path, "--max-states", "2", "--minimize-checks", "0"]) == 2
    assert capsys.readouterr().out.startswith("UNKNOWN n=7 keys=1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{broken\n", "line 1: JSON is malformed"),
        ('{"client":"c","op":"get","key":"k","call":2,"return":1}\n', "line 1: return time"),
    ],
)
def test_bad_input_exits_3_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "h.jsonl"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("raft-check: bad history: ")
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_bad_arguments_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 3
    assert main(["h.jsonl", "--max-states", "0"]) == 3
    assert "raft-check:" in capsys.readouterr().err


def test_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = io.StringIO()
    dump_history([put("c1", 0, 1, "a")], text)

    class Stdin:
        buffer = io.BytesIO(text.getvalue().encode())

    monkeypatch.setattr("sys.stdin", Stdin)
    assert main(["-"]) == 0
    assert capsys.readouterr().out == "OK n=1 keys=1\n"


def test_multi_key_histories_are_read_and_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writes = [put("c1", 0, 1, "a", key="x"), put("c1", 2, 3, "b", key="y")]
    good = write(tmp_path / "good.jsonl", [*writes, range_read("c2", 4, 5, {"x": "a", "y": "b"},
                                                                start="x")])  # fmt: skip
    assert main([good]) == 0
    assert capsys.readouterr().out == "OK n=3 keys=1\n"
    missing = range_read("c2", 4, 5, {"x": "a"}, start="x")
    bad = write(tmp_path / "bad.jsonl", [*writes, missing])
    assert main([bad]) == 1
    output = capsys.readouterr().out
    assert output.startswith("NOT LINEARIZABLE n=3 keys=1\n")
    assert "keys {'x', 'y'}: not linearizable" in output
    assert "map after it (other keys absent): {'x': 'a', 'y': 'b'}" in output
    assert "#2 c2 range ['x', ...) [call 4, return 5] -> {'x': 'a'}" in output
