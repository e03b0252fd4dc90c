"""Tests marked `interpreted` patch methods or module globals of code that setup.py compiles
with mypyc; compiled callers bind those at build time and never see a patch. So `make test`
runs the suite in two passes: everything else (`-m "not interpreted"`) on the modules as
installed, compiled where mypyc could build them, then the `interpreted` tests alone with
RAFTKV_PURE=1, every raftkv module imported from its .py file (raftkv/__init__.py).

A plain `pytest` on a compiled install deselects the `interpreted` tests (they would only
fail there) and says so in its summary; nothing is skipped. Tests marked `compiled` need the
C module setup.py builds beside mypyc's (kv/snapshot_native.c): run in the first pass, and
deselected from an interpreted run, which has no such module to test."""

from __future__ import annotations

import os

import pytest

import raftkv.core.node

COMPILED = not raftkv.core.node.__file__.endswith(".py")


def pytest_configure(config: pytest.Config) -> None:
    if COMPILED and os.environ.get("RAFTKV_PURE", "") not in ("", "0"):
        raise pytest.UsageError(
            f"RAFTKV_PURE is set but {raftkv.core.node.__file__} is a compiled extension"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unrunnable = "interpreted" if COMPILED else "compiled"
    deselected = [item for item in items if unrunnable in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if unrunnable not in item.keywords]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # (Said here, in the controlling process: with xdist the workers collect.)
    if COMPILED and "interpreted" not in (config.option.markexpr or ""):
        terminalreporter.write_line(
            "tests marked `interpreted` (they patch compiled code) were not run on the"
            " compiled modules: run them with RAFTKV_PURE=1 -m interpreted (make test does)",
            yellow=True,
        )
