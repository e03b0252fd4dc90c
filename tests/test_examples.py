"""The examples keep working: the replicated counter agrees on every node, and the lock
service hands its lock over once the holder stops renewing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_replicated_counter_example_agrees_everywhere() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "replicated_counter.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    states = re.findall(r"^node(\d): \{'apples': (-?\d+)\} hash (\w+)$", result.stdout, re.M)
    assert len(states) == 3
    assert {(count, digest) for _, count, digest in states} == {("12", states[0][2])}


def test_lock_service_example_hands_the_lock_over_after_expiry() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lock_service.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    holders = re.findall(r"^node(\d): 'report' held by (\S+)$", result.stdout, re.M)
    assert sorted(holders) == [("1", "worker-b"), ("2", "worker-b"), ("3", "worker-b")]
    assert "all nodes stopped" in result.stdout
