"""Benchmark of the simulator's speed (not a test): seeds per minute, as `raft-sim` runs them.

    .venv/bin/python bench/bench_sim.py [--repetitions 3] [--seeds 100] [--nodes 5]

Times the command a user runs, start-up included, the median of `--repetitions` runs each:
the core-only sweep `raft-sim --sweep 1-N --nodes 5` with one job and with one job per core,
and the whole-node sweep `raft-sim --whole-node --sweep 1-M --nodes 5` with one job per
core. Ticks per second are the seeds' simulated ticks (counted once, in this process) over
the core-only sweep's wall time. The interpreter matters as much as the code here: the
report names it and says whether its libpython is a shared library (docs/simulator.md,
"Fifth round: which interpreter"), whether the modules run compiled, and the machine's
speed of the moment (this shared machine's changes by the hour).

Targets (issue 12): core-only at least 1,000 seeds per minute for 5 nodes; whole-node at
least 100.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import raftkv
from raftkv.sim import runner
from raftkv.sim.options import SimulationOptions
from raftkv.sim.sweep import in_workers, resolve_jobs

CORE_TARGET = 1000
WHOLE_NODE_TARGET = 100


def _interpreter() -> str:
    with open("/proc/self/maps") as maps:
        shared = any("libpython" in line for line in maps)
    linking = "shared libpython" if shared else "libpython linked in"
    compiled = raftkv.running_code()
    version = sys.version.split()[0]
    return f"{sys.executable} (Python {version}, {linking}, {sysconfig.get_platform()}); {compiled}"


def _reference_ms() -> float:
    """The machine's speed of the moment: a fixed pure-Python loop, best of 5 (this shared
    machine takes 16-19 ms on a quiet day and twice that when its host is busy), so that
    runs on different days can be set side by side."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(range(10**6))
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _raft_sim() -> str:
    return str(Path(sys.executable).with_name("raft-sim"))


def _wall_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")
    return seconds


def _median_seconds(command: list[str], repetitions: int) -> tuple[float, list[float]]:
    runs = [_wall_seconds(command) for _ in range(repetitions)]
    return statistics.median(runs), runs


def _ticks_of(options: SimulationOptions) -> int:
    return runner.run_simulation(options).stats.ticks


def _simulated_ticks(seeds: int, nodes: int, jobs: int) -> int:
    options = [SimulationOptions(seed=seed, nodes=nodes) for seed in range(1, seeds + 1)]
    return sum(in_workers(_ticks_of, options, jobs))


def _row(name: str, seeds: int, median: float, runs: list[float], target: int | None) -> None:
    """`target`: the issue's seeds per minute, for the rows it sets one for (every core)."""
    per_minute = seeds * 60 / median
    shown = ", ".join(f"{run:.2f}" for run in runs)
    if target is None:
        verdict = "for reference: the target is for every core"
    else:
        verdict = f"{'meets' if per_minute >= target else 'BELOW'} the target of {target}"
    print(f"{name:<44} {per_minute:7.0f} seeds/min  (median of {shown} s; {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=100, help="core-only seeds per sweep")
    parser.add_argument("--whole-node-seeds", type=int, default=40)
    parser.add_argument("--nodes", type=int, default=5)
    arguments = parser.parse_args()
    cores = resolve_jobs(0)
    print(f"interpreter: {_interpreter()}")
    print(
        f"cores: {cores} (os.cpu_count() {os.cpu_count()}); load {os.getloadavg()[0]:.2f};"
        f" reference sum(range(10**6)) {_reference_ms():.1f} ms"
    )
    sim, nodes, seeds = _raft_sim(), str(arguments.nodes), arguments.seeds
    sweep = [sim, "--sweep", f"1-{seeds}", "--nodes", nodes]
    median_one, runs_one = _median_seconds([*sweep, "--jobs", "1"], arguments.repetitions)
    _row(f"core-only, {seeds} seeds, 1 job", seeds, median_one, runs_one, None)
    median_all, runs_all = _median_seconds([*sweep, "--jobs", str(cores)], arguments.repetitions)
    _row(f"core-only, {seeds} seeds, {cores} jobs", seeds, median_all, runs_all, CORE_TARGET)
    ticks = _simulated_ticks(seeds, arguments.nodes, cores)
    print(
        f"{'  simulated ticks':<44} {ticks:7d} ticks: {ticks / median_one:,.0f} ticks/s with"
        f" 1 job, {ticks / median_all:,.0f} with {cores}"
    )
    whole = arguments.whole_node_seeds
    whole_sweep = [sim, "--whole-node", "--sweep", f"1-{whole}", "--nodes", nodes]
    median_whole, runs_whole = _median_seconds(
        [*whole_sweep, "--jobs", str(cores)], arguments.repetitions
    )
    _row(
        f"whole-node, {whole} seeds, {cores} jobs",
        whole,
        median_whole,
        runs_whole,
        WHOLE_NODE_TARGET,
    )


if __name__ == "__main__":
    main()
