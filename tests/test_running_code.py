"""`raftkv.running_code()`: what the benchmarks print so that a number measured on the slow,
interpreted path says so (the node processes of `raft-bench` hide the import warning)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

import raftkv

CORE = Path(raftkv.__file__).parent / "core"


def running_code(**environment: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "RAFTKV_PURE"}
    env.update(environment)
    command = "import raftkv; print(raftkv.running_code())"
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_raftkv_pure_is_named_as_the_reason() -> None:
    assert running_code(RAFTKV_PURE="1") == "interpreted (RAFTKV_PURE is set)"


def test_without_it_the_answer_follows_the_extensions_on_disk() -> None:
    answer = running_code()
    if not glob.glob(str(CORE / "node.*.so")):
        assert answer == "interpreted (installed without compiling)"
    elif raftkv._CHECKOUT and (stale := raftkv._stale_extension()) is not None:
        reason = f"{os.path.relpath(stale)} is newer than its compiled extension"
        assert answer == f"interpreted ({reason})"
    else:
        assert answer == "compiled"


def test_an_extension_older_than_its_py_or_c_source_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mypyc's extensions have a .py source; kv/snapshot_native.c is C written by hand."""
    monkeypatch.setattr(raftkv, "_ROOT", str(tmp_path))
    (tmp_path / "kv").mkdir()
    for stem, suffix in (("compiled", ".py"), ("native", ".c")):
        extension = tmp_path / "kv" / f"{stem}.cpython-311-x86_64-linux-gnu.so"
        source = tmp_path / "kv" / f"{stem}{suffix}"
        extension.write_bytes(b"")
        source.write_text("")
        os.utime(extension, (2000, 2000))
        os.utime(source, (1000, 1000))
        assert raftkv._stale_extension() is None
        os.utime(source, (3000, 3000))
        assert raftkv._stale_extension() == str(source)
        os.utime(source, (1000, 1000))
