from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.cluster import ProcessCluster, attach_node_logs, started_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """A started 3-node cluster; every process is killed afterwards, pass or fail."""
    with started_cluster(tmp_path) as processes:
        yield processes


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """When a real-process test fails, show the end of each node's log in the report."""
    outcome = yield
    attach_node_logs(outcome.get_result(), getattr(item, "funcargs", {}).get("tmp_path"))
