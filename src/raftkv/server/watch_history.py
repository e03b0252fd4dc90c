"""A node's recent key changes, in apply order, for watches (SPEC §6, "Watches").

Fed by the store's change observer (kv/changes.py): every replica applies the same log, so
every node's history holds the same changes in the same order, and a watcher can resume on
any node that still holds the index it left off at. Bounded: the oldest whole indexes are
dropped past a cap on changes or bytes, and a snapshot that replaces the state (at start-up
or installed from the leader) empties it, since the changes before it were never seen here.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import msgspec

from raftkv.kv.changes import KeyChange

_encode = msgspec.json.Encoder().encode
# What a change costs besides its key and values (the objects, the cached lines' framing).
CHANGE_OVERHEAD_BYTES = 200


HISTORY_EVENTS_MAX_DEFAULT = 100_000


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    events_max: int = HISTORY_EVENTS_MAX_DEFAULT
    bytes_max: int = 64 << 20


class HistoryEvent(msgspec.Struct, gc=False):
    """One key change as watchers are sent it: its NDJSON line, encoded once for all the
    watchers of its key (with and without `prev_value`). The history holds a change as the
    store's `KeyChange` until a watcher first reads it (`WatchHistory.events`), which puts
    this in its place: a node nobody watches makes none (it was ~0.55 µs of every write on
    every node, session 49).

    Not tracked by the cyclic GC (it refers to no container, and nothing refers back): the
    history holds up to 100,000 events, and a full collection walking them and their changes
    took 100-150 ms on the 2-core VM, a stall of the whole node every few seconds under load
    once the history was full."""

    change: KeyChange
    index: int
    key: str
    line_plain: bytes | None = None
    line_with_prev: bytes | None = None

    def line(self, prev: bool) -> bytes:
        if prev:
            if self.line_with_prev is None:
                self.line_with_prev = event_line(self.change, prev=True)
            return self.line_with_prev
        if self.line_plain is None:
            self.line_plain = event_line(self.change, prev=False)
        return self.line_plain


def history_event(change: KeyChange) -> HistoryEvent:
    """The event watchers are sent for `change`."""
    return HistoryEvent(change, change.index, change.key)


def change_size(change: KeyChange) -> int:
    """What `change` costs the history's byte cap."""
    record, prev = change.record, change.prev
    return (
        CHANGE_OVERHEAD_BYTES
        + 2 * len(change.key)
        + (len(record.value) if record is not None else 0)
        + (len(prev.value) if prev is not None else 0)
    )


def event_line(change: KeyChange, *, prev: bool) -> bytes:
    """The NDJSON line of a change: a put with the key's new revisions, or a delete at the
    deleting index; `prev_value` (the value before, when there was one) if asked for."""
    record = change.record
    event: dict[str, object]
    if record is None:
        event = {"type": "delete", "key": change.key, "mod_index": change.index}
    else:
        event = {
            "type": "put",
            "key": change.key,
            "value": record.value,
            "mod_index": record.mod_index,
            "create_index": record.create_index,
            "version": record.version,
        }
    if prev and change.prev is not None:
        event["prev_value"] = change.prev.value
    return _encode(event) + b"\n"


class WatchHistory:
    """The changes applied since `oldest_index` (exclusive): every change of an index after
    it is here. Positions are sequence numbers counted since the node started, so a watcher's
    place survives the trimming of older changes (and is seen to be lost when its own
    changes are trimmed)."""

    def __init__(self, limits: HistoryLimits | None = None, oldest_index: int = 0) -> None:
        self.limits = limits or HistoryLimits()
        # A change held is its `KeyChange` until a watcher first reads it, then its
        # `HistoryEvent` (`events`); both have the `index` bisection and trimming read.
        self._events: list[KeyChange | HistoryEvent] = []
        self._first = 0  # the position of self._events[0]
        self._bytes = 0
        # Changes of indexes after this one are all here.
        self.oldest_index = oldest_index
        # The highest index applied (told by the runtime after each batch of entries).
        self.applied_index = oldest_index
        # Changes counted since the last `restored`, for the cut-off of a slow watcher:
        # bytes of changes between a watcher's place and the end.
        self._bytes_before: list[int] = []  # cumulative size before each held event
        self._bytes_total = 0

    # --- fed by the store (ChangeObserver) -----------------------------------------------
    def changed(self, change: KeyChange) -> None:
        size = change_size(change)
        self._events.append(change)
        self._bytes_before.append(self._bytes_total)
        self._bytes_total += size
        self._bytes += size

    def restored(self, index: int) -> None:
        """The state was replaced by a snapshot's at `index`: what came before is not here.
        Every place in the old history is lost (positions go on counting)."""
        self._first += len(self._events)
        self._events.clear()
        self._bytes_before.clear()
        self._bytes = 0
        self.oldest_index = index
        self.applied_index = index

    # --- told by the runtime ---------------------------------------------------------------
    def applied_through(self, index: int) -> None:
        self.applied_index = index
        limits = self.limits
        if len(self._events) > limits.events_max or self._bytes > limits.bytes_max:
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest whole indexes until within nine tenths of each cap (trimming
        copies the list: done in chunks, not per change)."""
        limits = self.limits
        events = self._events
        keep_events, keep_bytes = limits.events_max * 9 // 10, limits.bytes_max * 9 // 10
        sizes = self._size_of
        drop, dropped_bytes = 0, 0
        while drop < len(events) and (
            len(events) - drop > keep_events or self._bytes - dropped_bytes > keep_bytes
        ):
            dropped_bytes += sizes(drop)
            drop += 1
        if drop == 0:
            return
        # Whole indexes only: `oldest_index` promises every change after it.
        last_dropped = events[drop - 1].index
        while drop < len(events) and events[drop].index == last_dropped:
            dropped_bytes += sizes(drop)
            drop += 1
        del events[:drop]
        del self._bytes_before[:drop]
        self._first += drop
        self._bytes -= dropped_bytes
        self.oldest_index = max(self.oldest_index, last_dropped)

    def _size_of(self, offset: int) -> int:
        """The size of the change held at `offset` (as the byte cap counted it)."""
        after = self._bytes_before
        end = after[offset + 1] if offset + 1 < len(after) else self._bytes_total
        return end - after[offset]

    # --- read by watchers ------------------------------------------------------------------
    @property
    def end(self) -> int:
        """The position after the newest change."""
        return self._first + len(self._events)

    @property
    def first(self) -> int:
        """The position of the oldest change held; a place before it is lost."""
        return self._first

    def position_after(self, index: int) -> int:
        """The position of the first change of an index after `index` (held: `index` is at
        least `oldest_index`)."""
        return self._first + bisect.bisect_right(self._events, index, key=_index_of)

    def event(self, position: int) -> HistoryEvent:
        return self.events(position, position + 1)[0]

    def events(self, start: int, stop: int) -> list[HistoryEvent]:
        """The events from `start` to `stop`, each change made an event the first time."""
        held = self._events
        first = self._first
        events: list[HistoryEvent] = []
        for offset in range(start - first, stop - first):
            item = held[offset]
            if isinstance(item, KeyChange):
                item = history_event(item)
                held[offset] = item
            events.append(item)
        return events

    def bytes_behind(self, position: int) -> int:
        """Bytes of changes from `position` to the end: how far a watcher there lags."""
        offset = position - self._first
        if offset >= len(self._events):
            return 0
        return self._bytes_total - self._bytes_before[max(0, offset)]

    @property
    def held(self) -> tuple[int, int]:
        """Changes and bytes held (for metrics and tests)."""
        return len(self._events), self._bytes


def _index_of(item: KeyChange | HistoryEvent) -> int:
    return item.index
