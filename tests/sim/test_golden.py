"""`raft-sim --golden` prints tests/golden/golden.txt byte for byte.

After a deliberate change of behaviour, regenerate it and review the diff:
    raft-sim --golden > tests/golden/golden.txt
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "golden.txt"


def test_golden_transcript_matches_byte_for_byte() -> None:
    produced = subprocess.run(
        [sys.executable, "-m", "raftkv.cli.sim", "--golden"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert produced == GOLDEN.read_bytes(), (
        "golden transcript changed; if intended: raft-sim --golden > tests/golden/golden.txt"
    )


def test_golden_path_commits_the_workload_identically_everywhere() -> None:
    text = GOLDEN.read_text()
    assert "became leader" in text
    for command in ("put x=1", "put y=2", "del x"):
        assert f"client: {command} committed" in text
    final = [line for line in text.splitlines() if line.startswith("node ")]
    assert len(final) == 3
    assert len({line.split("applied_hash=")[1] for line in final}) == 1
    assert all(line.endswith('data={"y": "2"}') for line in final)
