"""One complete run: the fault phase, then healing and the liveness bound, then the final
checks and the linearizability check of the client history."""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from raftkv.check import check_history
from raftkv.core.node import RaftNode
from raftkv.sim.cluster import Simulation, SimulationObserver
from raftkv.sim.driver import SimNode
from raftkv.sim.invariants import InvariantViolation
from raftkv.sim.options import (
    LIVENESS_BOUND_TICKS,
    LIVENESS_ELECTION_TIMEOUTS,
    SimulationOptions,
    format_faults,
)
from raftkv.sim.stats import Stats

# Linearizability search budget per key, for both simulators. Without a time budget the
# verdict depends on the history alone, so a seed replays it; running out yields "unknown",
# which fails the run (nothing was proven). 200,000 left 4 of 22,000 swept seeds unknown
# (core 972157, 977077 and, 5 nodes with membership changes, 980673; whole-node 961122 at
# --seconds 20), all linearizable within 5,000,000 (972157, 17 of its 66 operations of
# unknown outcome, needed over 2,000,000); only a history that needs it searches so far.
LINEARIZABILITY_STATES_MAX = 5_000_000


@dataclass
class SimulationResult:
    options: SimulationOptions
    stats: Stats
    violation: InvariantViolation | None
    fault_intensities: str
    tuning: str

    @property
    def ok(self) -> bool:
        return self.violation is None

    def report_lines(self) -> list[str]:
        options = self.options
        lines = [
            f"raft-sim seed={options.seed} nodes={options.nodes} ticks={options.ticks}"
            f" faults={format_faults(options.faults)} workload={options.workload}",
            f"core tuning: {self.tuning}",
            f"fault intensities: {self.fault_intensities}",
            *self.stats.summary_lines(),
        ]
        return lines + verdict_lines(self.violation, options.seed, options.replay_command())


def verdict_lines(violation: object | None, seed: int, replay: str) -> list[str]:
    """A report's last lines, the same for both simulators: scripts read them."""
    if violation is None:
        return ["result: OK"]
    return [f"VIOLATION: {violation}", f"seed: {seed}", f"replay: {replay}"]


def run_simulation(
    options: SimulationOptions,
    *,
    node_class: type[RaftNode] = RaftNode,
    driver_class: type[SimNode] = SimNode,
    sink: Callable[[str], None] | None = None,
    check_linearizability: bool = True,
    observer: SimulationObserver | None = None,
) -> SimulationResult:
    """`observer` (the `--html` replay recorder) sees every event and every tick."""
    simulation = Simulation(
        options, node_class=node_class, driver_class=driver_class, sink=sink, observer=observer
    )
    violation: InvariantViolation | None = None
    # The cyclic garbage collector stays off during the run and collects after it: a
    # run allocates millions of short-lived objects and makes almost no cycles, so the
    # collections it would trigger (a few percent of the run) find next to nothing; the
    # first one after it takes what the run left.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _run(simulation, check_linearizability)
    except InvariantViolation as found:
        violation = found
    except Exception as error:  # a core assertion or crash is a finding, not a sim failure
        violation = InvariantViolation(_exception_kind(error), _describe(error), simulation.now)
    finally:
        if collecting:
            gc.enable()
    if observer is not None:
        observer.after_run(simulation)
    stats = simulation.stats
    stats.elections = len(simulation.checker.elections)
    stats.leaders = list(simulation.checker.elections)
    stats.max_term = max([0, *(simulation.checker.leader_of_term)])
    for driver in simulation.nodes.values():
        if driver.node is not None:
            stats.max_term = max(stats.max_term, driver.node.term)
    stats.commit_index = simulation.checker.committed_index
    return SimulationResult(
        options, stats, violation, simulation.faults.describe(), simulation.tuning.describe()
    )


def _run(simulation: Simulation, check_linearizability: bool) -> None:
    options = simulation.options
    simulation.faults.start()
    simulation.run(options.ticks)
    # Liveness: heal everything, stop issuing new operations, and wait for convergence.
    simulation.workload.issuing = False
    simulation.heal_all()
    healed_at = simulation.now
    lag = _entries_behind(simulation)
    round_trip_ticks = max(1, 2 * simulation.network.latency_ticks)
    bound = LIVENESS_BOUND_TICKS + lag * round_trip_ticks
    if not simulation.run_until(simulation.converged, bound):
        raise simulation.checker.fail(
            "Liveness",
            f"no convergence within {bound} ticks after healing ({LIVENESS_ELECTION_TIMEOUTS}"
            f" election timeouts + {lag} entries to catch up x {round_trip_ticks} ticks):"
            f" {_describe_nodes(simulation)}",
        )
    simulation.stats.ticks_to_converge = simulation.now - healed_at
    simulation.workload.finish()
    _check_final_state(simulation)
    if check_linearizability and simulation.workload.clients:
        result = check_history(
            simulation.workload.recorder.history(),
            max_states=LINEARIZABILITY_STATES_MAX,
            minimize=True,
            validated=True,  # the recorder validated every operation as it was recorded
        )
        verdict = {True: "OK", False: "NOT LINEARIZABLE", None: "UNKNOWN (search budget)"}
        simulation.stats.linearizability = (
            f"{verdict[result.ok]} ({result.operation_count} operations)"
        )
        if result.ok is False:
            raise simulation.checker.fail("Linearizability", result.explain())
        if result.ok is None:
            # Not a pass: the checker gave up, so nothing was shown either way.
            raise simulation.checker.fail(
                "Linearizability",
                f"UNKNOWN: the checker's search budget ({LINEARIZABILITY_STATES_MAX} states)"
                f" ran out on {result.operation_count} operations; nothing was proven",
            )


def _entries_behind(simulation: Simulation) -> int:
    """How many entries the furthest-behind node lacks of the longest log."""
    drivers = [simulation.nodes[node_id] for node_id in simulation.node_ids]
    longest = max(simulation.node(driver.id).log.last_index for driver in drivers)
    return longest - min(driver.applied_index for driver in drivers)


def _check_final_state(simulation: Simulation) -> None:
    checker = simulation.checker
    drivers = [simulation.nodes[node_id] for node_id in simulation.node_ids]
    reference = drivers[0]
    for driver in drivers[1:]:
        if (driver.applied_index, driver.kv.applied_hash) != (
            reference.applied_index,
            reference.kv.applied_hash,
        ):
            raise checker.fail(
                "State Machine Safety",
                f"after convergence node {driver.id} applied {driver.applied_index}"
                f" (hash {driver.kv.applied_hash[:12]}) but node {reference.id} applied"
                f" {reference.applied_index} (hash {reference.kv.applied_hash[:12]})",
            )
    for index, term in sorted(checker.acknowledged.items()):
        if index > reference.applied_index or checker.applied_term(index) != term:
            raise checker.fail(
                "Acknowledged writes", f"acknowledged write {index}/{term} is gone at the end"
            )


def _describe_nodes(simulation: Simulation) -> str:
    parts = []
    for node_id in simulation.node_ids:
        driver = simulation.nodes[node_id]
        node = driver.node
        if node is None:
            parts.append(f"node {node_id} down")
            continue
        parts.append(
            f"node {node_id} {node.role.value} term={node.term} leader={node.leader_id}"
            f" commit={node.log.committed} applied={driver.applied_index}"
            f" last={node.log.last_index}"
        )
    clients = "idle" if simulation.workload.idle else "busy"
    return "; ".join(parts) + f"; clients {clients}"


def _exception_kind(error: Exception) -> str:
    if isinstance(error, AssertionError):
        return "Assertion failed"
    return f"Unexpected {type(error).__name__}"


def _describe(error: Exception) -> str:
    """The message and where it was raised, with paths from the package root (stable
    across checkouts, so the output stays byte-identical)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        frame = frames[-1]
        path = frame.filename.replace("\\", "/")
        marker = "/raftkv/"
        if marker in path:
            path = "raftkv/" + path.rsplit(marker, 1)[1]
        where = f" at {path}:{frame.lineno} in {frame.name}"
    return f"{error}{where}".strip()
