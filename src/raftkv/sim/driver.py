"""One simulated node: a RaftNode, its in-memory stores and KV state machine, and the driver
that carries out each Ready exactly as `raftkv.core.ready.Ready` prescribes.

A crash can be armed to strike inside the Ready, between its steps: after `messages` left but
before anything was persisted (the leader's disk write overlaps replication, thesis §10.2.1),
or after the save but before `messages_after_persist` left.
"""

from __future__ import annotations

import random
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr

from raftkv.core.membership import EMPTY, Membership
from raftkv.core.messages import Entry, EntryKind, HardState, TimeoutNow
from raftkv.core.node import RaftNode
from raftkv.core.ready import ReadState, Ready, SnapshotMeta
from raftkv.kv.store import KVStore
from raftkv.sim.invariants import LogView
from raftkv.sim.transcript import describe_entry
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.storage.recovery import recover

if TYPE_CHECKING:
    from raftkv.sim.cluster import Simulation

# Readies one node may produce in a row before the driver calls it a livelock: each Ready
# either empties the node's queues or is caused by the previous one's advance().
READY_ROUNDS_MAX: Final = 64


class CrashPoint(Enum):
    NOW = "between steps"
    AFTER_SEND = "after sending messages, before persisting"
    # A received snapshot is saved (durable at once), but the log reset and hard state that
    # go with it are not yet synced: the restart finds a snapshot ahead of its log.
    AFTER_SNAPSHOT_SAVE = "after saving a received snapshot, before syncing the log"
    AFTER_PERSIST = "after persisting, before sending messages_after_persist"


# Module constants: an enum member looked up on its class costs a class lookup on every use.
_AFTER_SEND: Final = CrashPoint.AFTER_SEND
_AFTER_SNAPSHOT_SAVE: Final = CrashPoint.AFTER_SNAPSHOT_SAVE
_AFTER_PERSIST: Final = CrashPoint.AFTER_PERSIST
_NORMAL: Final = EntryKind.NORMAL
_MEMBERSHIP: Final = EntryKind.MEMBERSHIP

# After a pause the node's ticks no longer track real time: like the server's ticker
# (raftkv.server.runtime), the driver does not trust the lease for this many election
# timeouts of normal ticking.
LEASE_BLACKOUT_ELECTION_TIMEOUTS = 2


def node_rng(seed: int, node_id: int, incarnation: int) -> random.Random:
    """The core's own random stream (election timeouts), derived from the seed alone."""
    if incarnation == 0:
        return random.Random(seed * 1000 + node_id)
    # A string seed is hashed with SHA-512: stable across processes and Python builds.
    return random.Random(f"{seed}/{node_id}/{incarnation}")


# Compiled with mypyc (setup.py): test doubles subclass it (tests/sim/test_checks_fail.py).
@mypyc_attr(allow_interpreted_subclasses=True)
class SimNode:
    """The driver of one node. Subclass and override `save_hard_state` (or pass another
    `node_class`) to model a faulty runtime in tests."""

    def __init__(self, node_id: int, simulation: Simulation, node_class: type[RaftNode]) -> None:
        self.id = node_id
        self.simulation = simulation
        self.node_class = node_class
        self.log_store = MemoryLogStore()
        self.stable_store = MemoryStableStore()
        self.snapshot_store = MemorySnapshotStore()
        self.node: RaftNode | None = None
        self.kv = KVStore(decode=self.simulation.decoder)
        self.incarnation = -1
        # The last index applied, of any kind (the KV store only counts NORMAL entries).
        self.applied_index = 0
        # The configuration as of `applied_index`, which a snapshot taken there must carry.
        self.applied_membership: Membership = EMPTY
        self.crash_point: CrashPoint | None = None
        self.crash_armed_tick = 0
        # A paused process (a GC pause, SIGSTOP) neither ticks nor receives until this tick.
        self.paused_until = 0
        self.lease_blackout_ticks = 0
        self.snapshot_interval = 0  # take a snapshot every this many applied entries; 0: never
        self.snapshot_keep_entries = 0
        self.last_snapshot_index = 0

    @property
    def alive(self) -> bool:
        return self.node is not None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, bootstrap: Membership | None = None) -> RaftNode:
        """Build the node from what its stores hold, as a restarted process would."""
        self.incarnation += 1
        config = self.simulation.options.raft_config(self.id, self.simulation.tuning)
        rng = node_rng(self.simulation.options.seed, self.id, self.incarnation)
        # The server's own recovery (raftkv.storage.recovery), so the simulator vouches for it:
        # e.g. a crash between saving a received snapshot and resetting the log.
        recovered = recover(self.log_store, self.stable_store, self.snapshot_store)
        self.kv = KVStore(decode=self.simulation.decoder)
        self.applied_index = recovered.applied_index
        self.applied_membership = EMPTY
        if recovered.snapshot is not None:
            meta, data = recovered.snapshot
            self.kv.restore(data)
            self.last_snapshot_index = meta.index
            self.applied_membership = meta.membership
        self.node = node = self.node_class(
            config,
            rng,
            hard_state=recovered.hard_state,
            entries=recovered.entries,
            snapshot=recovered.snapshot,
            applied=self.applied_index,
        )
        if bootstrap is not None:
            node.bootstrap(bootstrap)
        self.crash_point = None
        self.paused_until = self.lease_blackout_ticks = 0
        return node

    def crash(self) -> None:
        """Power loss: the process dies and every unsynced write is lost."""
        self.log_store.crash()
        self.stable_store.crash()
        self.snapshot_store.crash()
        self.node = None
        self.crash_point = None
        self.paused_until = 0

    def paused(self, now: int) -> bool:
        return self.paused_until > now

    def resume(self) -> None:
        """The pause ended: tick on from now, and distrust the lease for a while."""
        self.paused_until = 0
        config = self.simulation.options.raft_config(self.id, self.simulation.tuning)
        self.lease_blackout_ticks = LEASE_BLACKOUT_ELECTION_TIMEOUTS * config.election_timeout_ticks

    def lease_usable(self) -> bool:
        """What a lease read may rely on: the core's lease, unless ticks were missed."""
        node = self.node
        return node is not None and self.lease_blackout_ticks == 0 and node.lease_valid()

    def log_view(self) -> LogView:
        """This node's log as an election would see it (the durable one while crashed)."""
        node = self.node
        if node is not None:
            log = node.log
            return LogView(self.id, log.last_index, log.last_term, log.snapshot_index, log.term)
        store = self.log_store
        snapshot = self.snapshot_store.latest()
        snapshot_index = snapshot[0].index if snapshot else 0
        last_index = max(store.last_index(), snapshot_index)
        last_term = store.term(last_index)
        if last_term is None:
            assert snapshot is not None
            last_term = snapshot[0].term
        return LogView(self.id, last_index, last_term, snapshot_index, store.term)

    def arm_crash(self, point: CrashPoint, now: int) -> None:
        self.crash_point = point
        self.crash_armed_tick = now

    # --- the Ready loop -----------------------------------------------------------------
    def process_ready(self) -> None:
        node = self.node
        if node is None:
            return
        if node.has_ready():
            checker = self.simulation.checker
            rounds = 0
            while True:
                rounds += 1
                if rounds > READY_ROUNDS_MAX:
                    raise checker.fail(
                        "Liveness", f"node {self.id} produced {READY_ROUNDS_MAX} Readies in a row"
                    )
                if not self._carry_out(node, node.ready()):
                    return  # crashed inside the Ready
                checker.observe(self.id, node)
                if not node.has_ready():
                    break
        if self.snapshot_interval and (
            self.applied_index - self.last_snapshot_index >= self.snapshot_interval
        ):
            self._maybe_snapshot(node)

    def _carry_out(self, node: RaftNode, ready: Ready) -> bool:
        """Steps 1-4 of Ready, then advance(); False when a crash struck inside."""
        simulation = self.simulation
        now = simulation.now
        if ready.events and simulation.transcript.enabled:
            for event in ready.events:
                simulation.transcript.line(now, f"node {self.id}: {event}")
        crash_point = self.crash_point
        # 1. Messages that may leave before the save.
        messages = ready.messages
        if messages:
            simulation.network.send(now, messages)
            if simulation.faults.deafen_on_timeout_now == self.id and any(
                isinstance(message, TimeoutNow) for message in messages
            ):
                simulation.faults.on_timeout_now_sent(self.id)
        snapshot = ready.snapshot
        entries = ready.entries
        hard_state = ready.hard_state
        persists = bool(entries or hard_state or snapshot)
        if crash_point is _AFTER_SEND and persists:
            simulation.crash(self.id, CrashPoint.AFTER_SEND)
            return False
        # 2. Save, durably when asked.
        if snapshot is not None:
            meta, data = snapshot
            self.snapshot_store.save(meta, data)
            if crash_point is _AFTER_SNAPSHOT_SAVE:
                simulation.crash(self.id, CrashPoint.AFTER_SNAPSHOT_SAVE)
                return False
            self.log_store.reset(meta.index, meta.term)
        if entries:
            first = entries[0].index
            previous_term = node.log.term(first - 1)
            if previous_term is None:
                raise simulation.checker.fail(
                    "Ready contract", f"node {self.id} hands out entries from {first} after a gap"
                )
            simulation.checker.on_entries(self.id, previous_term, entries)
            self.log_store.append(entries)
        if hard_state is not None:
            self.save_hard_state(hard_state)
        if ready.must_sync:
            self.log_store.sync()
            self.stable_store.sync()
        if crash_point is _AFTER_PERSIST and persists:
            simulation.crash(self.id, CrashPoint.AFTER_PERSIST)
            return False
        # 3. Messages that promise what was just saved.
        if ready.messages_after_persist:
            simulation.network.send(now, ready.messages_after_persist)
        # 4. The state machine.
        if snapshot is not None:
            self._restore(*snapshot)
        if ready.committed_entries:
            self._apply(ready.committed_entries)
        if ready.read_states:
            for read_state in ready.read_states:
                self.answer_read(read_state)
        node.advance(ready)
        return True

    def save_hard_state(self, hard_state: HardState) -> None:
        self.stable_store.set_hard_state(hard_state)

    def answer_read(self, read_state: ReadState) -> None:
        self.simulation.workload.on_read_state(self.id, read_state)

    def _restore(self, meta: SnapshotMeta, data: bytes) -> None:
        simulation = self.simulation
        if meta.index <= self.applied_index:
            raise simulation.checker.fail(
                "Ready contract",
                f"node {self.id} asked to restore snapshot {meta.index} after applying"
                f" {self.applied_index}",
            )
        self.kv.restore(data)
        self.applied_index = self.last_snapshot_index = meta.index
        self.applied_membership = meta.membership
        simulation.stats.snapshots_installed += 1
        simulation.checker.on_restore(self.id, meta.index, self.kv.applied_hash)
        if simulation.transcript.enabled:
            simulation.transcript.line(
                simulation.now, f"node {self.id}: restored snapshot at {meta.index}/{meta.term}"
            )

    def _apply(self, entries: list[Entry]) -> None:
        simulation = self.simulation
        checker = simulation.checker
        workload = simulation.workload
        transcript = simulation.transcript
        kv = self.kv
        for entry in entries:
            index = entry.index
            if index != self.applied_index + 1:
                raise checker.fail(
                    "Ready contract",
                    f"node {self.id} asked to apply {index} after {self.applied_index}",
                )
            result: Any = None
            kind = entry.kind
            if kind == _NORMAL:
                result = kv.apply(index, entry.data)
            elif kind == _MEMBERSHIP:
                self.applied_membership = Membership.decode(entry.data)
            self.applied_index = index
            if transcript.enabled:
                transcript.line(simulation.now, f"node {self.id}: applied {describe_entry(entry)}")
            checker.on_apply(self.id, entry, kv.applied_hash)
            workload.on_applied(self.id, entry, result)
        simulation.stats.entries_applied += len(entries)

    def _maybe_snapshot(self, node: RaftNode) -> None:
        """Compact the log every `snapshot_interval` applied entries (§7)."""
        index = self.applied_index
        if index - self.last_snapshot_index < self.snapshot_interval:
            return
        term = node.log.term(index)
        if term is None or node.log.applied != index:
            return
        meta = SnapshotMeta(index=index, term=term, membership=self.applied_membership)
        data = self.kv.snapshot()
        self.snapshot_store.save(meta, data)
        node.snapshot_taken(meta, data, keep_entries=self.snapshot_keep_entries)
        self.last_snapshot_index = index
        # The store drops the same prefix as the core; a crash before the next sync keeps the
        # longer log, which a restart trims to the snapshot.
        compact_to = index - self.snapshot_keep_entries
        compact_term = self.log_store.term(compact_to)
        if compact_to >= self.log_store.first_index() and compact_term is not None:
            self.log_store.compact(compact_to, compact_term)
        simulation = self.simulation
        simulation.stats.snapshots_taken += 1
        simulation.checker.observe(self.id, node)
        if simulation.transcript.enabled:
            simulation.transcript.line(
                simulation.now, f"node {self.id}: took snapshot at {index}/{term}"
            )
