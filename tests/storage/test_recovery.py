"""`recover()`, rule by rule (storage/recovery.py), over the memory twins and the file stores.

Each test writes a state, restarts the stores from what is durable (`stores.reopen()`), and
recovers as a restarting node does. A refusal must leave the WAL exactly as it was: the
operator may still want to look at it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import (
    MemoryHarness,
    SimulatedHarness,
    StoreHarness,
    make_entries,
    snapshot_meta,
)

from raftkv.core.messages import Entry, HardState
from raftkv.errors import Corruption
from raftkv.storage.recovery import recover
from raftkv.storage.snapshot_files import FileSnapshotStore, snapshot_file_name


def write_log(stores: StoreHarness, entries: list[Entry], hard_state: HardState) -> None:
    stores.log.append(entries)
    stores.stable.set_hard_state(hard_state)
    stores.log.sync()
    stores.stable.sync()


def take_snapshot(stores: StoreHarness, index: int, term: int, compact_through: int) -> None:
    """Save a snapshot, then compact the log (leaving entries after `compact_through`), in
    the order the drivers use: the snapshot is durable before the log forgets anything."""
    stores.snapshots.save(snapshot_meta(index, term), b"state at %d" % index)
    compact_term = stores.log.term(compact_through)
    assert compact_term is not None
    stores.log.compact(compact_through, compact_term)
    stores.log.sync()


def damage_snapshot(stores: StoreHarness, index: int, term: int) -> str:
    """Damage the stored snapshot (index, term); returns its location as errors name it."""
    if isinstance(stores, MemoryHarness):
        stores.memory_snapshots.damage(index, term)
    elif isinstance(stores, SimulatedHarness):
        path = f"{stores.snapshot_directory}/{snapshot_file_name(index, term)}"
        size = len(stores.filesystem.read_bytes(path))
        stores.filesystem.flip_bit(path, size // 2, 7)
    else:
        assert isinstance(stores.snapshots, FileSnapshotStore)
        path = Path(stores.snapshots.directory) / snapshot_file_name(index, term)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    (ref,) = [ref for ref in stores.snapshots.stored() if (ref.index, ref.term) == (index, term)]
    return ref.location


def wal_state(stores: StoreHarness) -> tuple[int, int, list[int | None], HardState]:
    log = stores.log
    first, last = log.first_index(), log.last_index()
    terms = [log.term(index) for index in range(first - 1, last + 1)]
    return first, last, terms, stores.stable.hard_state()


# --- rule 1: the newest snapshot, and the log after it ---------------------------------------
def test_a_new_node_recovers_nothing(stores: StoreHarness) -> None:
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert (recovered.hard_state, recovered.entries, recovered.snapshot) == (HardState(), [], None)
    assert recovered.applied_index == 0 and recovered.warnings == []


def test_without_snapshots_the_whole_log_and_the_hard_state(stores: StoreHarness) -> None:
    entries = make_entries(1, 30, term=1)
    write_log(stores, entries, HardState(1, 2, 25))
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.entries == entries
    assert recovered.hard_state == HardState(1, 2, 25)
    assert recovered.snapshot is None and recovered.applied_index == 0
    assert recovered.warnings == []


def test_the_newest_snapshot_and_only_the_entries_after_it(stores: StoreHarness) -> None:
    entries = make_entries(1, 30, term=1) + make_entries(31, 20, term=2)
    write_log(stores, entries, HardState(2, 1, 45))
    take_snapshot(stores, 20, 1, compact_through=15)
    take_snapshot(stores, 40, 2, compact_through=35)  # a few entries kept before it
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.snapshot == (snapshot_meta(40, 2), b"state at 40")
    assert recovered.applied_index == 40
    assert recovered.entries == entries[40:]
    assert recovered.hard_state == HardState(2, 1, 45)
    assert recovered.warnings == []


# --- rule 2: an older snapshot only if the WAL holds everything after it ---------------------
def test_a_damaged_newest_falls_back_when_the_wal_holds_everything_after_the_older(
    stores: StoreHarness,
) -> None:
    entries = make_entries(1, 60, term=1)
    write_log(stores, entries, HardState(1, 1, 60))
    take_snapshot(stores, 20, 1, compact_through=10)
    take_snapshot(stores, 50, 1, compact_through=20)  # trailing entries reach the older one
    location = damage_snapshot(stores, 50, 1)
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.snapshot == (snapshot_meta(20, 1), b"state at 20")
    assert recovered.applied_index == 20
    assert recovered.entries == entries[20:]
    assert recovered.hard_state == HardState(1, 1, 60)
    (warning,) = recovered.warnings
    assert "50/1 is damaged" in warning and location in warning and "20/1" in warning


def test_a_damaged_newest_is_refused_when_the_wal_was_compacted_past_the_older(
    stores: StoreHarness,
) -> None:
    """The defect: falling back to the older snapshot and resetting the WAL to it came back
    with last = commit = 100 after 300 were acknowledged."""
    write_log(stores, make_entries(1, 300, term=2), HardState(2, 1, 300))
    take_snapshot(stores, 100, 2, compact_through=50)
    take_snapshot(stores, 250, 2, compact_through=150)
    location = damage_snapshot(stores, 250, 2)
    stores.reopen()
    before = wal_state(stores)
    with pytest.raises(Corruption) as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == location
    message = str(caught.value)
    assert "entries 101..150" in message and "starts at 151" in message
    assert "damaged snapshot" in message.lower() and "docs/operations.md" in message
    stores.reopen()
    assert wal_state(stores) == before  # nothing was reset


def test_a_fallback_whose_terms_do_not_line_up_is_refused(stores: StoreHarness) -> None:
    # The WAL's entry 20 has term 2; the older snapshot claims (20, 1).
    write_log(stores, make_entries(1, 10, term=1) + make_entries(11, 40, term=2), HardState(2))
    stores.snapshots.save(snapshot_meta(20, 1), b"state at 20")
    take_snapshot(stores, 45, 2, compact_through=5)
    location = damage_snapshot(stores, 45, 2)
    stores.reopen()
    with pytest.raises(Corruption, match="entry 20 has term 2") as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == location


def test_a_fallback_beyond_the_end_of_the_wal_is_refused(stores: StoreHarness) -> None:
    write_log(stores, make_entries(1, 10, term=1), HardState(1, 1, 10))
    stores.snapshots.save(snapshot_meta(20, 1), b"state at 20")
    stores.snapshots.save(snapshot_meta(30, 1), b"state at 30")
    location = damage_snapshot(stores, 30, 1)
    stores.reopen()
    with pytest.raises(Corruption, match="the WAL ends at 10") as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == location


def test_every_snapshot_damaged_is_refused_even_if_the_wal_starts_at_1(
    stores: StoreHarness,
) -> None:
    # The WAL alone would do, but damage to every snapshot points at the disk: refused.
    write_log(stores, make_entries(1, 40, term=1), HardState(1, 1, 40))
    stores.snapshots.save(snapshot_meta(10, 1), b"state at 10")
    stores.snapshots.save(snapshot_meta(30, 1), b"state at 30")
    older = damage_snapshot(stores, 10, 1)
    newest = damage_snapshot(stores, 30, 1)
    stores.reopen()
    before = wal_state(stores)
    with pytest.raises(Corruption, match="all 2 snapshot files are damaged") as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == newest
    assert f"{older} is damaged too" in str(caught.value)
    stores.reopen()
    assert wal_state(stores) == before


def test_every_snapshot_damaged_and_a_compacted_wal_is_refused_naming_the_newest(
    stores: StoreHarness,
) -> None:
    write_log(stores, make_entries(1, 40, term=1), HardState(1, 1, 40))
    take_snapshot(stores, 10, 1, compact_through=5)
    take_snapshot(stores, 30, 1, compact_through=10)
    damage_snapshot(stores, 10, 1)
    newest = damage_snapshot(stores, 30, 1)
    stores.reopen()
    with pytest.raises(Corruption, match="no readable snapshot") as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == newest


# --- rule 3: the WAL must continue the snapshot; reset only in the install crash window -------
def test_the_wal_is_reset_when_it_ends_before_an_installed_snapshot(stores: StoreHarness) -> None:
    # A follower far behind received snapshot (50, 3) and crashed before resetting its WAL.
    write_log(stores, make_entries(1, 10, term=1), HardState(3, 2, 8))
    stores.snapshots.save(snapshot_meta(50, 3), b"state at 50")
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.snapshot == (snapshot_meta(50, 3), b"state at 50")
    assert recovered.entries == [] and recovered.applied_index == 50
    assert recovered.hard_state == HardState(3, 2, 8)
    (warning,) = recovered.warnings
    assert "does not continue snapshot 50/3" in warning
    stores.reopen()  # the reset is durable
    assert (stores.log.first_index(), stores.log.last_index(), stores.log.term(50)) == (51, 50, 3)


def test_the_wal_is_reset_when_it_conflicts_above_its_commit(stores: StoreHarness) -> None:
    # Entries 11..20 of term 1 were never committed; the leader's snapshot (15, 2) has them.
    write_log(stores, make_entries(1, 20, term=1), HardState(2, None, 10))
    stores.snapshots.save(snapshot_meta(15, 2), b"state at 15")
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.entries == [] and recovered.applied_index == 15
    assert "does not continue snapshot 15/2" in recovered.warnings[0]
    stores.reopen()
    assert (stores.log.first_index(), stores.log.last_index()) == (16, 15)


def test_a_snapshot_conflicting_with_a_committed_entry_is_refused(stores: StoreHarness) -> None:
    write_log(stores, make_entries(1, 20, term=1), HardState(2, None, 18))
    stores.snapshots.save(snapshot_meta(15, 2), b"state at 15")
    stores.reopen()
    before = wal_state(stores)
    with pytest.raises(Corruption, match="entry 15 has term 1 and is committed") as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == stores.snapshots.stored()[0].location
    stores.reopen()
    assert wal_state(stores) == before


def test_a_wal_compacted_past_the_newest_snapshot_is_refused(stores: StoreHarness) -> None:
    write_log(stores, make_entries(1, 40, term=1), HardState(1, 1, 40))
    take_snapshot(stores, 10, 1, compact_through=5)
    stores.log.compact(20, 1)  # as if a newer snapshot had vanished
    stores.log.sync()
    stores.reopen()
    with pytest.raises(Corruption, match=r"entries 11\.\.20 are missing") as caught:
        recover(stores.log, stores.stable, stores.snapshots)
    assert caught.value.path == stores.snapshots.location


def test_a_compacted_wal_without_any_snapshot_is_refused(stores: StoreHarness) -> None:
    write_log(stores, make_entries(1, 40, term=1), HardState(1, 1, 40))
    stores.log.compact(20, 1)
    stores.log.sync()
    stores.reopen()
    with pytest.raises(Corruption, match=r"entries 1\.\.20 are missing"):
        recover(stores.log, stores.stable, stores.snapshots)


# --- rule 4: the commit index is clamped to the last stored entry ---------------------------
def test_the_commit_index_is_clamped_to_the_last_stored_entry(stores: StoreHarness) -> None:
    write_log(stores, make_entries(1, 10, term=1), HardState(1, 1, 15))
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.hard_state == HardState(1, 1, 10)
    assert "commit index 15" in recovered.warnings[0]


def test_the_clamp_counts_the_snapshot(stores: StoreHarness) -> None:
    write_log(stores, make_entries(1, 30, term=1), HardState(1, 1, 40))
    take_snapshot(stores, 30, 1, compact_through=30)
    stores.reopen()
    recovered = recover(stores.log, stores.stable, stores.snapshots)
    assert recovered.entries == [] and recovered.hard_state == HardState(1, 1, 30)


# --- the snapshot files' own leftovers ---------------------------------------------------------
def test_an_unfinished_snapshot_file_counts_for_nothing(tmp_path: Path) -> None:
    """A `.tmp` file is a save that never reached its rename, so the log was never compacted
    on its account: it is removed on open, neither used nor a reason to refuse."""
    from storage_helpers import FileHarness

    stores = FileHarness(tmp_path, 64 << 20, 8192)
    try:
        entries = make_entries(1, 40, term=1)
        write_log(stores, entries, HardState(1, 1, 40))
        take_snapshot(stores, 20, 1, compact_through=15)
        leftover = tmp_path / "snapshots" / (snapshot_file_name(35, 1) + ".tmp")
        leftover.write_bytes(b"half a snapshot")
        stores.reopen()
        assert not leftover.exists()
        recovered = recover(stores.log, stores.stable, stores.snapshots)
        assert recovered.snapshot == (snapshot_meta(20, 1), b"state at 20")
        assert recovered.entries == entries[20:] and recovered.warnings == []
    finally:
        stores.close()
