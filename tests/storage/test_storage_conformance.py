"""One suite over every implementation of the storage seams: the memory twins and the files.

`stores.reopen()` restarts from durable state: `crash()` for the twins, close and open
again for the files. After a sync everything must be there; before it, nothing need be.
"""

from __future__ import annotations

from storage_helpers import StoreHarness, make_entries, snapshot_meta

from raftkv.core.messages import Entry, HardState
from raftkv.storage.base import LogStore


def log_state(log: LogStore) -> tuple[int, int, list[Entry], list[int | None]]:
    first, last = log.first_index(), log.last_index()
    terms = [log.term(index) for index in range(first - 1, last + 2)]
    return first, last, log.entries(first, last + 1), terms


def test_a_new_store_is_empty(stores: StoreHarness) -> None:
    assert stores.log.first_index() == 1
    assert stores.log.last_index() == 0
    assert stores.log.term(0) == 0
    assert stores.log.term(1) is None
    assert stores.log.entries(1, 1) == []
    assert stores.stable.hard_state() == HardState()
    assert stores.snapshots.latest() is None


def test_append_then_read_any_range(stores: StoreHarness) -> None:
    entries = make_entries(1, 30, term=1) + make_entries(31, 20, term=2)
    stores.log.append(entries[:10])
    stores.log.append(entries[10:])
    stores.log.sync()
    assert stores.log.last_index() == 50
    for low, high in [(1, 51), (1, 2), (5, 9), (29, 33), (50, 51), (17, 17), (40, 51)]:
        assert stores.log.entries(low, high) == entries[low - 1 : high - 1]


def test_term_lookup_including_the_compaction_point(stores: StoreHarness) -> None:
    stores.log.append(make_entries(1, 5, term=1) + make_entries(6, 5, term=3))
    assert [stores.log.term(index) for index in range(0, 12)] == [0] + [1] * 5 + [3] * 5 + [None]
    stores.log.compact(7, 3)
    assert stores.log.first_index() == 8
    assert stores.log.term(7) == 3  # first_index() - 1: the compaction point
    assert stores.log.term(6) is None
    assert stores.log.term(10) == 3


def test_append_at_an_earlier_index_replaces_the_suffix(stores: StoreHarness) -> None:
    stores.log.append(make_entries(1, 20, term=1))
    stores.log.sync()
    replacement = make_entries(12, 3, term=2, tag="new")
    stores.log.append(replacement)
    assert stores.log.last_index() == 14
    assert stores.log.entries(12, 15) == replacement
    assert stores.log.entries(1, 12) == make_entries(1, 11, term=1)
    stores.log.sync()
    stores.reopen()
    assert stores.log.entries(1, 15) == make_entries(1, 11, term=1) + replacement


def test_append_replacing_everything_after_the_compaction_point(stores: StoreHarness) -> None:
    stores.log.append(make_entries(1, 10, term=1))
    stores.log.compact(4, 1)
    stores.log.append(make_entries(5, 2, term=2, tag="x"))
    stores.log.sync()
    stores.reopen()
    assert log_state(stores.log) == (5, 6, make_entries(5, 2, term=2, tag="x"), [1, 2, 2, None])


def test_compact_discards_the_prefix(stores: StoreHarness) -> None:
    entries = make_entries(1, 40, term=1)
    stores.log.append(entries)
    stores.log.compact(25, 1)
    stores.log.compact(10, 1)  # behind the compaction point: nothing to do
    stores.log.sync()
    assert stores.log.first_index() == 26
    assert stores.log.entries(26, 41) == entries[25:]
    stores.reopen()
    assert log_state(stores.log) == (26, 40, entries[25:], [1] * 16 + [None])


def test_compact_beyond_the_last_index_empties_the_log(stores: StoreHarness) -> None:
    stores.log.append(make_entries(1, 5, term=1))
    stores.log.compact(9, 2)
    stores.log.sync()
    stores.reopen()
    assert log_state(stores.log) == (10, 9, [], [2, None])
    stores.log.append(make_entries(10, 2, term=2))
    assert stores.log.entries(10, 12) == make_entries(10, 2, term=2)


def test_reset_discards_everything(stores: StoreHarness) -> None:
    stores.log.append(make_entries(1, 30, term=1))
    stores.log.sync()
    stores.log.reset(100, 7)
    assert log_state(stores.log) == (101, 100, [], [7, None])
    stores.log.append(make_entries(101, 3, term=8))
    stores.log.sync()
    stores.reopen()
    assert log_state(stores.log) == (101, 103, make_entries(101, 3, term=8), [7, 8, 8, 8, None])


def test_hard_state_round_trip(stores: StoreHarness) -> None:
    for hard_state in [HardState(1, None, 0), HardState(2, 3, 0), HardState(2, 3, 17)]:
        stores.stable.set_hard_state(hard_state)
        stores.stable.sync()
        stores.reopen()
        assert stores.stable.hard_state() == hard_state


def test_everything_synced_survives_a_reopen(stores: StoreHarness) -> None:
    stores.stable.set_hard_state(HardState(1, 1, 0))
    stores.log.append(make_entries(1, 60, term=1))
    stores.log.append(make_entries(50, 30, term=2, tag="b"))
    stores.log.compact(20, 1)
    stores.stable.set_hard_state(HardState(2, 2, 45))
    stores.log.sync()
    stores.stable.sync()
    before = log_state(stores.log)
    stores.reopen()
    assert log_state(stores.log) == before
    assert stores.stable.hard_state() == HardState(2, 2, 45)


def test_unsynced_writes_are_lost_on_reopen(stores: StoreHarness) -> None:
    stores.stable.set_hard_state(HardState(1, 1, 3))
    stores.log.append(make_entries(1, 10, term=1))
    stores.log.sync()
    stores.stable.sync()
    durable = log_state(stores.log)
    stores.log.append(make_entries(8, 10, term=2))
    stores.log.compact(5, 1)
    stores.stable.set_hard_state(HardState(2, None, 9))
    stores.reopen()
    assert log_state(stores.log) == durable
    assert stores.stable.hard_state() == HardState(1, 1, 3)


def test_snapshots_newest_wins_and_survives_reopen(stores: StoreHarness) -> None:
    stores.snapshots.save(snapshot_meta(10, 1), b"state at 10")
    stores.snapshots.save(snapshot_meta(20, 2), b"state at 20")
    assert stores.snapshots.latest() == (snapshot_meta(20, 2), b"state at 20")
    stores.reopen()
    assert stores.snapshots.latest() == (snapshot_meta(20, 2), b"state at 20")
