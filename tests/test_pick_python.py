"""scripts/pick-python: which interpreter `make` builds the virtualenv from.

Stand-in interpreters (shell scripts answering the probe with fixed words) on a PATH of
their own, and PICK_PYTHON_SYSTEM naming the stand-in for /usr/bin/python3.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pick-python"


def _interpreter(path: Path, answer: str) -> Path:
    """A fake interpreter that answers the probe (`-c ...`) with `answer`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{answer}'\n")
    path.chmod(0o755)
    return path


def _pick(tmp_path: Path, mine: str | None, system: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if mine is not None:
        _interpreter(bin_dir / "python3", mine)
    system_path = tmp_path / "system" / "python3"
    if system is not None:
        _interpreter(system_path, system)
    # /bin for sh, readlink and the other tools the script uses (no python3 there to find:
    # `command -v` looks only at PATH, and ours comes first).
    path = f"{bin_dir}:/usr/bin:/bin" if mine is not None else "/nonexistent"
    environment = {"PATH": path, "PICK_PYTHON_SYSTEM": str(system_path)}
    completed = subprocess.run(
        ["/bin/sh", str(SCRIPT)], env=environment, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def test_a_shared_libpython_gives_way_to_the_systems_static_build_of_the_same_version(
    tmp_path: Path,
) -> None:
    system = _pick(tmp_path, mine="3.11 shared 1", system="3.11 static 1")
    assert system == str(tmp_path / "system" / "python3")


@pytest.mark.parametrize(
    ("mine", "system", "why"),
    [
        ("3.11 static 1", "3.11 static 1", "python3 is already a static build"),
        ("3.12 shared 1", "3.11 static 1", "another Python version: the user chose it"),
        ("3.11 shared 1", "3.11 shared 1", "the system's build is no faster"),
        ("3.11 shared 1", "3.11 static 0", "the system's cannot build (no venv or headers)"),
        ("3.11 shared 1", None, "there is no system interpreter"),
        ("3.11 shared 1", "", "the system's interpreter does not answer"),
    ],
)
def test_python3_stays_when(tmp_path: Path, mine: str, system: str | None, why: str) -> None:
    assert _pick(tmp_path, mine, system) == "python3", why


def test_without_any_python3_the_default_name_is_printed_for_make_to_report(
    tmp_path: Path,
) -> None:
    assert _pick(tmp_path, mine=None, system="3.11 static 1") == "python3"


def test_on_this_machine_the_pick_is_a_working_interpreter() -> None:
    picked = subprocess.run(
        ["/bin/sh", str(SCRIPT)], capture_output=True, text=True, check=True
    ).stdout.strip()
    completed = subprocess.run(
        [picked, "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == "True", (picked, sys.executable)
