"""Every command says which release it is (`--version`, exit 0), as the package does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import raftkv

BIN = Path(sys.executable).parent
COMMANDS = ["raft-node", "raft-client", "raft-sim", "raft-check", "raft-bench", "raft-chaos"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_tells_its_version(command: str) -> None:
    result = subprocess.run(
        [str(BIN / command), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command} (raftkv) {raftkv.__version__}"
