"""The simulator exercises consistency=stale reads and catches a wrong one."""

from __future__ import annotations

import pytest

from raftkv.kv import KVStore
from raftkv.kv.commands import Command, Result
from raftkv.sim import SimulationOptions, run_simulation


def test_stale_reads_are_checked_in_a_normal_run() -> None:
    result = run_simulation(SimulationOptions(seed=3, nodes=3, ticks=1500))
    assert result.ok, result.violation
    assert result.stats.stale_reads > 50


class ForgetfulStore(KVStore):
    """Applies every command (so its hash chain is right) but drops puts of 'y'."""

    def execute(self, command: Command) -> Result:
        if command.op == "put" and command.key == "y":
            return Result(ok=True)
        return super().execute(command)


@pytest.mark.interpreted
def test_a_state_machine_that_diverges_is_caught_by_stale_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("raftkv.sim.driver.KVStore", ForgetfulStore)
    result = run_simulation(
        SimulationOptions(seed=3, nodes=3, ticks=1500), check_linearizability=False
    )
    assert result.violation is not None and result.violation.invariant == "Stale reads"
