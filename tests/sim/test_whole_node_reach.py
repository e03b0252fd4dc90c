"""Proofs of reach for the whole-node simulator: put back the fix of one of the review's
defects (tests/sim/whole_node_defects.py) and a sweep of a pinned seed range finds it; the
same seeds pass with the fix in place.

The ranges were found by sweeping (docs/simulator.md, "Proofs of reach"). A change to the
simulator's random choices moves them, and then these tests say so: sweep again (the
script in that section) and pin the new range.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from raftkv.sim.whole_node import WholeNodeOptions, WholeNodeResult, run_whole_node
from tests.sim import whole_node_defects as defects

NODES = 3
# (the double, the seeds to sweep, what the simulator must report)
REACH: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[None]], range, str]] = {
    # Defect 4: caught at seed 50 (and 175 of seeds 1-300): the node restarts without
    # committed entries it had made durable.
    "damaged newest snapshot": (
        defects.damaged_newest_snapshot_falls_back,
        range(48, 51),
        "Durability",
    ),
    # Defect 7: caught at seed 38 (and 131, 141 of seeds 1-300): a node re-added under
    # the id of a removed one replays that removal and stops.
    "re-added id stops itself": (
        defects.rejoined_node_trusts_old_removals,
        range(36, 39),
        "stopped as removed but is a member",
    ),
}


def sweep(seeds: range) -> Iterator[WholeNodeResult]:
    for seed in seeds:
        yield run_whole_node(WholeNodeOptions(seed=seed, nodes=NODES))


@pytest.mark.parametrize("defect", sorted(REACH))
def test_the_whole_node_sweep_finds_the_defect_put_back(defect: str) -> None:
    double, seeds, expected = REACH[defect]
    with double():
        found = [result for result in sweep(seeds) if not result.ok]
    assert found, f"{defect}: no violation in seeds {seeds.start}-{seeds.stop - 1}"
    reports = ["\n".join(result.report_lines()) for result in found]
    assert any(expected in report for report in reports), "\n\n".join(reports)


@pytest.mark.parametrize("defect", sorted(REACH))
def test_the_same_seeds_pass_with_the_fix(defect: str) -> None:
    _, seeds, _ = REACH[defect]
    failed = ["\n".join(r.report_lines()[-3:]) for r in sweep(seeds) if not r.ok]
    assert not failed, "\n\n".join(failed)
