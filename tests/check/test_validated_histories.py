"""check_history(validated=True): a history whose operations were validated as they were
recorded (a HistoryRecorder's) is not validated again, and the verdict is the same."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.check import HistoryError, check_history
from raftkv.sim.cluster import Simulation
from raftkv.sim.options import SimulationOptions


@pytest.mark.parametrize(("seed", "nodes"), [(1, 5), (2, 3), (3, 5)])
def test_a_recorded_history_gets_the_same_verdict_validated_or_not(seed: int, nodes: int) -> None:
    simulation = Simulation(SimulationOptions(seed=seed, nodes=nodes))
    simulation.faults.start()
    simulation.run(1500)
    history = simulation.workload.recorder.history()
    assert len(history.operations) > 50
    checked = check_history(history)
    trusted = check_history(history, validated=True)
    assert checked.ok is True
    assert (trusted.ok, trusted.operation_count) == (checked.ok, checked.operation_count)


def test_without_the_promise_an_invalid_operation_is_still_refused() -> None:
    simulation = Simulation(SimulationOptions(seed=1, nodes=3))
    simulation.run(300)
    operations = list(simulation.workload.recorder.history().operations)
    # A call that returned before it was made.
    operations[0] = msgspec.structs.replace(operations[0], status="ok", return_time=-1.0)
    with pytest.raises(HistoryError):
        check_history(operations)
