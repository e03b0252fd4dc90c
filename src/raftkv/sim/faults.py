"""The fault schedule: which faults strike when, drawn from the fault injector's own random
stream so that a seed replays the same schedule.

Each seed first draws its intensities (drop rate, crash rate, snapshot interval, ...), so a
sweep explores calm and stormy runs alike; then, tick by tick, crashes, partitions and
one-way link failures start and end. `stop()` ends injection for the liveness phase.
"""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

from raftkv.sim.driver import CrashPoint
from raftkv.sim.network import LATENCY_TICKS_CHOICES, REORDER_SPREAD_TICKS

if TYPE_CHECKING:
    from raftkv.sim.cluster import Simulation

# Per-seed intensities: one value of each tuple is drawn per seed.
DROP_RATES = (0.01, 0.05, 0.1, 0.2)
DUPLICATE_RATES = (0.01, 0.05, 0.1)
REORDER_RATES = (0.05, 0.2, 1.0)
CRASH_PROBABILITIES_PER_TICK = (0.001, 0.003, 0.008)
PARTITION_PROBABILITIES_PER_TICK = (0.002, 0.005, 0.01)
ONEWAY_PROBABILITIES_PER_TICK = (0.002, 0.005)
PAUSE_PROBABILITIES_PER_TICK = (0.001, 0.004)
# Leader churn: the share of new leaders disrupted (crashed or isolated) within a few ticks
# of their election, before their entries replicate. Short-lived leaders leave the divergent,
# partly replicated log suffixes that the subtle cases of §5.4 (Figure 8) are made of.
LEADER_CHURN_SHARES = (0.0, 0.3, 0.6)
LEADER_CHURN_DELAY_TICKS = (0, 6)
# Share of leadership transfers after which the old leader goes deaf (every link into it
# fails, its own messages still leave): it goes on believing it leads, and a lease or a
# stale read is only safe if the core stopped trusting its lease when it sent TimeoutNow.
DEAF_AFTER_TRANSFER_SHARES = (0.0, 0.5)
# Applied entries between snapshots, and entries kept behind a snapshot for slow followers.
SNAPSHOT_INTERVALS = (3, 8, 20, 50)
SNAPSHOT_KEEP_ENTRIES = (0, 2, 8)

# How long a crashed node stays down, and a partition or a one-way failure lasts (ticks).
DOWN_TICKS = (1, 200)
PARTITION_TICKS = (5, 300)
ONEWAY_TICKS = (5, 200)
# A process pause (GC, SIGSTOP): often short, sometimes past an election timeout or two.
PAUSE_TICKS = (2, 60)
# Share of pauses that hit the current leader, whose lease is what a pause endangers.
PAUSE_LEADER_SHARE = 0.5
# Where a crash strikes: between steps, or inside a Ready (driver.CrashPoint).
CRASH_POINTS = (
    CrashPoint.NOW,
    CrashPoint.NOW,
    CrashPoint.AFTER_SEND,
    CrashPoint.AFTER_SEND,
    CrashPoint.AFTER_PERSIST,
    CrashPoint.AFTER_SNAPSHOT_SAVE,
)
# A crash armed for inside a Ready strikes anyway after this long without a Ready to persist
# (a follower cut off from its leader may have nothing to write).
ARMED_CRASH_TICKS_MAX = 30
# Share of partitions that isolate the current leader, the most disruptive kind.
ISOLATE_LEADER_SHARE = 0.3


class FaultInjector:
    def __init__(self, rng: random.Random, simulation: Simulation, kinds: frozenset[str]) -> None:
        self._rng = rng
        self._random = rng.random  # bound once: step() draws every tick
        self._simulation = simulation
        self.kinds = kinds
        self.active = False
        # Drawn whatever the kinds, so that one seed's schedule of one kind does not shift
        # when another kind is switched off.
        self.latency_ticks = rng.choice(LATENCY_TICKS_CHOICES)
        self.drop_rate = rng.choice(DROP_RATES)
        self.duplicate_rate = rng.choice(DUPLICATE_RATES)
        self.reorder_rate = rng.choice(REORDER_RATES)
        self.crash_probability = rng.choice(CRASH_PROBABILITIES_PER_TICK)
        self.partition_probability = rng.choice(PARTITION_PROBABILITIES_PER_TICK)
        self.oneway_probability = rng.choice(ONEWAY_PROBABILITIES_PER_TICK)
        self.pause_probability = rng.choice(PAUSE_PROBABILITIES_PER_TICK)
        self.leader_churn_share = rng.choice(LEADER_CHURN_SHARES)
        self.deaf_after_transfer_share = rng.choice(DEAF_AFTER_TRANSFER_SHARES)
        self.snapshot_interval = rng.choice(SNAPSHOT_INTERVALS)
        self.snapshot_keep_entries = rng.choice(SNAPSHOT_KEEP_ENTRIES)
        self._restart_tick: dict[int, int] = {}
        self._partition_end_tick: int | None = None
        self._oneway_end_tick: int | None = None
        # A node to deafen once its TimeoutNow leaves (a leadership transfer under way).
        self.deafen_on_timeout_now: int | None = None
        self._churn: list[tuple[int, int, int]] = []  # (tick, leader, term) to disrupt

    def describe(self) -> str:
        parts = [f"latency={self.latency_ticks}"]
        kinds = self.kinds
        if "drop" in kinds:
            parts.append(f"drop={self.drop_rate}")
        if "duplicate" in kinds:
            parts.append(f"duplicate={self.duplicate_rate}")
        if "reorder" in kinds:
            parts.append(f"reorder={self.reorder_rate}x+1..{REORDER_SPREAD_TICKS}")
        if "crash" in kinds:
            parts.append(f"crash/tick={self.crash_probability}")
        if "partition" in kinds:
            parts.append(f"partition/tick={self.partition_probability}")
        if "oneway" in kinds:
            parts.append(f"oneway/tick={self.oneway_probability}")
        if "pause" in kinds:
            parts.append(f"pause/tick={self.pause_probability}")
        if self._churn_kinds():
            parts.append(f"leader-churn={self.leader_churn_share}")
        if "oneway" in kinds:
            parts.append(f"deaf-after-transfer={self.deaf_after_transfer_share}")
        if "snapshot" in kinds:
            parts.append(
                f"snapshot every {self.snapshot_interval} keep {self.snapshot_keep_entries}"
            )
        return " ".join(parts)

    def start(self) -> None:
        simulation = self._simulation
        kinds = self.kinds
        self.active = True
        network = simulation.network
        network.latency_ticks = self.latency_ticks
        network.drop_rate = self.drop_rate if "drop" in kinds else 0.0
        network.duplicate_rate = self.duplicate_rate if "duplicate" in kinds else 0.0
        if "reorder" in kinds:
            network.reorder_rate = self.reorder_rate
        if "snapshot" in kinds:
            simulation.set_snapshots(self.snapshot_interval, self.snapshot_keep_entries)

    def stop(self) -> None:
        """No new faults; the network stops losing, duplicating and reordering."""
        self.active = False
        network = self._simulation.network
        network.drop_rate = network.duplicate_rate = network.reorder_rate = 0.0
        self._restart_tick.clear()
        self._partition_end_tick = self._oneway_end_tick = None
        self._churn.clear()
        self.deafen_on_timeout_now = None

    def _churn_kinds(self) -> list[str]:
        return [kind for kind in ("crash", "partition") if kind in self.kinds]

    def step(self, now: int) -> None:
        simulation = self._simulation
        random = self._random
        kinds = self.kinds
        if self._restart_tick:
            for node_id in sorted(self._restart_tick):
                driver = simulation.nodes[node_id]
                if driver.alive and driver.crash_point is not None:
                    if now - driver.crash_armed_tick > ARMED_CRASH_TICKS_MAX:
                        simulation.crash(node_id, CrashPoint.NOW)
                elif now >= self._restart_tick[node_id]:
                    del self._restart_tick[node_id]
                    simulation.restart(node_id)
        if self._partition_end_tick is not None and now >= self._partition_end_tick:
            self._partition_end_tick = None
            simulation.heal_partition()
        if self._oneway_end_tick is not None and now >= self._oneway_end_tick:
            self._oneway_end_tick = None
            simulation.heal_oneway()

        if self._churn:
            self._leader_churn(now)
        if "crash" in kinds and random() < self.crash_probability:
            self._crash_one(now)
        if (
            "partition" in kinds
            and self._partition_end_tick is None
            and random() < self.partition_probability
        ):
            self._partition(now)
        if (
            "oneway" in kinds
            and self._oneway_end_tick is None
            and random() < self.oneway_probability
        ):
            self._oneway(now)
        if "pause" in kinds and random() < self.pause_probability:
            self._pause_one(now)

    def after_transfer(self, old_leader: int) -> None:
        """The workload just asked `old_leader` to hand over leadership: maybe make it deaf
        as soon as its TimeoutNow leaves (see DEAF_AFTER_TRANSFER_SHARES)."""
        if not self.active or "oneway" not in self.kinds or self._oneway_end_tick is not None:
            return
        if self._rng.random() < self.deaf_after_transfer_share:
            self.deafen_on_timeout_now = old_leader

    def on_timeout_now_sent(self, sender: int) -> None:
        """Called by the driver when `sender` sent TimeoutNow while armed to go deaf."""
        simulation = self._simulation
        self.deafen_on_timeout_now = None
        if not self.active or self._oneway_end_tick is not None:
            return
        self._oneway_end_tick = simulation.now + self._rng.randint(*ONEWAY_TICKS)
        simulation.stats.count_fault("deaf-after-transfer")
        for other in simulation.node_ids:
            if other != sender:
                simulation.block(other, sender)

    def on_election(self, term: int, leader: int) -> None:
        """Maybe schedule this new leader's disruption (see LEADER_CHURN_SHARES)."""
        if not self.active or not self._churn_kinds() or not self.leader_churn_share:
            return
        rng = self._rng
        if rng.random() < self.leader_churn_share:
            delay = rng.randint(*LEADER_CHURN_DELAY_TICKS)
            self._churn.append((self._simulation.now + delay, leader, term))
            self._churn.sort()

    def after_delivery_round(self, now: int) -> None:
        """Between delivery rounds of a tick: a leader elected in this round can be cut off
        before its first Ready leaves (with no latency, it would replicate within the tick)."""
        if self._churn and self._churn[0][0] <= now:
            self._leader_churn(now)

    def _leader_churn(self, now: int) -> None:
        simulation = self._simulation
        kinds = self._churn_kinds()
        rng = self._rng
        while self._churn and self._churn[0][0] <= now:
            _, leader, term = self._churn.pop(0)
            node = simulation.nodes[leader].node
            if node is None or node.term != term or leader != simulation.leader():
                continue
            simulation.stats.count_fault("leader-churn")
            if rng.choice(kinds) == "crash":
                self._crash_one(now, leader, immediate=True)
            elif self._partition_end_tick is None:
                self._partition_end_tick = now + rng.randint(*PARTITION_TICKS)
                simulation.partition([leader], [n for n in simulation.node_ids if n != leader])

    def _crash_one(self, now: int, node_id: int | None = None, immediate: bool = False) -> None:
        simulation = self._simulation
        rng = self._rng
        candidates = [
            candidate
            for candidate in simulation.node_ids
            if simulation.nodes[candidate].alive and candidate not in self._restart_tick
        ]
        if node_id is None:
            if not candidates:
                return
            node_id = rng.choice(candidates)
        elif node_id not in candidates:
            return
        point = CrashPoint.NOW if immediate else rng.choice(CRASH_POINTS)
        self._restart_tick[node_id] = now + rng.randint(*DOWN_TICKS)
        simulation.stats.count_fault("crash")
        if point is CrashPoint.NOW:
            simulation.crash(node_id, point)
        else:
            simulation.nodes[node_id].arm_crash(point, now)

    def _pause_one(self, now: int) -> None:
        simulation = self._simulation
        rng = self._rng
        running = [
            node_id
            for node_id in simulation.node_ids
            if simulation.nodes[node_id].alive and not simulation.nodes[node_id].paused(now)
        ]
        if not running:
            return
        leader = simulation.leader()
        if leader in running and rng.random() < PAUSE_LEADER_SHARE:
            node_id = leader
        else:
            node_id = rng.choice(running)
        simulation.stats.count_fault("pause")
        simulation.pause(node_id, rng.randint(*PAUSE_TICKS))

    def _partition(self, now: int) -> None:
        simulation = self._simulation
        rng = self._rng
        ids = list(simulation.node_ids)
        leader = simulation.leader()
        if leader is not None and rng.random() < ISOLATE_LEADER_SHARE:
            groups = [[leader], [node_id for node_id in ids if node_id != leader]]
        else:
            rng.shuffle(ids)
            group_count = 2 if len(ids) < 5 or rng.random() < 0.7 else 3
            cuts = sorted(rng.sample(range(1, len(ids)), min(group_count, len(ids)) - 1))
            bounds = [0, *cuts, len(ids)]
            groups = [sorted(ids[low:high]) for low, high in itertools.pairwise(bounds)]
        self._partition_end_tick = now + rng.randint(*PARTITION_TICKS)
        simulation.stats.count_fault("partition")
        simulation.partition(*groups)

    def _oneway(self, now: int) -> None:
        simulation = self._simulation
        rng = self._rng
        ids = simulation.node_ids
        if len(ids) < 2:
            return
        node_id = rng.choice(ids)
        shape = rng.random()
        others = [other for other in ids if other != node_id]
        if shape < 0.4:
            links = [(node_id, rng.choice(others))]
        elif shape < 0.7:
            links = [(node_id, other) for other in others]  # it can hear but not speak
        else:
            links = [(other, node_id) for other in others]  # it can speak but not hear
        self._oneway_end_tick = now + rng.randint(*ONEWAY_TICKS)
        simulation.stats.count_fault("oneway")
        for sender, receiver in links:
            simulation.block(sender, receiver)
