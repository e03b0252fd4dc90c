"""`raft-chaos` end to end: a short run of real processes with every nemesis kind exits 0
and writes the history, the nemesis log and a self-contained report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.chaos.test_verdict import assert_self_contained_report
from tests.process.cluster import BIN

FAULT_KINDS = {"kill", "pause", "partition", "transfer", "membership"}


def test_a_short_run_with_every_fault_passes_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [
            str(BIN / "raft-chaos"),
            "--seed",
            "3",
            "--seconds",
            "8",
            "--nodes",
            "3",
            "--clients",
            "3",
            "--nemesis",
            "all",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,  # a bound on a stuck run; the run itself takes about 15 s
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "links cut with" in run.stdout and "PASS" in run.stdout
    events = [json.loads(line) for line in (out / "nemesis.jsonl").read_text().splitlines()]
    assert {e["kind"] for e in events if e["event"] == "start"} == FAULT_KINDS
    assert sum(e["event"] == "start" for e in events) == sum(e["event"] == "end" for e in events)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) > 100
    assert {h["client"] for h in history} >= {"c0", "c1", "c2", "final"}
    page = assert_self_contained_report(out)
    assert "OK n=" in page and "agree at index" in page
