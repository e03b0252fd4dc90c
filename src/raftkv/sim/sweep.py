"""Many seeds at once: the API behind the sweep tests and `raft-sim --sweep`.

With `jobs` above 1 the seeds run in worker processes, one seed per task (runs differ in
length, so small tasks balance best), and the outcomes come back in seed order: a seed's run
depends on nothing but its options, so the list is the same as with one process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from raftkv.core.node import RaftNode
from raftkv.sim.driver import SimNode
from raftkv.sim.options import FAULT_KINDS, TICKS_DEFAULT, SimulationOptions
from raftkv.sim.runner import SimulationResult, run_simulation

T = TypeVar("T")
R = TypeVar("R")


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
    replication: str | None = None,
    node_class: type[RaftNode] = RaftNode,
    driver_class: type[SimNode] = SimNode,
    check_linearizability: bool = True,
    stop_at_first_violation: bool = False,
    jobs: int = 1,
) -> list[SeedOutcome]:
    """Run each seed (with a node count from `nodes`) and report what every run found, in
    seed order. `jobs`: worker processes (0: one per CPU); the outcomes do not depend on it."""
    tasks = [
        _SeedTask(
            SimulationOptions(
                seed=seed,
                nodes=nodes_for_seed(seed, nodes),
                ticks=ticks,
                faults=faults,
                workload=workload,
                replication=replication,
            ),
            node_class,
            driver_class,
            check_linearizability,
        )
        for seed in seeds
    ]
    outcomes: list[SeedOutcome] = []
    for outcome in _run_tasks(tasks, resolve_jobs(jobs)):
        outcomes.append(outcome)
        if not outcome.ok and stop_at_first_violation:
            break
    return outcomes


def resolve_jobs(jobs: int) -> int:
    """0 means one worker per CPU."""
    if jobs < 0:
        raise ValueError(f"jobs must be 0 (one per CPU) or more, not {jobs}")
    return jobs or os.cpu_count() or 1


@dataclass(frozen=True)
class _SeedTask:
    options: SimulationOptions
    node_class: type[RaftNode]
    driver_class: type[SimNode]
    check_linearizability: bool


def _run_task(task: _SeedTask) -> SeedOutcome:
    options = task.options
    result: SimulationResult = run_simulation(
        options,
        node_class=task.node_class,
        driver_class=task.driver_class,
        check_linearizability=task.check_linearizability,
    )
    violation = None if result.violation is None else str(result.violation)
    return SeedOutcome(options.seed, options.nodes, violation, options.replay_command())


def _run_tasks(tasks: list[_SeedTask], jobs: int) -> Iterator[SeedOutcome]:
    return in_workers(_run_task, tasks, jobs)


def in_workers(function: Callable[[T], R], items: list[T], jobs: int) -> Iterator[R]:
    """`function` of each item, in item order; runs ahead in `jobs` worker processes (one
    sweep of either simulator). A consumer that stops early cancels what has not started."""
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            yield function(item)
        return
    # Forked workers inherit what the parent has loaded and patched (test doubles defined in
    # a test module, monkeypatched methods); spawn only where fork does not exist.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=context) as pool:
        futures: list[Future[R]] = [pool.submit(function, item) for item in items]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def describe_failures(outcomes: Iterable[SeedOutcome]) -> str:
    """One line per failing seed: the violation and the command that replays it."""
    return "\n".join(
        f"seed {outcome.seed} ({outcome.nodes} nodes): {outcome.violation}\n"
        f"  replay: {outcome.replay}"
        for outcome in outcomes
        if not outcome.ok
    )
