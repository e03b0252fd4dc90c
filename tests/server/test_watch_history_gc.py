"""The watch history holds up to 100,000 changes on every node. Its objects must stay out of
the cyclic GC's reach: with them tracked, each full collection walked the whole history and
stalled the node 100-150 ms every few seconds under load (p99 at C=64 went from 24 to
110-144 ms once the history was full)."""

from __future__ import annotations

import gc

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.changes import KeyChange
from raftkv.kv.records import KeyRecord
from raftkv.server.watch_history import WatchHistory, history_event


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
