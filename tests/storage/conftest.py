"""The `stores` fixture: every storage implementation, for the conformance suite: the memory
twins, the file stores on the real disk and the file stores on the simulated disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import (
    SMALL_CACHE_ENTRIES,
    SMALL_SEGMENT_BYTES,
    FileHarness,
    MemoryHarness,
    SimulatedHarness,
    StoreHarness,
)


@pytest.fixture(
    params=[
        "memory",
        "file-small-segments",
        "file-default",
        "simulated-small-segments",
        "simulated-default",
    ]
)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreHarness]:
    harness: StoreHarness
    if request.param == "memory":
        harness = MemoryHarness()
    elif request.param == "file-small-segments":
        harness = FileHarness(tmp_path, SMALL_SEGMENT_BYTES, SMALL_CACHE_ENTRIES)
    elif request.param == "simulated-small-segments":
        harness = SimulatedHarness(1, SMALL_SEGMENT_BYTES, SMALL_CACHE_ENTRIES)
    elif request.param == "simulated-default":
        harness = SimulatedHarness(2, 64 << 20, 8192)
    else:
        harness = FileHarness(tmp_path, 64 << 20, 8192)
    yield harness
    harness.close()
