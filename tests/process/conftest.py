from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.cluster import ProcessCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """A started 3-node cluster; every process is killed afterwards, pass or fail."""
    processes = ProcessCluster(tmp_path)
    try:
        processes.start_all()
        processes.wait_settled()
        yield processes
    finally:
        processes.stop_all()


LOG_LINES_SHOWN = 60


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """When a real-process test fails, show the end of each node's log in the report: a
    failure on a loaded CI machine is often understood only from what the nodes said."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if not report.failed or tmp_path is None:
        return
    for log in sorted(Path(tmp_path).rglob("node-*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_LINES_SHOWN:]
        report.sections.append((f"{log.name} (last {len(lines)} lines)", "\n".join(lines)))
