"""The core's view of the replicated log (§5.3): entries after a compaction point, plus the
bookkeeping of what is durable, committed and handed out for applying.

The core keeps the log since the last snapshot in memory: snapshots bound its length, and a
pure core that never waits on a disk read stays simple and fast. Storage holds the durable
copy; on restart the driver hands the stored entries back to the constructor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from raftkv.core.messages import Entry
from raftkv.errors import InvariantViolation

# Bytes an entry costs beyond its payload when sizing batches (terms, index, framing).
ENTRY_OVERHEAD_BYTES: Final = 16


def entry_size(entry: Entry) -> int:
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


class RaftLog:
    __slots__ = (
        "applied",
        "committed",
        "entries",
        "handed_off",
        "snapshot_index",
        "snapshot_term",
        "stable",
    )

    def __init__(
        self,
        entries: Sequence[Entry] = (),
        snapshot_index: int = 0,
        snapshot_term: int = 0,
        committed: int = 0,
        applied: int = 0,
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self.entries):
            if entry.index != snapshot_index + 1 + offset:
                raise InvariantViolation("stored entries are not consecutive")
        # Entries up to `stable` are durable in storage; those after it are not yet.
        self.stable = self.last_index
        # Entries up to `handed_off` were handed to the driver to persist (`unstable_entries`),
        # some perhaps not durable yet: a leader persisting later (Ready.may_persist_later).
        self.handed_off = self.stable
        self.committed = max(committed, snapshot_index)
        if self.committed > self.last_index:
            raise InvariantViolation("commit index beyond the stored log")
        # The last index handed to the driver for applying (or restored from a snapshot).
        self.applied = max(applied, snapshot_index)

    # --- queries ------------------------------------------------------------------------
    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """The term at `index`, or None when compacted away or beyond the end. Index 0 is the
        empty prefix every log shares (§5.3), so its term is 0 until it is compacted."""
        if index > self.snapshot_index:
            offset = index - self.snapshot_index - 1
            return self.entries[offset].term if offset < len(self.entries) else None
        if index == self.snapshot_index:
            return self.snapshot_term
        return None

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, low: int, high: int, bytes_max: int) -> list[Entry]:
        """Entries [low, high), cut at `bytes_max` but never empty when the range is not."""
        if low <= self.snapshot_index:
            raise InvariantViolation("slice reaches into the compacted prefix")
        entries = self.entries[low - self.snapshot_index - 1 : high - self.snapshot_index - 1]
        total = 0
        for count, entry in enumerate(entries):
            total += entry_size(entry)
            if total > bytes_max and count > 0:
                return entries[:count]
        return entries

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up to date as ours."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, with that term.

        Used on both sides of fast backtracking: each round trip skips at least one whole
        term of the divergent suffix instead of one entry.
        """
        index = min(index, self.last_index)
        while index > self.snapshot_index:
            entry_term = self.entries[index - self.snapshot_index - 1].term
            if entry_term <= term:
                return index, entry_term
            index -= 1
        return self.snapshot_index, self.snapshot_term

    # --- changes ------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow our last index (leader side)."""
        if entries:
            if entries[0].index != self.last_index + 1:
                raise InvariantViolation(
                    f"appending index {entries[0].index} after {self.last_index}"
                )
            self.entries.extend(entries)

    def merge(self, entries: Sequence[Entry]) -> int | None:
        """Follower side of §5.3: skip entries we already hold, truncate our suffix at the
        first conflict (never a committed entry), and append the rest.

        Returns the first index that changed, or None when the log already held them all.
        """
        for position, entry in enumerate(entries):
            existing = self.term(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                if entry.index <= self.committed:
                    raise InvariantViolation(
                        f"truncating committed entry {entry.index} (committed {self.committed})"
                    )
                del self.entries[entry.index - self.snapshot_index - 1 :]
                self.stable = min(self.stable, entry.index - 1)
                self.handed_off = min(self.handed_off, entry.index - 1)
            self.entries.extend(entries[position:])
            return entry.index
        return None

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index:
                raise InvariantViolation(f"commit {index} beyond the log ({self.last_index})")
            self.committed = index
            return True
        return False

    def unstable_entries(self) -> list[Entry]:
        """The entries not yet handed to the driver to persist; they are handed off now."""
        entries = self.entries[self.handed_off - self.snapshot_index :]
        self.handed_off = self.last_index
        return entries

    def next_committed(self, bytes_max: int) -> list[Entry]:
        """Committed entries not yet handed out for applying, bounded in bytes."""
        if self.committed <= self.applied:
            return []
        return self.slice(self.applied + 1, self.committed + 1, bytes_max)

    def compact(self, index: int, term: int) -> None:
        """Drop entries through `index` (covered by a snapshot the driver took)."""
        if index <= self.snapshot_index:
            return
        if index > self.applied:
            raise InvariantViolation("compacting entries not yet applied")
        if self.term(index) != term:
            raise InvariantViolation("snapshot term does not match the log")
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log with a received snapshot's end point (§7)."""
        self.entries = []
        self.snapshot_index, self.snapshot_term = index, term
        self.committed = self.applied = index
        self.stable = self.handed_off = index
