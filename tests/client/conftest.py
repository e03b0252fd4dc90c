"""Fixtures for the client tests: a fake cluster and a way to run `raft-client` in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from raftkv.cli.client import main
from tests.client.fake_cluster import FakeCluster

RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster() as fake:
        yield fake


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run `raft-client ARGS...`; its exit code, stdout and stderr."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
