"""The watch history holds up to 100,000 changes on every node. Its objects must stay out of
the cyclic GC's reach: with them tracked, each full collection walked the whole history and
stalled the node 100-150 ms every few seconds under load (p99 at C=64 went from 24 to
110-144 ms once the history was full)."""

from __future__ import annotations

import gc

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.changes import KeyChange
from raftkv.kv.records import KeyRecord
from raftkv.server.watch_history import (
    HistoryEvent,
    HistoryLimits,
    WatchHistory,
    change_size,
    history_event,
)


def test_changes_and_history_events_are_not_tracked_by_the_gc() -> None:
    change = KeyChange(7, "k", KeyRecord("new", 3, 7, 2), KeyRecord("old", 3, 5, 1))
    event = history_event(change)
    assert not gc.is_tracked(change)
    assert not gc.is_tracked(event)
    event.line(prev=True)
    event.line(prev=False)  # the cached lines are bytes: still nothing to track
    assert not gc.is_tracked(event)


def test_a_full_history_adds_no_objects_for_the_gc_to_walk() -> None:
    history = WatchHistory()
    store = KVStore(observer=history)
    # One change first: what the first apply creates once (caches, tables) is not per change.
    store.apply(1, encode_command(Command(op="put", key="key-0", value="v" * 16)))
    gc.collect()
    before = len(gc.get_objects())
    for index in range(2, 2002):
        command = Command(op="put", key=f"key-{index % 500}", value="v" * 16)
        store.apply(index, encode_command(command))
    assert history.held[0] == 2001
    # The history's three lists grew, not the number of tracked objects: 2,000 changes made
    # 4,000 tracked objects before, and one per change would be 2,000. The bound leaves room
    # for what other threads of a loaded test process allocate meanwhile (241 objects once,
    # in a full `make test`).
    assert len(gc.get_objects()) - before < 1000
    assert history.event(history.first).line(prev=False).startswith(b'{"type":"put"')


def test_changes_become_events_only_when_read_and_trimming_counts_their_bytes() -> None:
    """A change is held as the store's KeyChange until a watcher reads it (no event made per
    write); trimming, whichever form each change is in, drops whole indexes and keeps the byte
    count equal to what the held changes cost."""
    history = WatchHistory(HistoryLimits(events_max=10, bytes_max=1 << 30))
    for index in range(1, 7):
        for key_number in range(3):  # three changes per index, as a transaction makes
            record = KeyRecord("v" * index, 1, index, 1)
            history.changed(KeyChange(index, f"k{key_number}", record, None))
        history.applied_through(index)
        # Read some changes (made events, cached in place), not others.
        if index % 2 == 1:
            read = history.events(history.first, history.end)
            assert all(isinstance(event, HistoryEvent) for event in read)
    events, held_bytes = history.held
    # Over 10 changes, trimmed to at most 9 in whole indexes of 3: 9 or fewer, a multiple of 3.
    assert events <= 10 and events % 3 == 0
    held = history.events(history.first, history.end)
    assert held_bytes == sum(change_size(event.change) for event in held)
    assert history.oldest_index == held[0].index - 1
    assert history.bytes_behind(history.first) == held_bytes
    assert history.position_after(history.oldest_index) == history.first
    assert history.position_after(held[-1].index) == history.end
    assert held[0].line(prev=False).startswith(b'{"type":"put"')
