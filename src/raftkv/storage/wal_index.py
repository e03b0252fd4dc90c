"""Where each live log entry is on disk, and its term, kept in compact arrays in memory.

Recovery rebuilds it by replaying the records and the live store updates it with the very
same methods, so the state after a reopen is the state before it by construction.
Entry `snapshot_index + 1 + i` is at position `i` of each array; 24 bytes per entry.
"""

from __future__ import annotations

from array import array

# Segment number 0 marks an entry known to exist but whose segment was deleted: recovery
# meets those only before a COMPACT or RESET record that discards them.
UNKNOWN_SEGMENT = 0


class LogIndex:
    __slots__ = ("lengths", "offsets", "segments", "snapshot_index", "snapshot_term", "terms")

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.terms = array("q")
        self.segments = array("I")
        self.offsets = array("q")
        self.lengths = array("I")

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.terms)

    def term(self, index: int) -> int | None:
        position = index - self.snapshot_index - 1
        if position == -1:
            return self.snapshot_term
        if 0 <= position < len(self.terms):
            return self.terms[position]
        return None

    def add_unknown(self, through_index: int) -> None:
        """Entries up to `through_index` exist in segments no longer on disk."""
        count = through_index - self.last_index
        self.terms.extend([0] * count)
        self.segments.extend([UNKNOWN_SEGMENT] * count)
        self.offsets.extend([0] * count)
        self.lengths.extend([0] * count)

    def truncate_from(self, index: int) -> None:
        """Discard the entries at `index` and after."""
        position = index - self.snapshot_index - 1
        del self.terms[position:]
        del self.segments[position:]
        del self.offsets[position:]
        del self.lengths[position:]

    def compact(self, through_index: int, through_term: int) -> None:
        """Discard the entries up to `through_index`; the log may become empty."""
        count = min(through_index - self.snapshot_index, len(self.terms))
        del self.terms[:count]
        del self.segments[:count]
        del self.offsets[:count]
        del self.lengths[:count]
        self.snapshot_index, self.snapshot_term = through_index, through_term

    def reset(self, index: int, term: int) -> None:
        self.terms = array("q")
        self.segments = array("I")
        self.offsets = array("q")
        self.lengths = array("I")
        self.snapshot_index, self.snapshot_term = index, term

    def first_segment(self) -> int | None:
        """The segment of the first live entry (segments only grow along the log)."""
        return self.segments[0] if self.segments else None
