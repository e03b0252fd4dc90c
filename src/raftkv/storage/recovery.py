"""Start-up recovery: what a node restarts from, decided in one place for every driver.

The server (`server/runtime.py`), the simulator (`sim/driver.py`) and the hand-driven test
cluster (`tests/core/harness.py`) all call `recover()` and build their `RaftNode` from what it
returns; restoring the state machine from the snapshot bytes stays with the caller.

The rules, and why (docs/storage.md, "Recovery on start"):

1. **The newest snapshot, when it reads back valid.** Snapshots are only ever of committed
   state (taken from applied entries, or installed from a leader, §7), and the log is
   compacted only after the snapshot covering the compacted prefix is durable.
2. **An older snapshot stands in for a damaged newer one only if the log still holds every
   entry after it**: the WAL's compaction point is at or before the older snapshot's index
   and the WAL's term there is the snapshot's. Otherwise entries between the two are in
   neither the WAL nor a readable snapshot; starting anyway would silently forget entries
   this node stored and acknowledged (a leader may have counted them towards a commit, and
   a node that forgot them can elect a leader without them, §5.4). That is `Corruption`
   naming the damaged file: the node refuses to start (exit code 4). With every snapshot
   damaged the node refuses too, even if its WAL still starts at index 1: damage to every
   snapshot file points at the disk itself, and an operator should look at it (this was
   the contract before these rules, and stays it).
3. **The WAL must continue the chosen snapshot.** If it does not, one case is legitimate: a
   crash between durably saving a snapshot received from the leader and resetting the WAL
   to it. The follower installs a snapshot only when its log does not hold the snapshot's
   last entry and its commit index is below it (core/follower.py), so the WAL then either
   ends before the snapshot or holds a different term at its index, and nothing the WAL
   holds from that index on was committed (Log Matching, §5.3: a committed entry there
   would carry the snapshot's term). Dropping such entries is safe and the WAL is reset to
   the snapshot. Anything else is `Corruption`: a WAL compacted past the snapshot (entries
   missing), a fallback snapshot (rule 2), or a conflict at an index the WAL itself records
   as committed.
4. **The commit index is clamped to the last stored index.** One sync writes a Ready's
   entries and its hard state; a crash mid-write can keep the hard state and cut entries
   after it (the torn tail). Nothing of a write that did not finish was acknowledged, and
   the commit index is volatile state in Raft (Figure 2): a lower one is relearnt from the
   leader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.core.messages import Entry, HardState
from raftkv.core.ready import SnapshotMeta
from raftkv.errors import Corruption
from raftkv.storage.base import LogStore, SnapshotRef, SnapshotStore, StableStore

OPERATOR_ADVICE = "rebuild this node from its peers (docs/operations.md, 'A damaged snapshot')"


@dataclass(frozen=True)
class Recovered:
    """What a node restarts from. `entries` follow the snapshot (or start at index 1)."""

    hard_state: HardState
    entries: list[Entry]
    snapshot: tuple[SnapshotMeta, bytes] | None
    # The index the state machine reflects once the caller restored `snapshot` (0 without).
    applied_index: int
    # What recovery repaired or passed over, one sentence each, for the caller to log.
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Damaged:
    index: int
    term: int
    error: Corruption


def recover(
    log_store: LogStore, stable_store: StableStore, snapshot_store: SnapshotStore
) -> Recovered:
    """Choose the snapshot, check the WAL continues it (resetting the WAL in the one safe
    case), and return the state to build the node from. Raises `Corruption` when starting
    would lose entries this node stored (rules in the module docstring)."""
    warnings: list[str] = []
    found, damaged = _newest_readable(snapshot_store)
    snapshot = found[1] if found else None
    index, term = (snapshot[0].index, snapshot[0].term) if snapshot else (0, 0)
    if damaged:
        _check_fallback(log_store, snapshot[0] if snapshot else None, damaged)
        newest = damaged[0]
        warnings.append(
            f"snapshot {newest.index}/{newest.term} is damaged ({newest.error}); "
            f"using snapshot {index}/{term}: the WAL holds every entry after it"
        )
    elif log_store.term(index) != term:
        warnings.append(_reset_to_snapshot(log_store, stable_store, snapshot_store, found))
    entries = log_store.entries(index + 1, log_store.last_index() + 1)
    hard_state = stable_store.hard_state()
    last_index = entries[-1].index if entries else index
    if hard_state.commit > last_index:
        warnings.append(
            f"the hard state's commit index {hard_state.commit} is beyond the last stored "
            f"entry {last_index} (a write cut short by a crash); lowered to {last_index}"
        )
        hard_state = HardState(hard_state.term, hard_state.voted_for, last_index)
    return Recovered(hard_state, entries, snapshot, index, warnings)


_Found = tuple[SnapshotRef, tuple[SnapshotMeta, bytes]]


def _newest_readable(snapshot_store: SnapshotStore) -> tuple[_Found | None, list[_Damaged]]:
    """The newest snapshot that reads back valid, and the damaged ones newer than it."""
    damaged: list[_Damaged] = []
    for ref in snapshot_store.stored():
        try:
            return (ref, snapshot_store.load(ref)), damaged
        except Corruption as error:
            damaged.append(_Damaged(ref.index, ref.term, error))
    return None, damaged


def _check_fallback(
    log_store: LogStore, older_meta: SnapshotMeta | None, damaged: list[_Damaged]
) -> None:
    """Rule 2: the older snapshot may replace the damaged ones only if the WAL holds every
    entry after it: compacted no further than its index, and agreeing on its term. Without
    any readable snapshot: refused."""
    newest = damaged[0]
    also = "".join(f"; {d.error.path} is damaged too" for d in damaged[1:])
    reason = _reason(newest.error)
    if older_meta is None:
        raise Corruption(
            f"no readable snapshot: all {len(damaged)} snapshot files are damaged; "
            f"{OPERATOR_ADVICE}{also}. {reason[:1].upper()}{reason[1:]}",
            newest.error.path,
            newest.error.offset,
        )
    index, term = older_meta.index, older_meta.term
    first = log_store.first_index()
    wal_term = log_store.term(index)
    if wal_term == term:
        return
    older = f"snapshot {index}/{term}"
    if index < first - 1:
        why = (
            f"entries {index + 1}..{first - 1} after {older} are in no readable snapshot and "
            f"no longer in the WAL (it starts at {first})"
        )
    elif wal_term is None:
        why = f"the WAL ends at {log_store.last_index()}, before {older}"
    else:
        why = f"the WAL's entry {index} has term {wal_term}, not the term of {older}"
    raise Corruption(
        f"cannot start from {older} in place of the newest snapshot "
        f"{newest.index}/{newest.term}: {why}, so this node would lose entries it stored; "
        f"{OPERATOR_ADVICE}{also}. {reason[:1].upper()}{reason[1:]}",
        newest.error.path,
        newest.error.offset,
    )


def _reset_to_snapshot(
    log_store: LogStore,
    stable_store: StableStore,
    snapshot_store: SnapshotStore,
    found: _Found | None,
) -> str:
    """Rule 3: the WAL does not continue the newest snapshot. Reset it when that is the
    crash window of an installed snapshot; refuse otherwise. Returns the warning."""
    first, last = log_store.first_index(), log_store.last_index()
    if found is None:
        raise Corruption(
            f"log entries 1..{first - 1} are missing: the WAL is compacted through "
            f"{first - 1} but there is no snapshot",
            snapshot_store.location,
        )
    ref, (meta, _data) = found
    if meta.index < first - 1:
        raise Corruption(
            f"log entries {meta.index + 1}..{first - 1} are missing: the WAL is compacted "
            f"through {first - 1} but the newest snapshot is {meta.index}/{meta.term}",
            snapshot_store.location,
        )
    # The WAL's compaction point is committed, whatever the hard state says.
    wal_committed = max(stable_store.hard_state().commit, first - 1)
    wal_term = log_store.term(meta.index)
    if wal_term is not None and meta.index <= wal_committed:
        raise Corruption(
            f"snapshot {meta.index}/{meta.term} contradicts the WAL, whose entry "
            f"{meta.index} has term {wal_term} and is committed (commit {wal_committed})",
            ref.location,
        )
    log_store.reset(meta.index, meta.term)
    log_store.sync()
    held = f"entries {first}..{last}" if last >= first else "no entries"
    return (
        f"the WAL ({held}) does not continue snapshot {meta.index}/{meta.term}: a crash "
        "came between saving a snapshot received from the leader and resetting the WAL; "
        "what the WAL held is covered by the snapshot or was never committed: reset to it"
    )


def _reason(error: Corruption) -> str:
    """The message of a `Corruption` without the ' in <path>' its constructor appended."""
    text = str(error)
    if error.path is not None:
        text = text.split(f" in {error.path}", 1)[0]
    return text
