"""raft-node spaces Python's full collections (`space_full_collections`): each walks every
tracked container, and a large state's sorted keys are big ones."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from raftkv.cli.node import FULL_COLLECTIONS_AFTER, space_full_collections


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    yield saved
    gc.set_threshold(*saved)


def test_full_collections_come_ten_times_further_apart(thresholds: tuple[int, int, int]) -> None:
    space_full_collections()
    youngest, middle, oldest = gc.get_threshold()
    assert (youngest, middle) == thresholds[:2]  # the young generations as Python has them
    assert oldest == FULL_COLLECTIONS_AFTER > 10  # Python's default: 10
