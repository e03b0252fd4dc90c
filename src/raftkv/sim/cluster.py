"""The simulation: N nodes, the network, faults and clients on one virtual clock.

One tick: faults strike or heal; every running node ticks; clients act; the messages due now
are delivered; then every node's Readies are carried out until it is quiet. The invariant
checker looks at a node after each tick, step and Ready.

Every random choice comes from `random.Random(seed)`: the network, the fault schedule and the
clients each get a child stream drawn from it, and each core gets `node_rng(seed, id, ...)`.
Nothing reads a clock or iterates a set unsorted, so a seed replays byte for byte.

Tests drive it through the same API the fault injector uses: `partition`, `block`, `heal`,
`crash`, `restart`, `run`, `run_until`, `propose`, `leader`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final, Protocol

from raftkv.core.membership import Membership
from raftkv.core.node import RaftNode, Role
from raftkv.kv.commands import Command, SharedDecoder, encode_command
from raftkv.kv.store import KVStore
from raftkv.sim.clients import Workload
from raftkv.sim.driver import CrashPoint, SimNode
from raftkv.sim.faults import FaultInjector
from raftkv.sim.invariants import InvariantChecker, LogView
from raftkv.sim.network import Network
from raftkv.sim.operator import Operator
from raftkv.sim.options import CoreTuning, SimulationOptions
from raftkv.sim.stale_reads import StaleReadProbe
from raftkv.sim.stats import Stats
from raftkv.sim.transcript import Transcript, TranscriptObserver

_LEADER: Final = Role.LEADER  # a module constant: `Role.LEADER` is a class lookup on every use

# Rounds of delivery within one tick before the rest waits for the next tick; each round
# is a message hop, and a quiet cluster needs a handful (a vote, an append, its answer).
DELIVERY_ROUNDS_PER_TICK_MAX: Final = 32


class SimulationObserver(TranscriptObserver, Protocol):
    """Sees every transcript event and, after each tick, the whole cluster (read only)."""

    def after_tick(self, simulation: Simulation) -> None: ...

    def after_run(self, simulation: Simulation) -> None:
        """The run ended, possibly cut short inside a tick by a violation."""


class Simulation:
    def __init__(
        self,
        options: SimulationOptions,
        *,
        node_class: type[RaftNode] = RaftNode,
        driver_class: type[SimNode] = SimNode,
        sink: Callable[[str], None] | None = None,
        tuning: CoreTuning | None = None,
        observer: SimulationObserver | None = None,
    ) -> None:
        """`sink` receives the transcript lines (only when `options.verbose`); `tuning`
        overrides the per-seed choice of the core's flow-control limits; `observer` (the
        `--html` replay recorder) sees every event and the cluster after every tick."""
        self.options = options
        self.now = 0
        root = random.Random(options.seed)
        network_rng = random.Random(root.getrandbits(64))
        fault_rng = random.Random(root.getrandbits(64))
        client_rng = random.Random(root.getrandbits(64))
        drawn = CoreTuning.draw(random.Random(root.getrandbits(64)))
        self.tuning = options.tuning_for_run(tuning or drawn)
        operator_rng = random.Random(root.getrandbits(64))
        # Drawn last, so adding the stale-read probe left every other stream as it was.
        stale_read_rng = random.Random(root.getrandbits(64))
        self.stats = Stats()
        # Every replica's store (and the ledger's) decodes an entry's command once between
        # them.
        self.decoder = SharedDecoder()
        self.observer = observer
        self.transcript = Transcript(sink if options.verbose else None, observer)
        self.checker = InvariantChecker()
        self.checker.log_views = self._log_views
        self.network = Network(network_rng, self.stats, self.transcript)
        self.node_ids = list(range(1, options.nodes + 1))
        self.nodes = {node_id: driver_class(node_id, self, node_class) for node_id in self.node_ids}
        self._drivers = [self.nodes[node_id] for node_id in self.node_ids]  # in id order
        # Derived from the seed apart from `root`, so that drawing from it moves no other
        # stream (multi_key_ops).
        multi_key_rng = random.Random(f"{options.seed}/multi-key")
        self.workload = Workload(
            client_rng, self, enabled=options.workload != "none", multi_key_rng=multi_key_rng
        )
        self.stale_reads = StaleReadProbe(
            stale_read_rng,
            self,
            enabled=options.workload != "none",
            reference=self.workload.ledger,  # its apply listener comes first
        )
        self.operator = Operator(
            operator_rng,
            self,
            transfers=options.workload != "none",
            membership_changes=options.workload == "membership",
        )
        if self.operator.membership_changes:
            # The electable-node check counts majorities of a fixed voter set.
            self.checker.log_views = None
        self.faults = FaultInjector(fault_rng, self, options.faults)
        self.checker.election_listeners.append(self.faults.on_election)
        membership = Membership(voters=frozenset(self.node_ids))
        # Every founder holds entry 1 before anyone is looked at.
        for node_id in self.node_ids:
            self.nodes[node_id].start(membership)
            self.network.incarnations[node_id] = 0
        for node_id in self.node_ids:
            self.checker.on_start(node_id)
            self.checker.observe(node_id, self.node(node_id))
        self._process_readies()
        if observer is not None:
            observer.after_tick(self)

    # --- the clock ----------------------------------------------------------------------
    def tick(self) -> None:
        self.now = now = self.now + 1
        checker = self.checker
        checker.now = now
        faults = self.faults
        if faults.active:
            faults.step(now)
        drivers = self._drivers
        for driver in drivers:
            node = driver.node
            if node is None:
                continue
            if driver.paused_until:
                if driver.paused(now):
                    continue
                driver.resume()
                if self.transcript.enabled:
                    self.transcript.line(now, f"fault: node {driver.id} resumes from a pause")
            elif driver.lease_blackout_ticks:
                driver.lease_blackout_ticks -= 1
            # A tick never touches the log or the commit index; it changes what the checker
            # reads only through a role change (an election timeout, a leader stepping
            # down), and a term only changes with the role. Otherwise observing is a no-op.
            role, term = node.role, node.term
            node.tick()
            if node.role is not role or node.term != term:
                checker.observe(driver.id, node)
        if self.operator.active:
            self.operator.tick(now, self.workload.issuing)
        self.workload.tick(now)
        self.stale_reads.tick(now)
        network = self.network
        nodes = self.nodes
        # Deliver, then carry out the Readies, until the tick is quiet: with no latency an
        # answer arrives within the tick, and its consequences too. After the first round only
        # the nodes that received something can have work.
        for driver in drivers:
            driver.process_ready()
        for _ in range(DELIVERY_ROUNDS_PER_TICK_MAX):
            due = network.due(now)
            if not due:
                break
            receivers: set[int] = set()
            for message in due:
                receiver = message.to
                driver = nodes[receiver]
                node = driver.node
                if node is None:  # crashed earlier in this round (a fault between two steps)
                    self.stats.messages_delivered -= 1
                    self.stats.messages_dropped += 1
                    continue
                if driver.paused_until > now:
                    network.hold(now, message, driver.paused_until)
                    continue
                node.step(message)
                checker.observe(receiver, node)
                receivers.add(receiver)
            if faults.active:
                faults.after_delivery_round(now)
            # In id order: set order must not leak into the output.
            for receiver in sorted(receivers):
                nodes[receiver].process_ready()
        else:
            network.postpone(now)
        # Lease safety, for leaders of an older term than the newest elected one (the only
        # ones whose lease the check could refuse; asking the others changes nothing).
        newest_leader_term = checker.newest_leader_term
        for driver in drivers:
            node = driver.node
            if (
                node is not None
                and node.role is _LEADER
                and node.term < newest_leader_term
                and not driver.paused(now)
            ):
                checker.check_lease(driver.id, node, driver.lease_usable())
        self.stats.ticks = now
        if self.observer is not None:
            self.observer.after_tick(self)

    def _process_readies(self) -> None:
        for node_id in self.node_ids:
            self.nodes[node_id].process_ready()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def run_until(self, predicate: Callable[[], bool], max_ticks: int) -> bool:
        """Tick until `predicate()` holds (checked before each tick); False if it never did."""
        for _ in range(max_ticks):
            if predicate():
                return True
            self.tick()
        return predicate()

    # --- faults (the injector's and the tests' API) --------------------------------------
    def crash(self, node_id: int, point: CrashPoint = CrashPoint.NOW) -> None:
        driver = self.nodes[node_id]
        if not driver.alive:
            return
        driver.crash()
        del self.network.incarnations[node_id]
        self.checker.on_crash(node_id)
        self.workload.on_crash(node_id)
        self.stats.crashes += 1
        self.stats.crashes_mid_ready += point is not CrashPoint.NOW
        if self.transcript.enabled:
            self.transcript.line(self.now, f"fault: node {node_id} crashes ({point.value})")

    def restart(self, node_id: int) -> None:
        if self.nodes[node_id].alive:
            return
        self._start(node_id, None)
        self.stats.restarts += 1
        if self.transcript.enabled:
            self.transcript.line(self.now, f"fault: node {node_id} restarts")

    def _start(self, node_id: int, bootstrap: Membership | None) -> None:
        driver = self.nodes[node_id]
        node = driver.start(bootstrap)
        self.network.incarnations[node_id] = driver.incarnation
        self.checker.on_start(node_id)
        self.checker.observe(node_id, node)

    def pause(self, node_id: int, ticks: int) -> None:
        """The process stops for `ticks`: no ticks, no deliveries (messages wait for it)."""
        driver = self.nodes[node_id]
        if not driver.alive:
            return
        driver.paused_until = self.now + ticks
        if self.transcript.enabled:
            self.transcript.line(self.now, f"fault: node {node_id} pauses for {ticks} ticks")

    def partition(self, *groups: list[int] | tuple[int, ...]) -> None:
        """Nodes in different groups cannot reach each other (a node in none is isolated)."""
        self.network.partition(groups, self.node_ids)
        if self.transcript.enabled:
            shown = " | ".join(",".join(str(node_id) for node_id in group) for group in groups)
            self.transcript.line(self.now, f"fault: partition {shown}")

    def isolate(self, node_id: int) -> None:
        self.partition([node_id], [other for other in self.node_ids if other != node_id])

    def block(self, sender: int, receiver: int) -> None:
        """One-way failure: `sender`'s messages to `receiver` are lost."""
        self.network.block(sender, receiver)
        if self.transcript.enabled:
            self.transcript.line(self.now, f"fault: link {sender} -> {receiver} fails")

    def heal_partition(self) -> None:
        self.network.heal_partition()
        if self.transcript.enabled:
            self.transcript.line(self.now, "fault: partition healed")

    def heal_oneway(self) -> None:
        self.network.heal_oneway()
        if self.transcript.enabled:
            self.transcript.line(self.now, "fault: one-way failures healed")

    def heal(self) -> None:
        """Every link works again (crashed nodes stay down)."""
        self.network.heal()
        if self.transcript.enabled:
            self.transcript.line(self.now, "fault: network healed")

    def heal_all(self) -> None:
        """End of the fault phase: no more faults, every link works, every node runs."""
        self.faults.stop()
        self.heal()
        for node_id in self.node_ids:
            driver = self.nodes[node_id]
            driver.crash_point = None
            if driver.paused_until:
                driver.resume()
            self.restart(node_id)
        self._process_readies()

    def set_network(
        self,
        *,
        drop_rate: float | None = None,
        duplicate_rate: float | None = None,
        latency_ticks: int | None = None,
        reorder_rate: float | None = None,
    ) -> None:
        network = self.network
        if drop_rate is not None:
            network.drop_rate = drop_rate
        if duplicate_rate is not None:
            network.duplicate_rate = duplicate_rate
        if latency_ticks is not None:
            network.latency_ticks = latency_ticks
        if reorder_rate is not None:
            network.reorder_rate = reorder_rate

    def set_snapshots(self, interval: int, keep_entries: int = 0) -> None:
        """Every node snapshots every `interval` applied entries (0: never)."""
        for driver in self.nodes.values():
            driver.snapshot_interval = interval
            driver.snapshot_keep_entries = keep_entries

    def _log_views(self) -> list[LogView]:
        return [self.nodes[node_id].log_view() for node_id in self.node_ids]

    # --- queries and client calls -------------------------------------------------------
    def node(self, node_id: int) -> RaftNode:
        node = self.nodes[node_id].node
        assert node is not None, f"node {node_id} is down"
        return node

    def kv(self, node_id: int) -> KVStore:
        return self.nodes[node_id].kv

    def alive(self) -> list[int]:
        return [node_id for node_id in self.node_ids if self.nodes[node_id].alive]

    def leaders(self) -> list[int]:
        return [node_id for node_id in self.alive() if self.node(node_id).role is Role.LEADER]

    def leader(self) -> int | None:
        """The running leader of the highest term, if any."""
        leaders = self.leaders()
        if not leaders:
            return None
        return max(leaders, key=lambda node_id: self.node(node_id).term)

    def propose(self, node_id: int, command: Command) -> tuple[int, int]:
        """Propose directly to a node (raises NotLeader); returns the entry's (index, term).
        The node's Ready is carried out at once, as a real driver does after a proposal."""
        node = self.node(node_id)
        result = node.propose(encode_command(command))
        self.checker.observe(node_id, node)
        self.nodes[node_id].process_ready()
        return result

    def is_committed(self, index: int, term: int) -> bool:
        """Has some node committed entry (index, term)?"""
        terms = self.checker.committed_terms
        return index < len(terms) and terms[index] == term

    def applied_everywhere(self, index: int) -> bool:
        return all(self.nodes[node_id].applied_index >= index for node_id in self.alive())

    def converged(self) -> bool:
        """One leader whose whole log is committed in its term and applied by every node,
        every node running and following it, and no client operation in flight."""
        if len(self.alive()) != len(self.node_ids) or not self.workload.idle:
            return False
        leader_id = self.leader()
        if leader_id is None:
            return False
        leader = self.node(leader_id)
        log, term = leader.log, leader.term
        if log.committed != log.last_index or log.term(log.committed) != term:
            return False
        membership = leader.membership
        if membership.is_joint or membership.voters != frozenset(self.node_ids):
            return False
        for node_id in self.node_ids:
            driver = self.nodes[node_id]
            node = self.node(node_id)
            if driver.applied_index != log.committed or node.term != term:
                return False
            if node_id != leader_id and node.leader_id != leader_id:
                return False
        return True
