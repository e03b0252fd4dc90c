from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.cluster import ProcessCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """A started 3-node cluster; every process is killed afterwards, pass or fail."""
    processes = ProcessCluster(tmp_path)
    try:
        processes.start_all()
        processes.wait_leader()
        yield processes
    finally:
        processes.stop_all()
