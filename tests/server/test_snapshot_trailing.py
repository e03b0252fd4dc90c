"""How much log a snapshot leaves behind it: a fixed number of entries for followers that
are slightly behind, but never more than a fixed number of bytes (with 1 MiB values, 1,000
entries would pin a GiB in memory)."""

from __future__ import annotations

from raftkv.core import Entry
from raftkv.server.options import SNAPSHOT_TRAILING_BYTES, SNAPSHOT_TRAILING_ENTRIES
from raftkv.server.snapshots import trailing_entries


class FakeLog:
    """The core's log as `trailing_entries` reads it (snapshots.TrailingLog)."""

    def __init__(self, snapshot_index: int, sizes: dict[int, int]) -> None:
        self.snapshot_index = snapshot_index
        self.sizes = sizes

    def entry(self, index: int) -> Entry:
        assert index > self.snapshot_index, "asked for a compacted entry"
        return Entry(index=index, term=1, data=b"x" * self.sizes[index])


def trailing(snapshot_index: int, index: int, size: int) -> int:
    log = FakeLog(snapshot_index, {i: size for i in range(snapshot_index + 1, index + 1)})
    return trailing_entries(log, index, SNAPSHOT_TRAILING_ENTRIES)


def test_small_entries_keep_the_entry_count() -> None:
    assert trailing(0, 5_000, 100) == SNAPSHOT_TRAILING_ENTRIES


def test_never_past_the_previous_snapshot() -> None:
    assert trailing(4_700, 5_000, 100) == 300


def test_big_entries_keep_at_most_the_byte_budget() -> None:
    kept = trailing(0, 5_000, 1 << 20)
    assert kept == SNAPSHOT_TRAILING_BYTES // (1 << 20)
    assert kept < SNAPSHOT_TRAILING_ENTRIES
