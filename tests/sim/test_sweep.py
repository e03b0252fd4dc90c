"""Random fault schedules over many seeds: every safety check after every step, liveness
after healing, linearizability at the end. A failure names each seed and its replay command.

The default run covers 300 seeds spread over 3, 5 and 7 nodes with every fault kind, one
chunk in five with membership changes (and each kind on its own for a few seeds).
`make sim-long` (RAFTKV_SIM_LONG=1) runs the long sweep with 3000 more seeds; the long test
always runs, with a handful of seeds by default.
"""

from __future__ import annotations

import os

import pytest

from raftkv.sim import FAULT_KINDS
from raftkv.sim.sweep import describe_failures, run_seeds

NODE_COUNTS = (3, 5, 7)
# 30 chunks of 10 seeds: small enough for pytest-xdist to balance over two workers.
SWEEP_CHUNKS = 30
SEEDS_PER_CHUNK = 10
SWEEP_TICKS = 2000
MEMBERSHIP_EVERY_CHUNKS = 5  # every fifth chunk runs the membership workload

SINGLE_KIND_SEEDS = 4

LONG = os.environ.get("RAFTKV_SIM_LONG") == "1"
LONG_CHUNKS = 20
LONG_SEEDS_PER_CHUNK = 150 if LONG else 1  # 3000 seeds with RAFTKV_SIM_LONG=1, else 20
LONG_FIRST_SEED = 100_000


def _assert_clean(seeds: range, nodes: int | tuple[int, ...], **options: object) -> None:
    outcomes = run_seeds(seeds, nodes, **options)  # type: ignore[arg-type]
    failures = [outcome for outcome in outcomes if not outcome.ok]
    assert not failures, "\n" + describe_failures(failures)


@pytest.mark.parametrize("chunk", range(SWEEP_CHUNKS))
def test_sweep_all_faults(chunk: int) -> None:
    first = 1 + chunk * SEEDS_PER_CHUNK
    workload = (
        "membership" if chunk % MEMBERSHIP_EVERY_CHUNKS == MEMBERSHIP_EVERY_CHUNKS - 1 else "kv"
    )
    _assert_clean(
        range(first, first + SEEDS_PER_CHUNK), NODE_COUNTS, ticks=SWEEP_TICKS, workload=workload
    )


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_sweep_each_fault_kind_alone(kind: str) -> None:
    _assert_clean(
        range(1, 1 + SINGLE_KIND_SEEDS), NODE_COUNTS, ticks=SWEEP_TICKS, faults=frozenset({kind})
    )


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(LONG_CHUNKS))
def test_long_sweep(chunk: int) -> None:
    first = LONG_FIRST_SEED + chunk * LONG_SEEDS_PER_CHUNK
    workload = (
        "membership" if chunk % MEMBERSHIP_EVERY_CHUNKS == MEMBERSHIP_EVERY_CHUNKS - 1 else "kv"
    )
    _assert_clean(range(first, first + LONG_SEEDS_PER_CHUNK), NODE_COUNTS, workload=workload)


def test_jobs_give_the_same_outcomes_in_seed_order() -> None:
    # A test double (defined in a test module) reaches forked workers, and a sweep that stops
    # at its first violation stops at the same seed as one process does.
    from tests.sim.test_checks_fail import FORGOTTEN_VOTE_SEEDS, ForgetfulVoterDriver

    options: dict[str, object] = {
        "driver_class": ForgetfulVoterDriver,
        "check_linearizability": False,
        "stop_at_first_violation": True,
    }
    alone = run_seeds(FORGOTTEN_VOTE_SEEDS, 3, **options)  # type: ignore[arg-type]
    assert not alone[-1].ok
    assert run_seeds(FORGOTTEN_VOTE_SEEDS, 3, jobs=2, **options) == alone  # type: ignore[arg-type]
    kinds = run_seeds(range(1, 7), NODE_COUNTS, ticks=300, faults=frozenset({"crash"}))
    assert (
        run_seeds(range(1, 7), NODE_COUNTS, ticks=300, faults=frozenset({"crash"}), jobs=0) == kinds
    )
    assert [outcome.seed for outcome in kinds] == list(range(1, 7))
