"""The nemesis: a fault schedule drawn from a seed, and its execution against a cluster.

The schedule is pure (seed, length, kinds, nodes -> faults), so a seed names a run's faults
exactly; where they land (which node is leader then) depends on the cluster. Every kind asked
for comes once, in a seeded order, before any comes twice, and the first round is squeezed
into the run's length, so even a short run sees each kind.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from raftkv.chaos.cluster import ChaosCluster

FaultKind = Literal["kill", "pause", "partition", "transfer", "membership"]
FAULT_KINDS: tuple[FaultKind, ...] = ("kill", "pause", "partition", "transfer", "membership")
# A fault lasts this long at most, and the quiet gap after it is at least a third of that:
# long enough for an election (timeouts are hundreds of ms), short enough for many faults.
FAULT_SECONDS_MAX = 4.0
FAULT_SECONDS_MIN = 0.5
START_SECONDS = 0.5  # let the clients get going before the first fault
# When a heal overran the schedule, the next fault still waits this long after it.
GAP_AFTER_LATE_HEAL_SECONDS = 0.3
# Healing one fault (a restart, a re-join) waits at most this long for the cluster.
HEAL_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    start: float  # seconds after the fault phase starts
    duration: float
    # Which node: "leader" or a random member ("any"), picked when the fault starts, with
    # `choice` (a number in [0, 1)) so the pick is seeded too.
    target: Literal["leader", "any"]
    choice: float


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """`kill,pause` or `all`; an empty string is no nemesis."""
    if text == "all":
        return FAULT_KINDS
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown nemesis kind {unknown[0]!r} (one of {', '.join(FAULT_KINDS)})")
    return tuple(k for k in FAULT_KINDS if k in kinds)


def schedule(seed: int, seconds: float, kinds: Sequence[FaultKind]) -> list[Fault]:
    """Faults for a fault phase of `seconds`, none overlapping, all over before it ends."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    if not kinds:
        return faults
    first_round = list(kinds)
    rng.shuffle(first_round)
    # The first round shares a short phase evenly (a fault, then a gap half as long); in a
    # long one it takes what it needs and random faults follow.
    slot = min((seconds - START_SECONDS) / len(first_round), FAULT_SECONDS_MAX * 1.5)
    now = START_SECONDS
    for kind in first_round:
        duration = max(FAULT_SECONDS_MIN, min(FAULT_SECONDS_MAX, slot * 2 / 3))
        faults.append(_fault(rng, kind, now, duration))
        now += max(slot, duration * 1.5)
    while True:
        kind = rng.choice(list(kinds))
        duration = rng.uniform(1.0, FAULT_SECONDS_MAX)
        gap = rng.uniform(duration / 3, duration)
        if now + duration + gap > seconds:
            return faults
        faults.append(_fault(rng, kind, now, duration))
        now += duration + gap


def _fault(rng: random.Random, kind: FaultKind, start: float, duration: float) -> Fault:
    target: Literal["leader", "any"] = "leader" if rng.random() < 0.6 else "any"
    return Fault(kind, round(start, 3), round(duration, 3), target, rng.random())


class NemesisLog:
    """nemesis.jsonl: one line per fault start and end, with wall time."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.events: list[dict[str, object]] = []

    def record(self, event: str, kind: str, at: float | None = None, **details: object) -> None:
        """`at`: when it happened (wall time), if not now."""
        line = {"time": time.time() if at is None else at, "event": event, "kind": kind}
        line |= details
        self.events.append(line)
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()


def load_events(path: Path) -> list[dict[str, object]]:
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


class Nemesis:
    """Carries out a schedule. Each fault is undone (`heal`) before the next one starts, and
    by `heal_all` whatever happens, so the cluster ends the fault phase whole."""

    def __init__(self, cluster: ChaosCluster, log: NemesisLog) -> None:
        self.cluster = cluster
        self.log = log
        self._undo: Callable[[], None] | None = None
        self._kind: FaultKind | None = None

    def run(self, faults: Sequence[Fault], phase_start: float, stopped: Callable[[], bool]) -> None:
        """Each fault at its planned time, or, when healing the one before overran (a
        re-join can take seconds), a short pause after it: a fault always lasts its planned
        duration, so a late one is shifted rather than cut short."""
        ready = phase_start
        for fault in faults:
            if not self._sleep_until(max(phase_start + fault.start, ready), stopped):
                return
            began = time.monotonic()
            self.start(fault)
            self._sleep_until(began + fault.duration, stopped)
            self.heal()
            ready = time.monotonic() + GAP_AFTER_LATE_HEAL_SECONDS

    def _sleep_until(self, moment: float, stopped: Callable[[], bool]) -> bool:
        while (left := moment - time.monotonic()) > 0:
            if stopped():
                return False
            time.sleep(min(0.05, left))  # a poll interval, so `stopped` is seen promptly
        return not stopped()

    def _target(self, fault: Fault) -> int:
        members = sorted(n for n, node in self.cluster.nodes.items() if node.alive)
        if fault.target == "leader":
            leader = self.cluster.leader()
            if leader is not None:
                return leader
        return members[int(fault.choice * len(members))]

    def start(self, fault: Fault) -> None:
        # Logged when it began: a removal or a transfer takes a while to carry out.
        began = time.time()
        node_id = self._target(fault)
        self._kind = fault.kind
        details: dict[str, object] = {"node": node_id, "planned_seconds": fault.duration}
        if fault.kind == "kill":
            self.cluster.kill(node_id)
            self._undo = lambda: self.cluster.start(node_id)
        elif fault.kind == "pause":
            self.cluster.signal(node_id, signal.SIGSTOP)
            self._undo = lambda: self.cluster.signal(node_id, signal.SIGCONT)
        elif fault.kind == "partition":
            others = [n for n in self.cluster.nodes if n != node_id]
            self.cluster.cut([node_id], others)
            details["isolated"] = [node_id]
            self._undo = self.cluster.heal
        elif fault.kind == "transfer":
            details |= self._transfer(fault)
            self._undo = lambda: None
        else:
            details |= self._change_membership(node_id)
        self.log.record("start", fault.kind, at=began, **details)

    def _transfer(self, fault: Fault) -> dict[str, object]:
        leader = self.cluster.wait_leader(HEAL_TIMEOUT_SECONDS)
        followers = sorted(n for n in self.cluster.nodes if n != leader)
        to = followers[int(fault.choice * len(followers))]
        with self.cluster.client() as client:
            try:
                result = client.transfer_leader(to)
                return {"node": leader, "to": to, "ok": bool(result.raw.get("ok", False))}
            except Exception as error:  # a refused transfer is an outcome, not a failure
                return {"node": leader, "to": to, "ok": False, "error": str(error)}

    def _change_membership(self, node_id: int) -> dict[str, object]:
        """Remove `node_id`; the undo adds it back with an empty data dir (`--join`), as an
        operator replaces a lost machine."""
        cluster = self.cluster
        self._remove(node_id)

        def rejoin() -> None:
            cluster.wipe(node_id)
            cluster.start(node_id, join=cluster.wait_leader(HEAL_TIMEOUT_SECONDS))
            self._wait_voter(node_id, present=True)

        self._undo = rejoin
        return {"node": node_id, "change": "remove, then re-add empty"}

    def _remove(self, node_id: int) -> None:
        with self.cluster.client(timeout=10) as client:
            client.remove_member(node_id)
        self._wait_voter(node_id, present=False)
        process = self.cluster.nodes[node_id].process
        if process is not None:
            try:
                process.wait(timeout=10)  # a removed node stops by itself
            except Exception:
                self.cluster.kill(node_id)

    def _wait_voter(self, node_id: int, present: bool) -> None:
        def settled() -> bool:
            leader = self.cluster.leader()
            status = self.cluster.status(leader) if leader is not None else None
            voters = status.get("voters") if status is not None else None
            return isinstance(voters, list) and (node_id in voters) == present

        what = f"node {node_id} {'a voter' if present else 'removed'}"
        self.cluster.wait(what, settled, HEAL_TIMEOUT_SECONDS)

    def heal(self) -> None:
        undo, kind = self._undo, self._kind
        self._undo = self._kind = None
        if undo is not None and kind is not None:
            undo()
            self.log.record("end", kind)

    def heal_all(self) -> None:
        """Undo the fault in progress, and make sure every node runs, unpaused, linked."""
        try:
            self.heal()
        finally:
            self.cluster.heal()
            for node_id, node in self.cluster.nodes.items():
                if node.paused:
                    self.cluster.signal(node_id, signal.SIGCONT)
