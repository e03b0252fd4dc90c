"""The `stores` fixture: every storage implementation, for the conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import (
    SMALL_CACHE_ENTRIES,
    SMALL_SEGMENT_BYTES,
    FileHarness,
    MemoryHarness,
    StoreHarness,
)


@pytest.fixture(params=["memory", "file-small-segments", "file-default"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreHarness]:
    harness: StoreHarness
    if request.param == "memory":
        harness = MemoryHarness()
    elif request.param == "file-small-segments":
        harness = FileHarness(tmp_path, SMALL_SEGMENT_BYTES, SMALL_CACHE_ENTRIES)
    else:
        harness = FileHarness(tmp_path, 64 << 20, 8192)
    yield harness
    harness.close()
