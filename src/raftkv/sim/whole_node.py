"""`raft-sim --whole-node`: N real `RaftServer`s (the production server: ticker, Ready loop,
snapshot task, learner promotion, request layer and HTTP handlers, recovery, the real WAL
and snapshot files) on a deterministic event loop, a faulty in-memory network and one
simulated disk per node.

What the core-only simulator cannot see is exercised here: messages stepped between a
Ready and its advance, the snapshot task racing an install, the disk "thread", start-up
recovery, crashes at any await point (the loop drops a killed node's callbacks) and inside
any disk operation (a scheduled power loss), torn writes and damaged files.

After every callback the loop runs, the invariant checker of the core-only simulator
observes every live node (Election Safety, Leader Append-Only, Log Matching, Leader
Completeness, State Machine Safety, lease safety); durability is checked at each restart
(a node that starts holds everything it had made durable, or refuses to start); the
client history is checked for linearizability at the end (an UNKNOWN verdict fails).
Same options, same output, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import multiprocessing
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from raftkv.check import HistoryRecorder, check_history
from raftkv.check.history import OperationKind
from raftkv.core import Entry, EntryKind
from raftkv.errors import StorageError
from raftkv.kv import KVStore
from raftkv.server.http_server import Request
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.sim.event_loop import OWNER, SimulatedEventLoop
from raftkv.sim.invariants import InvariantChecker, InvariantViolation
from raftkv.storage.simulated_disk import DiskFaults, SimulatedCrash, SimulatedFileSystem
from raftkv.transport.memory import MemoryHub, MemoryTransport

HOST = "sim"
PEER_PORT_BASE = 9000
KEYS = ("x", "y", "z")
CLIENT_OWNER = "clients"
FAULT_OWNER = "faults"
# A client gives an attempt this long before it calls the outcome unknown and retries.
ATTEMPT_TIMEOUT_SECONDS = 1.0
# After healing, every live node must reach the leader's commit within this much time.
CONVERGENCE_SECONDS = 15.0
LINEARIZABILITY_STATES_MAX = 200_000


@dataclass
class WholeNodeOptions:
    seed: int
    nodes: int = 3
    seconds: float = 6.0  # virtual time under faults, before healing (raft-sim's default)
    faults: bool = True
    clients: int = 3
    # Core-only and whole-node seeds are separate spaces: a seed means one or the other.

    def replay_command(self) -> str:
        return (
            f"raft-sim --whole-node --seed {self.seed} --nodes {self.nodes}"
            f" --seconds {self.seconds:g}" + ("" if self.faults else " --faults none")
        )


@dataclass
class WholeNodeStats:
    callbacks: int = 0
    crashes: int = 0
    disk_crashes: int = 0  # power lost inside a disk operation
    restarts: int = 0
    refused_starts: list[str] = field(default_factory=list)
    partitions: int = 0
    client_ok: int = 0
    client_failed: int = 0
    client_unknown: int = 0
    snapshot_entries: int = 0
    snapshot_trailing_entries: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    max_term: int = 0
    commit_index: int = 0
    linearizability: str = "not checked"


@dataclass
class WholeNodeResult:
    options: WholeNodeOptions
    stats: WholeNodeStats
    violation: InvariantViolation | None

    @property
    def ok(self) -> bool:
        return self.violation is None

    def report_lines(self) -> list[str]:
        options, stats = self.options, self.stats
        lines = [
            f"raft-sim --whole-node seed={options.seed} nodes={options.nodes}"
            f" seconds={options.seconds:g} faults={'all' if options.faults else 'none'}",
            f"callbacks: {stats.callbacks}  max term: {stats.max_term}"
            f"  commit index: {stats.commit_index}",
            f"faults: crash={stats.crashes} (inside a disk operation {stats.disk_crashes})"
            f" restart={stats.restarts} partition={stats.partitions}",
            f"snapshots: every {stats.snapshot_entries} entries, keeping"
            f" {stats.snapshot_trailing_entries}; taken={stats.snapshots_taken}"
            f" installed={stats.snapshots_installed}",
            f"client ops: ok={stats.client_ok} failed={stats.client_failed}"
            f" unknown={stats.client_unknown}",
            f"linearizability: {stats.linearizability}",
        ]
        for refusal in stats.refused_starts:
            lines.append(f"refused to start: {refusal}")
        if self.violation is None:
            lines.append("result: OK")
        else:
            lines += [
                f"VIOLATION: {self.violation}",
                f"seed: {options.seed}",
                f"replay: {options.replay_command()}",
            ]
        return lines


class _ObservedStore(KVStore):
    """The KV store, reporting every apply and restore to the invariant checker."""

    def __init__(self, simulation: WholeNodeSimulation, node_id: int) -> None:
        super().__init__()
        self._simulation = simulation
        self._node_id = node_id
        self.server: RaftServer | None = None

    def apply(self, index: int, command: bytes) -> Any:
        result = super().apply(index, command)
        server = self.server
        term = server.node.log.term(index) if server is not None else None
        self._simulation.checker.on_apply(
            self._node_id, Entry(term or 0, index, EntryKind.NORMAL, command), self.applied_hash
        )
        return result

    def restore(self, data: bytes) -> None:
        super().restore(data)
        self._simulation.checker.on_restore(self._node_id, self.applied_index, self.applied_hash)


class _Machine:
    """One simulated computer: its disk outlives the server processes it runs."""

    def __init__(self, node_id: int, disk: SimulatedFileSystem) -> None:
        self.id = node_id
        self.disk = disk
        self.server: RaftServer | None = None
        self.incarnation = 0
        self.refused: str | None = None
        # (index, term) of the newest committed entry its WAL held after a sync.
        self.durable = (0, 0)

    @property
    def owner(self) -> tuple[int, int]:
        return (self.id, self.incarnation)


class WholeNodeSimulation:
    def __init__(self, options: WholeNodeOptions) -> None:
        self.options = options
        seeds = random.Random(options.seed)
        self.rng = random.Random(seeds.getrandbits(64))
        # The abstract methods it leaves out (sockets, pipes, signals) are never called here.
        self.loop = SimulatedEventLoop(random.Random(seeds.getrandbits(64)))  # type: ignore[abstract]
        self.hub = MemoryHub(random.Random(seeds.getrandbits(64)))
        self.hub.latency_seconds = (0.0002, 0.004)
        self.node_ids = list(range(1, options.nodes + 1))
        # Drawn per seed: small intervals and few trailing entries make snapshots, installs
        # and compaction (and their races with everything else) happen often.
        tuning = random.Random(seeds.getrandbits(64))
        self.snapshot_entries = tuning.choice((3, 10, 30))
        self.snapshot_trailing_entries = tuning.choice((0, 2, 5))
        faults = DiskFaults(crash_bit_flip_rate=0.02) if options.faults else DiskFaults()
        self.machines = {
            node_id: _Machine(
                node_id, SimulatedFileSystem(random.Random(seeds.getrandbits(64)), faults)
            )
            for node_id in self.node_ids
        }
        self.checker = InvariantChecker()
        self.stats = WholeNodeStats()
        self.recorder = HistoryRecorder()
        self.issuing = True
        self._next_value = 1
        self._violation: InvariantViolation | None = None

    # --- processes ----------------------------------------------------------------------
    def _node_options(self, node_id: int) -> NodeOptions:
        return NodeOptions(
            node_id=node_id,
            data_dir=f"/disk/node-{node_id}",
            listen=(HOST, PEER_PORT_BASE + node_id),
            client_listen=(HOST, PEER_PORT_BASE - 1000 + node_id),
            peers={
                peer: (HOST, PEER_PORT_BASE + peer) for peer in self.node_ids if peer != node_id
            },
            seed=self.options.seed * 1000 + node_id,
            snapshot_entries=self.snapshot_entries,
            snapshot_trailing_entries=self.snapshot_trailing_entries,
        )

    def start(self, node_id: int) -> None:
        machine = self.machines[node_id]
        machine.incarnation += 1
        store = _ObservedStore(self, node_id)
        server = RaftServer(
            self._node_options(node_id),
            store,
            transport_factory=functools.partial(MemoryTransport, self.hub),
            filesystem=machine.disk,
            listen_for_clients=False,
        )
        store.server = server
        machine.server = server
        self._in_process(machine.owner, self._boot(machine, server))

    def _in_process(self, owner: object, coroutine: Any) -> None:
        context = contextvars.copy_context()
        context.run(OWNER.set, owner)
        context.run(self.loop.create_task, coroutine)

    async def _boot(self, machine: _Machine, server: RaftServer) -> None:
        try:
            await server.start()
        except (StorageError, ValueError) as error:
            # Refusing to start is right only if the disk lost or damaged what it held.
            machine.server = None
            machine.refused = f"node {machine.id}: {error}"
            self.stats.refused_starts.append(machine.refused)
            return
        node = server.node
        index, term = machine.durable
        if index > node.log.snapshot_index and node.log.term(index) != term:
            self._fail(
                "Durability",
                f"node {machine.id} restarted without entry {index}/{term} it had made"
                f" durable (its log ends at {node.log.last_index}/{node.log.last_term})",
            )
        self._track_durable(machine, server)
        self.checker.on_start(machine.id)

    def _track_durable(self, machine: _Machine, server: RaftServer) -> None:
        """After every sync that returned, record the newest committed entry the WAL
        holds: durable and never truncated, so every later incarnation must hold it (or
        refuse to start). Uncommitted entries may legitimately vanish: a later leader
        truncates them, and a crash may keep part of that unsynced truncation."""
        storage = server.storage
        sync = storage.sync

        def sync_and_record() -> None:
            sync()
            index = min(storage.last_index(), server.node.log.committed)
            term = storage.term(index)
            if term is not None and index > machine.durable[0]:
                machine.durable = (index, term)

        storage.sync = sync_and_record  # type: ignore[method-assign]

    def crash(self, node_id: int) -> None:
        machine = self.machines[node_id]
        if machine.server is None:
            return
        self.stats.crashes += 1
        self.loop.kill(machine.owner)
        self.loop.bury(machine.server)
        self.hub.crash((HOST, PEER_PORT_BASE + node_id))
        machine.disk.crash()
        machine.server = None
        self.checker.on_crash(node_id)

    # --- checking -----------------------------------------------------------------------
    def _fail(self, invariant: str, detail: str) -> None:
        if self._violation is None:
            self._violation = self.checker.fail(invariant, detail)

    def _after_callback(self) -> None:
        checker = self.checker
        checker.now = int(self.loop.time() * 1000)
        for machine in self.machines.values():
            if machine.disk.powered_off:
                # A scheduled power loss struck inside a disk operation.
                self.stats.disk_crashes += 1
                self.crash(machine.id)
                continue
            server = machine.server
            if server is None or not hasattr(server, "node"):
                continue
            node = server.node
            try:
                checker.observe(machine.id, node)
                if node.role == "leader":
                    checker.check_lease(machine.id, node, server.lease_usable())
            except InvariantViolation as violation:
                if self._violation is None:
                    self._violation = violation
            self.stats.max_term = max(self.stats.max_term, node.term)
        for context in self.loop.unhandled:
            error = context.get("exception")
            if not isinstance(error, SimulatedCrash) and "destroyed" not in str(
                context.get("message")
            ):
                self._fail("Unhandled exception", f"{context.get('message')}: {error!r}")
        self.loop.unhandled.clear()

    # --- faults -------------------------------------------------------------------------
    async def _faults(self) -> None:
        rng = self.rng
        while self.issuing:
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            if not self.issuing:
                return  # healed meanwhile: no fault after the heal
            draw = rng.random()
            alive = [m.id for m in self.machines.values() if m.server is not None]
            down = [m.id for m in self.machines.values() if m.server is None and not m.refused]
            if draw < 0.12 and alive:
                self.crash(rng.choice(alive))
            elif draw < 0.2 and alive:
                # A power loss inside one of the next disk operations of a node.
                self.machines[rng.choice(alive)].disk.schedule_crash(rng.randint(1, 40))
            elif draw < 0.45 and down:
                self.stats.restarts += 1
                self.start(rng.choice(down))
            elif draw < 0.55:
                self.stats.partitions += 1
                self.hub.isolate(rng.choice(self.node_ids))
            elif draw < 0.65:
                self.hub.heal()
            elif draw < 0.7:
                self.hub.set_drop_probability(rng.choice((0.0, 0.05, 0.2)))

    def heal(self) -> None:
        self.hub.heal()
        self.hub.set_drop_probability(0.0)
        for machine in self.machines.values():
            machine.disk.cancel_crash()
            if machine.server is None and not machine.refused:
                self.stats.restarts += 1
                self.start(machine.id)

    # --- clients ------------------------------------------------------------------------
    async def _client(self, number: int) -> None:
        rng = self.rng
        session = f"w{number}"
        seq = 0
        seen_index = 0
        target = rng.choice(self.node_ids)
        while self.issuing:
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            key = rng.choice(KEYS)
            draw = rng.random()
            kind: OperationKind = "get" if draw < 0.4 else "del" if draw < 0.5 else "put"
            value = None
            if kind == "put":
                value = f"{number}.{self._next_value}"
                self._next_value += 1
            handle = self.recorder.invoke(
                f"w{number}", kind, key, time=self.loop.time(), value=value
            )
            body: dict[str, object] = {}
            if kind != "get":
                seq += 1
                body = {"client_id": session, "seq": seq, "after_index": seen_index}
                if value is not None:
                    body["value"] = value
            maybe_applied = False
            deadline = self.loop.time() + 4 * ATTEMPT_TIMEOUT_SECONDS
            while True:
                if self.loop.time() > deadline or not self.issuing:
                    if maybe_applied:
                        self._complete(handle, "unknown")
                    else:
                        self._complete(handle, "fail", error="timeout")
                    break
                answer = await self._call(target, kind, key, body)
                status, payload = answer
                if status == 200:
                    index = int(payload.get("index", 0))
                    seen_index = max(seen_index, index)
                    result = payload.get("value") if kind == "get" else None
                    self._complete(handle, "ok", result=result)
                    break
                error = payload.get("error")
                if error == "not_found":
                    seen_index = max(seen_index, int(payload.get("index", 0)))
                    self._complete(handle, "ok", error="not_found")
                    break
                if error == "session_expired":
                    session, seq = f"{session}+", 0
                    self._complete(handle, "unknown" if maybe_applied else "fail", error=error)
                    break
                if error in (None, "timeout", "unreachable") or payload.get("outcome"):
                    maybe_applied = maybe_applied or kind != "get"
                leader = payload.get("leader_id")
                target = leader if isinstance(leader, int) else rng.choice(self.node_ids)
                await asyncio.sleep(rng.uniform(0.01, 0.05))

    async def _call(
        self, target: int, kind: str, key: str, body: dict[str, object]
    ) -> tuple[int, dict[str, Any]]:
        """One HTTP request, handled by the target's real API in the target's process: a
        node that dies meanwhile never answers (the client's timeout then decides)."""
        machine = self.machines[target]
        server = machine.server
        if server is None or server.api is None:
            return 503, {"error": "unreachable"}
        method = {"get": "GET", "put": "PUT", "del": "DELETE"}[kind]
        request = Request(method, f"/v1/kv/{key}", {}, msgspec.json.encode(body), True)
        answer: asyncio.Future[tuple[int, dict[str, Any]]] = self.loop.create_future()

        async def serve() -> None:
            assert server.api is not None
            response = await server.api.handle(request)
            if not answer.done():
                answer.set_result((response.status, msgspec.json.decode(response.body)))

        self._in_process(machine.owner, serve())
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                return await answer
        except TimeoutError:
            return 504, {"error": "timeout"}

    def _complete(
        self, handle: int, status: str, *, result: str | None = None, error: str | None = None
    ) -> None:
        time = None if status == "unknown" else self.loop.time()
        self.recorder.complete(handle, status, time=time, result=result, error=error)  # type: ignore[arg-type]
        if status == "ok":
            self.stats.client_ok += 1
        elif status == "fail":
            self.stats.client_failed += 1
        else:
            self.stats.client_unknown += 1

    # --- the run ------------------------------------------------------------------------
    def converged(self) -> bool:
        live = [m.server for m in self.machines.values() if m.server is not None]
        nodes = [s.node for s in live if hasattr(s, "node")]
        leaders = [n for n in nodes if n.role == "leader"]
        if len(nodes) != len(live) or len(leaders) != 1:
            return False
        commit = leaders[0].log.committed
        return all(s.applied_index >= commit for s in live)

    def run(self) -> WholeNodeResult:
        options = self.options
        logging.getLogger("raftkv").setLevel(logging.CRITICAL + 1)
        self.loop.after_callback = self._after_callback

        def stop() -> bool:
            return self._violation is not None

        try:
            for node_id in self.node_ids:
                self.start(node_id)
            if options.faults:
                self._in_process(FAULT_OWNER, self._faults())
            for number in range(1, options.clients + 1):
                self._in_process(CLIENT_OWNER, self._client(number))
            self.loop.run_until(stop, options.seconds)
            self.issuing = False
            self.heal()
            refused = sum(1 for m in self.machines.values() if m.refused)
            quorum_alive = refused <= (len(self.node_ids) - 1) // 2
            limit = self.loop.time() + CONVERGENCE_SECONDS
            if (
                self._violation is None
                and not self.loop.run_until(lambda: stop() or self.converged(), limit)
                and quorum_alive
            ):
                self._fail("Liveness", f"no convergence within {CONVERGENCE_SECONDS:g} s")
            # Let the clients' last attempts finish or time out.
            self.loop.run_until(stop, self.loop.time() + 2 * ATTEMPT_TIMEOUT_SECONDS)
            if self._violation is None:
                self._check_history()
        finally:
            self.loop.after_callback = None
            logging.getLogger("raftkv").setLevel(logging.NOTSET)
        self.stats.callbacks = self.loop.callbacks_run
        self.stats.snapshot_entries = self.snapshot_entries
        self.stats.snapshot_trailing_entries = self.snapshot_trailing_entries
        self.stats.commit_index = self.checker.committed_index
        for machine in self.machines.values():
            server = machine.server
            if server is not None and hasattr(server, "metrics"):
                self.stats.snapshots_taken += int(server.metrics.snapshots_taken._value.get())
                self.stats.snapshots_installed += int(
                    server.metrics.snapshots_installed._value.get()
                )
        return WholeNodeResult(options, self.stats, self._violation)

    def _check_history(self) -> None:
        result = check_history(
            self.recorder.history(), max_states=LINEARIZABILITY_STATES_MAX, minimize=True
        )
        verdict = {True: "OK", False: "NOT LINEARIZABLE", None: "UNKNOWN (search budget)"}
        self.stats.linearizability = f"{verdict[result.ok]} ({result.operation_count} operations)"
        if result.ok is False:
            self._fail("Linearizability", result.explain())
        elif result.ok is None:
            self._fail("Linearizability", "UNKNOWN: the checker's search budget ran out")


def run_whole_node(options: WholeNodeOptions) -> WholeNodeResult:
    return WholeNodeSimulation(options).run()


def _report_lines(options: WholeNodeOptions) -> list[str]:
    return run_whole_node(options).report_lines()


def sweep_whole_node(options: list[WholeNodeOptions], jobs: int = 1) -> Iterator[list[str]]:
    """Each run's report, in the order given; with `jobs` above 1 in worker processes
    (forked where possible, as the core-only sweep does). Reports do not depend on it."""
    if jobs <= 1 or len(options) <= 1:
        for one in options:
            yield _report_lines(one)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(options)), mp_context=context) as pool:
        yield from pool.map(_report_lines, options)
