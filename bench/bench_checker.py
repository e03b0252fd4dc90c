"""Benchmark of the linearizability checker (not a test).

Generates key-value histories with raftkv.check.synthetic (64 concurrent clients, a handful of
keys, random overlapping intervals, 2% of calls timing out with unknown outcome, 1% failing
cleanly), checks them, and prints the checker's time for each:

    PYTHONPATH=src .venv/bin/python bench/bench_checker.py [--seed N] [--keys K]

Variants: linearizable; with one stale read injected; with one lost update injected; and a
harder linearizable one where values repeat (so the one-writer shortcuts cannot apply).
"""

from __future__ import annotations

import argparse
import time

from raftkv.check import Operation, check_history
from raftkv.check.synthetic import (
    Workload,
    generate_history,
    inject_lost_update,
    inject_stale_read,
)

SIZES = (10_000, 100_000)
CLIENTS = 64
REPEATED_VALUES = 50  # distinct values per workload in the "repeated values" variant


def _run(name: str, history: list[Operation]) -> None:
    started = time.perf_counter()
    result = check_history(history)
    seconds = time.perf_counter() - started
    states = sum(key.states_explored for key in result.keys.values())
    minimal = max((len(result.keys[key].minimal) for key in result.failed_keys), default=0)
    shown = f", minimal sub-history {minimal} operations" if minimal else ""
    print(f"{name:<44} {seconds:7.2f} s  {result.summary()}  states={states}{shown}")


def _variants(size: int, keys: int, seed: int) -> list[tuple[str, list[Operation]]]:
    history = generate_history(Workload(size, client_count=CLIENTS, key_count=keys), seed)
    repeated = Workload(size, client_count=CLIENTS, key_count=keys, value_count=REPEATED_VALUES)
    return [
        ("linearizable", history),
        ("stale read injected", inject_stale_read(history, seed)[0]),
        ("lost update injected", inject_lost_update(history, seed)[0]),
        (f"linearizable, {REPEATED_VALUES} repeated values", generate_history(repeated, seed)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keys", type=int, default=5)
    arguments = parser.parse_args()
    for size in SIZES:
        for name, history in _variants(size, arguments.keys, arguments.seed):
            _run(f"{size} ops, {arguments.keys} keys, {name}", history)


if __name__ == "__main__":
    main()
