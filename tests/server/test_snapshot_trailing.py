"""How much log a snapshot leaves behind it: a fixed number of entries for followers that
are slightly behind, but never more than a fixed number of bytes (with 1 MiB values, 1,000
entries would pin a GiB in memory)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.server.options import SNAPSHOT_TRAILING_BYTES, SNAPSHOT_TRAILING_ENTRIES
from raftkv.server.snapshots import SnapshotTaker


class FakeLog:
    def __init__(self, snapshot_index: int, sizes: dict[int, int]) -> None:
        self.snapshot_index = snapshot_index
        self.sizes = sizes

    def entry(self, index: int) -> Any:
        assert index > self.snapshot_index, "asked for a compacted entry"
        return SimpleNamespace(data=b"x" * self.sizes[index])


def trailing(snapshot_index: int, index: int, size: int) -> int:
    log = FakeLog(snapshot_index, {i: size for i in range(snapshot_index + 1, index + 1)})
    server: Any = SimpleNamespace(
        node=SimpleNamespace(log=log),
        options=SimpleNamespace(snapshot_trailing_entries=SNAPSHOT_TRAILING_ENTRIES),
    )
    return SnapshotTaker(server)._trailing_entries(index)


def test_small_entries_keep_the_entry_count() -> None:
    assert trailing(0, 5_000, 100) == SNAPSHOT_TRAILING_ENTRIES


def test_never_past_the_previous_snapshot() -> None:
    assert trailing(4_700, 5_000, 100) == 300


def test_big_entries_keep_at_most_the_byte_budget() -> None:
    kept = trailing(0, 5_000, 1 << 20)
    assert kept == SNAPSHOT_TRAILING_BYTES // (1 << 20)
    assert kept < SNAPSHOT_TRAILING_ENTRIES
