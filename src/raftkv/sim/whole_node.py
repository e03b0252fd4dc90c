"""`raft-sim --whole-node`: N real `RaftServer`s (the production server: ticker, Ready loop,
snapshot task, learner promotion, request layer and HTTP handlers, recovery, the real WAL
and snapshot files) on a deterministic event loop, a faulty in-memory network and one
simulated disk per node.

What the core-only simulator cannot see is exercised here: messages stepped between a
Ready and its advance, the snapshot task racing an install, the disk "thread", start-up
recovery, crashes at any await point (the loop drops a killed node's callbacks) and inside
any disk operation (a scheduled power loss), torn writes and damaged files.

Every fsync takes virtual time during which the node runs nothing (the server syncs on
its loop's thread), so what arrives meanwhile interleaves with what its Ready started.

After every callback the loop runs, the invariant checker of the core-only simulator
observes every live node (Election Safety, Leader Append-Only, Log Matching, Leader
Completeness, State Machine Safety, lease safety); every message is checked as it leaves
(no term or vote ahead of what the sender made durable) and durability at each restart (a
node that starts holds everything it had made durable, or refuses to start), both in
`whole_node_durability.py`; the client history is checked for linearizability at the end
(an UNKNOWN verdict fails). Same options, same output, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from raftkv.addresses import parse_host_port
from raftkv.check import HistoryRecorder, check_history
from raftkv.check.watches import check_watches, committed_changes
from raftkv.core import Entry, EntryKind
from raftkv.errors import Corruption, StorageError
from raftkv.kv import KVStore, decode_command
from raftkv.server.http_server import Request, Response
from raftkv.server.options import WAL_SEGMENT_BYTES, NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.sim.event_loop import OWNER, SimulatedEventLoop
from raftkv.sim.invariants import InvariantChecker, InvariantViolation
from raftkv.sim.multi_key_ops import MultiKeyMix
from raftkv.sim.runner import LINEARIZABILITY_STATES_MAX
from raftkv.sim.sweep import in_workers
from raftkv.sim.whole_node_clients import ATTEMPT_TIMEOUT_SECONDS, KEYS, KvClient, LoadWriter
from raftkv.sim.whole_node_durability import DurabilityWatch
from raftkv.sim.whole_node_leases import (
    LEASE_CLIENTS,
    LeaseClient,
    LeaseExpiryWatch,
    LeaseStats,
)
from raftkv.sim.whole_node_machine import Machine, MachineState
from raftkv.sim.whole_node_operator import Operator
from raftkv.sim.whole_node_report import WholeNodeOptions, WholeNodeResult, WholeNodeStats
from raftkv.sim.whole_node_watchers import Watcher
from raftkv.storage.simulated_disk import DiskFaults, SimulatedCrash, SimulatedFileSystem
from raftkv.transport.memory import MemoryHub, MemoryTransport

__all__ = [
    "WholeNodeOptions",
    "WholeNodeResult",
    "WholeNodeSimulation",
    "WholeNodeStats",
    "run_whole_node",
    "sweep_whole_node",
]

HOST = "sim"
PEER_PORT_BASE = 9000
CLIENT_OWNER = "clients"
FAULT_OWNER = "faults"
# After healing, every live node must reach the leader's commit within this much time.
CONVERGENCE_SECONDS = 15.0
# Callbacks run at one virtual time before the run fails: code that keeps scheduling itself
# without letting the clock move would otherwise never end the run (a sweep waited 20
# minutes on one seed). The busiest instants of ordinary runs take some hundreds (at most
# 90, 230 and 449 with 3, 5 and 7 nodes over seeds 1-30).
STILL_CLOCK_CALLBACKS_MAX = 100_000
TICK_MS = 10
# Virtual time moves in steps of 1 ms: whatever comes due in one step is concurrent.
TIME_QUANTUM_SECONDS = 0.001
# Disks of a "failing" seed: errors per operation (ENOSPC and EIO on writes and fsyncs, EIO
# on reads), each a storage failure the server must survive by stopping cleanly.
FAILING_DISK = {
    "write_enospc_rate": 0.0004,
    "write_eio_rate": 0.0004,
    "fsync_enospc_rate": 0.001,
    "fsync_eio_rate": 0.001,
    "read_eio_rate": 0.0002,
}
# Disks of a "slow" seed: some fsyncs block the node's process for up to 40 ticks.
# Every fsync, on every disk, takes up to this long (an SSD's flush).
FSYNC_SECONDS_MAX = 0.005
SLOW_DISK = {"slow_fsync_rate": 0.03, "slow_fsync_ticks_max": 40}
CRASH_BIT_FLIP_RATE = 0.05
# The seeds that wait for commands before a snapshot wait for this fraction of its size.
SIM_SNAPSHOT_LOG_FRACTION = 1.0
# One entry at a time: any proposal made while an entry is uncommitted is refused.
SMALL_UNCOMMITTED_WINDOW_BYTES = 1
# How often a node that just installed a snapshot loses power soon after (0.1-0.6 s): what
# the install left on disk is then what the node restarts from.
CRASH_AFTER_INSTALL_RATE = 0.3
CRASH_SOON_AFTER_RESTART_RATE = 0.3


class _ObservedStore(KVStore):
    """The KV store, reporting every apply and restore to the invariant checker."""

    def __init__(
        self,
        checker: InvariantChecker,
        node_id: int,
        on_violation: Callable[[InvariantViolation], None],
    ) -> None:
        super().__init__()
        self._checker = checker
        self._node_id = node_id
        # A violation found here is raised inside the server's apply, which then stops the
        # node; the run must report the violation, not the stop.
        self._on_violation = on_violation
        self.server: RaftServer | None = None
        # Called when a running server restores a received snapshot (not at start-up).
        self.on_install: Callable[[int], None] | None = None
        # Told of each lease an expiry entry deletes: (lease, node id, index).
        self.on_lease_expired: Callable[[int, int, int], None] | None = None

    def apply(self, index: int, command: bytes) -> Any:
        if self.on_lease_expired is not None and b"lease_expire" in command:
            self._report_expiries(index, command)
        result = super().apply(index, command)
        server = self.server
        term = server.node.log.term(index) if server is not None else None
        if term is None:
            # A snapshot received while this Ready awaited (its fsync) replaced the core's
            # log: the entry is gone from it. The command and the state hash still compare.
            term = self._checker.applied_term(index) or 0
        entry = Entry(term, index, EntryKind.NORMAL, command)
        with self._reported():
            self._checker.on_apply(self._node_id, entry, self.applied_hash)
        return result

    def _report_expiries(self, index: int, command: bytes) -> None:
        """The leases this expiry entry is about to delete (those it names that exist)."""
        assert self.on_lease_expired is not None
        try:
            parsed = decode_command(command)
        except ValueError:
            return
        if parsed.op == "lease_expire":
            for lease in parsed.leases:
                if self.lease(lease) is not None:
                    self.on_lease_expired(lease, self._node_id, index)

    def restore(self, data: bytes) -> None:
        super().restore(data)
        with self._reported():
            self._checker.on_restore(self._node_id, self.applied_index, self.applied_hash)
        # At start-up the server has no core yet: that restore is recovery, not an install.
        if self.on_install is not None and hasattr(self.server, "node"):
            self.on_install(self._node_id)

    @contextlib.contextmanager
    def _reported(self) -> Iterator[None]:
        try:
            yield
        except InvariantViolation as violation:
            self._on_violation(violation)
            raise


class WholeNodeSimulation:
    OPERATOR_OWNER = FAULT_OWNER

    def __init__(self, options: WholeNodeOptions) -> None:
        self.options = options
        seeds = random.Random(options.seed)
        self.rng = random.Random(seeds.getrandbits(64))
        loop_rng = random.Random(seeds.getrandbits(64))
        # Half the seeds run ready callbacks in any order, half mostly oldest first.
        perturbation = loop_rng.choice((0.5, 1.0))
        # The abstract methods it leaves out (sockets, pipes, signals) are never called here.
        self.loop = SimulatedEventLoop(  # type: ignore[abstract]
            loop_rng, perturbation=perturbation, time_quantum=TIME_QUANTUM_SECONDS
        )
        self._clock_seen = -1.0  # the virtual time of the last callback, and how many ran at it
        self._callbacks_at_clock = 0
        self.hub = MemoryHub(random.Random(seeds.getrandbits(64)))
        self.hub.latency_seconds = (0.0002, 0.004)
        self.node_ids = list(range(1, options.nodes + 1))
        # Drawn per seed: small intervals and few trailing entries make snapshots, installs
        # and compaction (and their races with everything else) happen often; the cluster
        # is either founded by every node, or by one node alone that the others join (one
        # voter with learners); some seeds' disks fail now and then, some are slow.
        tuning = random.Random(seeds.getrandbits(64))
        self.snapshot_entries = tuning.choice((3, 10, 30, 100))
        self.snapshot_trailing_entries = tuning.choice((0, 2, 5, 20))
        # Half the seeds carry background write load beyond the checked clients.
        self.load_writers = tuning.choice((0, 2))
        grown = options.faults and options.membership and tuning.random() < 0.4
        self.founders = [1] if grown or options.nodes == 1 else list(self.node_ids)
        failing = options.faults and tuning.random() < 0.3
        slow = options.faults and tuning.random() < 0.3
        self.disk_faults = DiskFaults(
            fsync_seconds_max=FSYNC_SECONDS_MAX,
            crash_bit_flip_rate=CRASH_BIT_FLIP_RATE if options.faults else 0.0,
            **(FAILING_DISK if failing else {}),  # type: ignore[arg-type]
            **(SLOW_DISK if slow else {}),  # type: ignore[arg-type]
        )
        # Some seeds give leaders a tiny window of uncommitted entries: under load, every
        # proposer (clients, joins, learner promotion) then meets "try again" refusals.
        self.uncommitted_bytes_max = tuning.choice(
            (SMALL_UNCOMMITTED_WINDOW_BYTES, NodeOptions.uncommitted_bytes_max)
        )
        # A third of the seeds (by number: no stream above moves) wait, as a large state
        # does, for commands as big as the last snapshot before the next one
        # (NodeOptions.snapshot_log_fraction; the sims' states are far below the 1 MiB
        # where that starts in production).
        self.snapshot_log_fraction = SIM_SNAPSHOT_LOG_FRACTION if options.seed % 3 == 1 else 0.0
        self._disk_rng = random.Random(seeds.getrandbits(64))
        self.membership_changes = options.faults and options.membership and options.nodes > 1
        self.machines = {
            node_id: Machine(node_id, self._new_disk(), disk_faults=failing)
            for node_id in self.node_ids
        }
        self.checker = InvariantChecker()
        self.durability = DurabilityWatch(self.fail)
        self.stats = WholeNodeStats(
            shape=(
                f"founded by {len(self.founders)} of {options.nodes}"
                + (", the others join" if len(self.founders) < options.nodes else "")
                # A quarter of the seeds (by number, as above) tell commits at once, the
                # default's alternative (WholeNodeOptions.commit_notices).
                + ("" if options.nodes_defer_commit_notices else ", commits told at once")
                + (", quorum-first" if options.nodes_quorum_first else "")
            ),
            disks=", ".join(name for name, on in (("failing", failing), ("slow", slow)) if on)
            or "sound",
        )
        self.recorder = HistoryRecorder()
        self.operator = Operator(self, random.Random(seeds.getrandbits(64)))
        # The watchers' own randomness, drawn last: every other stream is as it was before
        # watchers existed (their callbacks still move the loop's perturbed order).
        self._watch_rng = random.Random(seeds.getrandbits(64))
        self.watchers: list[Watcher] = []
        self.issuing = True
        # Watchers stream until the end, through healing and convergence, then are checked.
        self.watching = True
        self._next_value = 1
        self._violation: InvariantViolation | None = None
        # Drawn last, so every generator above is what it was before leases.
        self.lease_rng = random.Random(seeds.getrandbits(64))
        self.lease_stats = LeaseStats()
        self.lease_watch = LeaseExpiryWatch(self.fail, self.lease_stats)

    # --- machines and processes ---------------------------------------------------------
    def _new_disk(self) -> SimulatedFileSystem:
        return SimulatedFileSystem(random.Random(self._disk_rng.getrandbits(64)), self.disk_faults)

    def new_disk(self, machine: Machine) -> None:
        """The machine gets an empty disk (a rebuilt or re-added node)."""
        machine.disk = self._new_disk()
        machine.durable = (0, 0)
        machine.refusal = None

    def machines_in(self, state: MachineState) -> list[Machine]:
        return [machine for machine in self.machines.values() if machine.state is state]

    def peer_address_text(self, node_id: int) -> str:
        return f"{HOST}:{PEER_PORT_BASE + node_id}"

    def _node_options(self, node_id: int, *, joined: bool) -> NodeOptions:
        """The command line of `raft-node` on this machine: the founders' `--peers` (or
        `--single-node`), or `--join` for one that joined (and any re-added id)."""
        founding = node_id in self.founders and not joined
        return NodeOptions(
            node_id=node_id,
            data_dir=f"/disk/node-{node_id}",
            listen=(HOST, PEER_PORT_BASE + node_id),
            client_listen=(HOST, PEER_PORT_BASE - 1000 + node_id),
            peers={
                peer: (HOST, PEER_PORT_BASE + peer)
                for peer in self.founders
                if peer != node_id and founding
            },
            single_node=founding and len(self.founders) == 1,
            # As if given `--cluster-id`: founders then never wait to learn it (a random
            # one made by the lowest founder would also change every run's output).
            cluster_id=f"sim-{self.options.seed}" if founding else None,
            join=(HOST, PEER_PORT_BASE - 1000 + self.founders[0]) if joined else None,
            tick_ms=TICK_MS,
            seed=self.options.seed * 1000 + node_id,
            snapshot_entries=self.snapshot_entries,
            snapshot_log_fraction=self.snapshot_log_fraction,
            snapshot_fraction_from_bytes=0,
            snapshot_trailing_entries=self.snapshot_trailing_entries,
            uncommitted_bytes_max=self.uncommitted_bytes_max,
            wal_segment_bytes=self.options.wal_segment_bytes or WAL_SEGMENT_BYTES,
            sync_thread_min_entries=self.options.nodes_sync_thread_min_entries,
            read_rounds_inflight_max=self.options.nodes_read_rounds_inflight_max,
            follower_reads=self.options.follower_reads,
            defer_commit_notices=self.options.nodes_defer_commit_notices,
            quorum_first=self.options.nodes_quorum_first,
        )

    def start(self, machine: Machine, joining: tuple[dict[str, Any], int] | None = None) -> None:
        """Start a server process on the machine; `joining`: the cluster's answers to a
        join (its membership description and the index of the add), as `raft-node --join`
        passes them in."""
        machine.incarnation += 1
        machine.state = MachineState.RUNNING
        machine.leaving = False
        if joining is not None:
            machine.joined = True
        options = self._node_options(machine.id, joined=machine.joined)
        store = _ObservedStore(self.checker, machine.id, self._first_violation)
        server = RaftServer(
            options,
            store,
            transport_factory=self.durability.watched_transport(
                machine, functools.partial(MemoryTransport, self.hub)
            ),
            filesystem=machine.disk,
            listen_for_clients=False,
            # A plain executor, not the default SyncThread (which hands its jobs to a real
            # thread): the simulated loop's run_in_executor runs the syncs itself, at
            # times it draws, so that a seed replays exactly. No thread is ever started.
            sync_executor=ThreadPoolExecutor(max_workers=1),
        )
        if joining is not None:
            described, joined_index = joining
            options.cluster_id = str(described.get("cluster_id", ""))
            server.peers.joined(
                {
                    int(member["id"]): parse_host_port(member["address"])
                    for member in described.get("members", [])
                    if member.get("address") and int(member["id"]) != machine.id
                },
                joined_index,
            )
        store.server = server
        store.on_lease_expired = self._lease_expired
        if self.options.faults:
            store.on_install = self._maybe_crash_after_install
        machine.server = server
        self.in_process(machine.owner, self._boot(machine, server))

    def restart(self, machine: Machine) -> None:
        """Start a crashed machine again; one that joined but kept nothing joins again, as
        `raft-node --join` does on an empty data dir."""
        self.stats.restarts += 1
        if machine.joined and not machine.disk.isdir(f"/disk/node-{machine.id}/wal"):
            self.in_process(FAULT_OWNER, self.operator.join(machine))
            return
        if self.issuing and self.rng.random() < CRASH_SOON_AFTER_RESTART_RATE:
            # A flapping machine: power fails again within its first disk operations, often
            # inside its first election's Ready (messages out, term not yet durable).
            machine.disk.schedule_crash(self.rng.randint(1, 80))
        self.start(machine)

    def in_process(self, owner: object, coroutine: Any) -> asyncio.Task[Any]:
        context = contextvars.copy_context()
        context.run(OWNER.set, owner)
        return context.run(self.loop.create_task, coroutine)

    async def _boot(self, machine: Machine, server: RaftServer) -> None:
        try:
            await server.start()
        except Corruption as error:
            # Refusing to start is right only if the disk lost or damaged what it held.
            self._refused(machine, MachineState.REFUSED, f"node {machine.id}: {error}")
            return
        except (StorageError, ValueError) as error:
            # A failing disk (EIO while reading): try again later.
            self._refused(machine, MachineState.DOWN, f"node {machine.id}: {error}")
            return
        self.durability.check_restart(machine, server)
        self.checker.on_start(machine.id)

    def _refused(self, machine: Machine, state: MachineState, refusal: str) -> None:
        self.loop.kill(machine.owner)
        self.hub.crash((HOST, PEER_PORT_BASE + machine.id))
        # The operator restarts the machine, not only the process: after a failed fsync the
        # page cache may hold changes that will never reach the disk (Linux drops them from
        # write-back), and a new process would read them as if they were durable.
        machine.disk.crash()
        machine.server = None
        machine.state = state
        if state is MachineState.REFUSED:
            machine.refusal = refusal
            self.stats.refused_starts.append(refusal)

    def crash(self, machine: Machine) -> None:
        """Power loss: the process dies at whatever await it was, unsynced data is lost."""
        if machine.server is None:
            return
        self.stats.crashes += 1
        self.loop.kill(machine.owner)
        self.loop.bury(machine.server)
        self.hub.crash((HOST, PEER_PORT_BASE + machine.id))
        machine.disk.crash()
        machine.server = None
        machine.state = MachineState.DOWN
        self.checker.on_crash(machine.id)

    def _lease_expired(self, lease: int, node_id: int, index: int) -> None:
        self.lease_watch.expired(lease, self.loop.time(), node_id, index)

    def _maybe_crash_after_install(self, node_id: int) -> None:
        machine = self.machines[node_id]
        if not self.issuing or self.rng.random() >= CRASH_AFTER_INSTALL_RATE:
            return
        owner = machine.owner
        delay = self.rng.uniform(0.1, 0.6)

        async def crash_later() -> None:
            await asyncio.sleep(delay)
            if machine.owner == owner and self.issuing:
                self.crash(machine)

        self.in_process(FAULT_OWNER, crash_later())

    def _leave(self, machine: Machine) -> None:
        """It applied its own removal: stop as `raft-node` does (hand leadership over, stop,
        exit), in its own process."""
        server = machine.server
        assert server is not None
        self.stats.removed_stops += 1
        owner = machine.owner

        async def leave() -> None:
            await server.shutdown_gracefully()
            if machine.server is server and machine.owner == owner:
                self.loop.kill(owner)
                self.hub.crash((HOST, PEER_PORT_BASE + machine.id))
                machine.disk.close_all()
                machine.server = None
                machine.state = MachineState.REMOVED
                self.checker.on_crash(machine.id)

        machine.leaving = True
        self.in_process(owner, leave())

    def leader(self) -> Machine | None:
        """The running leader of the highest term, if any."""
        best: Machine | None = None
        for machine in self.machines.values():
            if not machine.started() or machine.server_node().role != "leader":
                continue
            if best is None or machine.server_node().term > best.server_node().term:
                best = machine
        return best

    # --- requests -----------------------------------------------------------------------
    async def call(
        self,
        target: int,
        method: str,
        path: str,
        body: dict[str, object] | None,
        timeout_seconds: float,
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One HTTP request, handled by the target's real API in the target's process: a
        node that dies or stalls meanwhile never answers (the caller's timeout decides)."""
        machine = self.machines[target]
        server = machine.server
        if server is None or server.api is None:
            return 503, {"error": "unreachable"}
        encoded = msgspec.json.encode(body) if body is not None else b""
        request = Request(method, path, query or {}, encoded, True)
        answer: asyncio.Future[tuple[int, dict[str, Any]]] = self.loop.create_future()
        api = server.api

        async def serve() -> None:
            response = await api.handle(request)
            assert isinstance(response, Response), "the simulator's clients ask no streams"
            if not answer.done():
                answer.set_result((response.status, msgspec.json.decode(response.body)))

        self.in_process(machine.owner, serve())
        try:
            async with asyncio.timeout(timeout_seconds):
                return await answer
        except TimeoutError:
            return 504, {"error": "timeout"}

    def next_value(self, client: int) -> str:
        value = f"{client}.{self._next_value}"
        self._next_value += 1
        return value

    def complete(
        self,
        handle: int,
        status: str,
        *,
        result: str | None = None,
        error: str | None = None,
        **answer: Any,
    ) -> None:
        """`answer`: a range's, delete-range's or transaction's history fields."""
        time = None if status == "unknown" else self.loop.time()
        self.recorder.complete(handle, status, time=time, result=result, error=error, **answer)  # type: ignore[arg-type]
        if status == "ok":
            self.stats.client_ok += 1
        elif status == "fail":
            self.stats.client_failed += 1
        else:
            self.stats.client_unknown += 1

    # --- checking -----------------------------------------------------------------------
    def fail(self, invariant: str, detail: str) -> None:
        self._first_violation(self.checker.fail(invariant, detail))

    def _first_violation(self, violation: InvariantViolation) -> None:
        if self._violation is None:
            self._violation = violation

    def _after_callback(self) -> None:
        now = self.loop.time()
        if now != self._clock_seen:
            self._clock_seen = now
            self._callbacks_at_clock = 0
        else:
            self._callbacks_at_clock += 1
            if self._callbacks_at_clock == STILL_CLOCK_CALLBACKS_MAX:
                self.fail(
                    "Progress",
                    f"virtual time stood still at {now:.3f} s for "
                    f"{STILL_CLOCK_CALLBACKS_MAX:,} callbacks",
                )
        checker = self.checker
        checker.now = int(now * 1000)
        tick_seconds = TICK_MS / 1000
        for machine in self.machines.values():
            if machine.disk.powered_off:
                # A scheduled power loss struck inside a disk operation.
                self.stats.disk_crashes += 1
                self.crash(machine)
                continue
            server = machine.server
            if server is None or not hasattr(server, "node"):
                continue
            # The server fsyncs on its event loop's thread: while a sync takes, nothing of
            # the node runs, and what arrives meanwhile (frames, timers, the task its Ready
            # just created) runs after it, in any order.
            delay_ticks = machine.disk.take_fsync_delay_ticks()
            if delay_ticks:
                self.stats.slow_fsyncs += 1
            blocked = delay_ticks * tick_seconds + machine.disk.take_fsync_seconds()
            if blocked:
                self.loop.pause(machine.owner, blocked)
            if server.peers.removed.is_set() and not machine.leaving:
                self._leave(machine)
            failure = server.storage_failure
            if failure is not None and (not machine.disk_faults or _is_internal(failure)):
                self.fail("Node stopped", f"node {machine.id} stopped taking part: {failure}")
            node = server.node
            try:
                checker.observe(machine.id, node)
                if node.role == "leader":
                    checker.check_lease(machine.id, node, server.lease_usable())
            except InvariantViolation as violation:
                self._first_violation(violation)
            self.stats.max_term = max(self.stats.max_term, node.term)
        for context in self.loop.unhandled:
            error = context.get("exception")
            if not isinstance(error, SimulatedCrash) and "destroyed" not in str(
                context.get("message")
            ):
                self.fail("Unhandled exception", f"{context.get('message')}: {error!r}")
        self.loop.unhandled.clear()

    # --- the run ------------------------------------------------------------------------
    def heal(self) -> None:
        """The faults end: links heal, disks stop failing, and what is down comes back."""
        self.hub.heal()
        self.hub.set_drop_probability(0.0)
        calm = DiskFaults()
        # Disks made from now on too (a node re-added on a new disk after the heal): one that
        # still failed refused the node's start once more, and nothing retried it (seed 671
        # with 5 nodes: "node 4 is still down").
        self.disk_faults = calm
        for machine in self.machines.values():
            machine.disk.cancel_crash()
            machine.disk.faults = calm
        self.operator.restart_failed_storage()
        for machine in self.machines_in(MachineState.DOWN):
            self.restart(machine)

    def converged(self) -> bool:
        return self._convergence_gap() is None

    def _convergence_gap(self) -> str | None:
        """What keeps the cluster from having converged (None: nothing): one leader; every
        running member applied its commit; no joint configuration; no running learner
        left unpromoted; every join finished."""
        for state in (MachineState.JOINING, MachineState.DOWN):
            waiting = self.machines_in(state)
            if waiting:
                return f"node {waiting[0].id} is still {state.value}"
        running = [m for m in self.machines.values() if m.server is not None]
        starting = [m.id for m in running if not m.started()]
        if starting:
            return f"node {starting[0]} is still starting"
        leaders = [m.id for m in running if m.server_node().role == "leader"]
        if len(leaders) != 1:
            return f"leaders: {leaders or 'none'}"
        node = self.machines[leaders[0]].server_node()
        membership = node.membership
        if membership.is_joint or node.membership_index > node.log.committed:
            return f"the configuration at index {node.membership_index} is not final"
        commit = node.log.committed
        for member in sorted(membership.members):
            machine = self.machines[member]
            if machine.state is MachineState.REMOVED:
                # Stopped as if removed, yet a member: it may never come back by itself.
                self.fail("Liveness", f"node {member} stopped as removed but is a member")
                return f"node {member} stopped as removed"
            if machine.server is None:
                continue  # refused to start, or never got to join
            if member in membership.learners:
                return f"node {member} is still a learner"
            if machine.server.applied_index < commit:
                return f"node {member} applied {machine.server.applied_index} of {commit}"
        for machine in running:
            server = machine.server
            assert server is not None
            if machine.id not in membership.members:
                if not machine.leaving:
                    # Removed (the configuration is final), yet it has not learnt so: with no
                    # leader to tell it, a member's refusal must (`removed_at`, SPEC §4).
                    return f"node {machine.id} was removed but still runs"
                continue
            stale = sorted(set(server.peers.addresses) - membership.members)
            if stale:
                # It would dial them for good, logging each failure.
                return f"node {machine.id} still dials node {stale[0]}, not a member"
        return None

    def _liveness_owed(self) -> bool:
        """Whether the cluster must recover: not when a node refused to start. Its refusal
        says its disk lost or damaged what it held, and it may have been the only one that
        held the newest entries (the others stale, or re-added on new disks): no rule of
        Raft promises progress then. Such runs still check every safety property."""
        return not self.machines_in(MachineState.REFUSED)

    def run(self) -> WholeNodeResult:
        options = self.options
        logging.getLogger("raftkv").setLevel(logging.CRITICAL + 1)
        self.loop.after_callback = self._after_callback

        def stop() -> bool:
            return self._violation is not None

        try:
            for node_id in self.founders:
                self.start(self.machines[node_id])
            if options.faults:
                self.in_process(FAULT_OWNER, self.operator.run())
            if len(self.founders) < options.nodes:
                self.in_process(FAULT_OWNER, self.operator.grow(self.node_ids[1:]))
            client_rng = random.Random(self.rng.getrandbits(64))
            # Apart from every other stream, so that drawing from it moves none of them.
            mix = MultiKeyMix(random.Random(f"{options.seed}/multi-key"), KEYS)
            for number in range(1, options.clients + 1):
                client = KvClient(self, number, client_rng, mix)
                self.in_process(CLIENT_OWNER, client.run())
            for number in range(1, self.load_writers + 1):
                self.in_process(CLIENT_OWNER, LoadWriter(self, number, client_rng).run())
            for number in range(1, options.watchers + 1):
                watcher = Watcher(self, number, self._watch_rng)
                self.watchers.append(watcher)
                self.in_process(CLIENT_OWNER, watcher.run())
            for number in range(1, LEASE_CLIENTS + 1 if options.leases else 1):
                lease_client = LeaseClient(
                    self, number, self.lease_rng, self.lease_watch, self.lease_stats
                )
                self.in_process(CLIENT_OWNER, lease_client.run())
            self.loop.run_until(stop, options.seconds)
            self.issuing = False
            self.heal()
            limit = self.loop.time() + CONVERGENCE_SECONDS
            converged = self._violation is None and self.loop.run_until(
                lambda: stop() or self.converged(), limit
            )
            if self._violation is not None:
                pass  # the run already failed
            elif converged:
                self.stats.liveness = "OK"
            elif not self._liveness_owed():
                self.stats.liveness = "not owed (a node refused to start)"
            elif self._violation is None:
                self.stats.liveness = "FAILED"
                self.fail(
                    "Liveness",
                    f"no convergence within {CONVERGENCE_SECONDS:g} s ({self._convergence_gap()})",
                )
            # Let the clients' last attempts finish or time out.
            self.loop.run_until(stop, self.loop.time() + 2 * ATTEMPT_TIMEOUT_SECONDS)
            self.watching = False
            if self._violation is None:
                self._check_history()
            if self._violation is None:
                self._check_watches()
        finally:
            self.loop.after_callback = None
            logging.getLogger("raftkv").setLevel(logging.NOTSET)
        self._final_stats()
        self._dispose()
        return WholeNodeResult(options, self.stats, self._violation)

    def _dispose(self) -> None:
        """Close every coroutine still suspended (or never started: its process was killed
        first), now rather than whenever the garbage collector gets to them, which warns
        about each on stderr at exit. After the checks: what their `finally` blocks do no
        longer matters."""
        for task in asyncio.all_tasks(self.loop):
            with contextlib.suppress(BaseException):
                task.get_coro().close()
        self.loop.close()

    def _final_stats(self) -> None:
        stats = self.stats
        stats.callbacks = self.loop.callbacks_run
        stats.snapshot_entries = self.snapshot_entries
        stats.snapshot_log_fraction = self.snapshot_log_fraction
        stats.load_writers = self.load_writers
        stats.snapshot_trailing_entries = self.snapshot_trailing_entries
        stats.commit_index = self.checker.committed_index
        stats.leases = self.lease_stats if self.options.leases else None
        for machine in self.machines.values():
            server = machine.server
            if server is not None and hasattr(server, "metrics"):
                stats.snapshots_taken += int(server.metrics.snapshots_taken._value.get())
                stats.snapshots_installed += int(server.metrics.snapshots_installed._value.get())

    def _check_history(self) -> None:
        result = check_history(
            self.recorder.history(),
            max_states=LINEARIZABILITY_STATES_MAX,
            minimize=True,
            validated=True,  # the recorder validated every operation as it was recorded
        )
        verdict = {True: "OK", False: "NOT LINEARIZABLE", None: "UNKNOWN (search budget)"}
        self.stats.linearizability = f"{verdict[result.ok]} ({result.operation_count} operations)"
        if result.ok is False:
            self.fail("Linearizability", result.explain())
        elif result.ok is None:
            self.fail(
                "Linearizability",
                f"UNKNOWN: the checker's search budget ({LINEARIZABILITY_STATES_MAX} states)"
                " ran out",
            )

    def _check_watches(self) -> None:
        """Every watcher's segments against the changes of the committed log, replayed."""
        if not self.watchers:
            return
        expected = committed_changes(self.checker.applied_commands())
        segments = [segment for watcher in self.watchers for segment in watcher.segments]
        verdict = check_watches(expected, segments)
        streams = sum(watcher.stats.streams for watcher in self.watchers)
        compacted = sum(watcher.stats.compacted for watcher in self.watchers)
        summary = (
            f"{len(self.watchers)} watchers, {len(segments)} segments, {streams} streams,"
            f" {compacted} compacted"
        )
        if verdict.ok:
            self.stats.watches = f"OK ({summary}, {verdict.checked} events)"
        else:
            self.stats.watches = f"FAILED ({summary})"
            self.fail("Watches", verdict.message)


def _is_internal(failure: str) -> bool:
    """A reason for stopping that no disk fault explains (see RaftServer)."""
    return failure.startswith(("internal", "background"))


def run_whole_node(options: WholeNodeOptions) -> WholeNodeResult:
    return WholeNodeSimulation(options).run()


def _report_lines(options: WholeNodeOptions) -> list[str]:
    return run_whole_node(options).report_lines()


def sweep_whole_node(options: list[WholeNodeOptions], jobs: int = 1) -> Iterator[list[str]]:
    """Each run's report, in the order given; with `jobs` above 1 in worker processes, as
    the core-only sweep runs. Reports do not depend on it."""
    return in_workers(_report_lines, options, jobs)
