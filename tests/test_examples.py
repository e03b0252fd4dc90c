"""The examples keep working: the replicated counter agrees on every node."""

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
