"""Many seeds at once: the API behind the sweep tests and `raft-sim --sweep`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from raftkv.core.node import RaftNode
from raftkv.sim.driver import SimNode
from raftkv.sim.options import FAULT_KINDS, TICKS_DEFAULT, SimulationOptions
from raftkv.sim.runner import SimulationResult, run_simulation


@dataclass(frozen=True)
class SeedOutcome:
    seed: int
    nodes: int
    violation: str | None  # None when every check passed
    replay: str  # the command that reruns this seed

    @property
    def ok(self) -> bool:
        return self.violation is None


def nodes_for_seed(seed: int, nodes: int | Sequence[int]) -> int:
    """A fixed node count, or one per seed cycling through `nodes`."""
    if isinstance(nodes, int):
        return nodes
    return nodes[seed % len(nodes)]


def run_seeds(
    seeds: Iterable[int],
    nodes: int | Sequence[int] = 3,
    *,
    ticks: int = TICKS_DEFAULT,
    faults: frozenset[str] = frozenset(FAULT_KINDS),
    workload: str = "kv",
    node_class: type[RaftNode] = RaftNode,
    driver_class: type[SimNode] = SimNode,
    check_linearizability: bool = True,
    stop_at_first_violation: bool = False,
) -> list[SeedOutcome]:
    """Run each seed (with a node count from `nodes`) and report what every run found."""
    outcomes: list[SeedOutcome] = []
    for seed in seeds:
        options = SimulationOptions(
            seed=seed,
            nodes=nodes_for_seed(seed, nodes),
            ticks=ticks,
            faults=faults,
            workload=workload,
        )
        result: SimulationResult = run_simulation(
            options,
            node_class=node_class,
            driver_class=driver_class,
            check_linearizability=check_linearizability,
        )
        violation = None if result.violation is None else str(result.violation)
        outcomes.append(SeedOutcome(seed, options.nodes, violation, options.replay_command()))
        if violation is not None and stop_at_first_violation:
            break
    return outcomes


def describe_failures(outcomes: Iterable[SeedOutcome]) -> str:
    """One line per failing seed: the violation and the command that replays it."""
    return "\n".join(
        f"seed {outcome.seed} ({outcome.nodes} nodes): {outcome.violation}\n"
        f"  replay: {outcome.replay}"
        for outcome in outcomes
        if not outcome.ok
    )
