"""`raft-chaos` end to end: a short run of real processes with every nemesis kind exits 0
and writes the history, the nemesis log and a self-contained report; an interrupted run
leaves no node behind."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.chaos.test_verdict import assert_self_contained_report
from tests.process.cluster import BIN, wait_for

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


def nodes_of(pid: int) -> list[int]:
    """The raft-node processes `pid` started (not its short-lived `nft` calls)."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "raft-node"], capture_output=True, text=True
    )
    return [int(child) for child in found.stdout.split()]


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_kills_every_node(tmp_path: Path, signal_number: int) -> None:
    chaos = subprocess.Popen(
        [str(BIN / "raft-chaos"), "--seconds", "30", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        nodes = wait_for(
            lambda: len(nodes_of(chaos.pid)) >= 3 and nodes_of(chaos.pid), 30, "three nodes"
        )
        chaos.send_signal(signal_number)
        output, _ = chaos.communicate(timeout=60)
        assert chaos.returncode == 130, output
        assert "interrupted; every node killed" in output
        assert not [pid for pid in nodes if running(pid)]
    finally:
        if chaos.poll() is None:
            chaos.kill()
            chaos.wait()
