"""The newest log entries, decoded, bounded by count and data bytes.

A leader reads back the entries it has just appended to send them to its followers; this
cache serves those reads without touching the files. It always covers a tail of the log:
entries `first_index .. end - 1`, where `end` is the log's last index + 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.core.messages import Entry

# Once over a limit, trim down to this fraction of it, so that trimming is rare.
CACHE_TRIM_FRACTION = 0.75


class TailCache:
    __slots__ = ("_bytes_max", "_entries_max", "data_bytes", "entries", "first_index")

    def __init__(self, entries_max: int, bytes_max: int, next_index: int) -> None:
        self._entries_max = entries_max
        self._bytes_max = bytes_max
        self.entries: list[Entry] = []
        self.first_index = next_index
        self.data_bytes = 0

    @property
    def end(self) -> int:
        return self.first_index + len(self.entries)

    def reset(self, next_index: int) -> None:
        """Empty the cache; the log's next entry will be `next_index`."""
        self.entries = []
        self.first_index = next_index
        self.data_bytes = 0

    def append(self, entries: Sequence[Entry], data_bytes: int) -> None:
        """Add entries that continue the log at `end`; `data_bytes` is their data's size."""
        self.entries.extend(entries)
        self.data_bytes += data_bytes
        if len(self.entries) > self._entries_max or self.data_bytes > self._bytes_max:
            self._trim()

    def truncate_from(self, index: int) -> None:
        """Forget the entries at `index` and after (the log's suffix is being replaced)."""
        if index <= self.first_index:
            self.reset(index)
            return
        keep = index - self.first_index
        self.data_bytes -= sum(len(entry.data) for entry in self.entries[keep:])
        del self.entries[keep:]

    def drop_through(self, index: int) -> None:
        """Forget the entries up to `index` (compacted away)."""
        if index >= self.end - 1:
            self.reset(max(index + 1, self.end))
            return
        count = max(index + 1 - self.first_index, 0)
        self.data_bytes -= sum(len(entry.data) for entry in self.entries[:count])
        del self.entries[:count]
        self.first_index += count

    def get(self, low: int, high: int) -> list[Entry]:
        """Entries [low, high); the caller keeps `first_index <= low <= high <= end`."""
        return self.entries[low - self.first_index : high - self.first_index]

    def _trim(self) -> None:
        entries_goal = int(self._entries_max * CACHE_TRIM_FRACTION)
        bytes_goal = int(self._bytes_max * CACHE_TRIM_FRACTION)
        entries = self.entries
        count = max(len(entries) - entries_goal, 0)
        remaining_bytes = self.data_bytes - sum(len(entry.data) for entry in entries[:count])
        while count < len(entries) and remaining_bytes > bytes_goal:
            remaining_bytes -= len(entries[count].data)
            count += 1
        del entries[:count]
        self.first_index += count
        self.data_bytes = remaining_bytes
