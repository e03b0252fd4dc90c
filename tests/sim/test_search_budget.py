"""Seeds whose client history the linearizability search needed more than 200,000
configurations to settle (the simulators' budget until session 43, when sweeps of seeds
930000-981999 ended four runs `UNKNOWN`, failed as proving nothing; 972157 needed over
2,000,000): with the budget at `LINEARIZABILITY_STATES_MAX` each is shown linearizable."""

from __future__ import annotations

import pytest

from raftkv.sim.options import SimulationOptions
from raftkv.sim.runner import LINEARIZABILITY_STATES_MAX, run_simulation
from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node


def test_the_budget_is_past_what_the_swept_seeds_needed() -> None:
    assert LINEARIZABILITY_STATES_MAX >= 5_000_000


@pytest.mark.parametrize(
    ("seed", "nodes", "workload"),
    [(972157, 3, "kv"), (977077, 3, "kv"), (980673, 5, "membership")],
)
def test_core_seed_settles_linearizable(seed: int, nodes: int, workload: str) -> None:
    result = run_simulation(SimulationOptions(seed=seed, nodes=nodes, workload=workload))
    assert result.ok, result.violation
    assert result.stats.linearizability.startswith("OK"), result.stats.linearizability


def test_whole_node_seed_settles_linearizable() -> None:
    result = run_whole_node(WholeNodeOptions(seed=961122, seconds=20))
    assert result.ok, "\n".join(result.report_lines())
    assert result.stats.linearizability.startswith("OK"), result.stats.linearizability
