"""The simulators' clients issue ranges, delete-ranges and transactions, and the checker's
map model judges their histories quickly (docs/simulator.md, docs/testing.md)."""

from __future__ import annotations

from collections import Counter

import pytest

import raftkv.sim.runner
import raftkv.sim.whole_node
from raftkv.check import CheckResult, Operation, check_history
from raftkv.sim.options import SimulationOptions
from raftkv.sim.runner import run_simulation
from raftkv.sim.whole_node import run_whole_node
from raftkv.sim.whole_node_report import WholeNodeOptions

MULTI_KEY = {"range", "delrange", "txn"}


def _capturing(
    monkeypatch: pytest.MonkeyPatch, module: object
) -> list[tuple[list[Operation], CheckResult]]:
    checked: list[tuple[list[Operation], CheckResult]] = []

    def capture(operations: list[Operation], **options: object) -> CheckResult:
        history = list(operations)
        result = check_history(history, **options)  # type: ignore[arg-type]
        checked.append((history, result))
        return result

    monkeypatch.setattr(module, "check_history", capture)
    return checked


def test_core_sim_histories_hold_every_multi_key_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _capturing(monkeypatch, raftkv.sim.runner)
    for seed in (1, 2):
        assert run_simulation(SimulationOptions(seed=seed)).ok
    for history, result in checked:
        kinds = Counter(operation.op for operation in history)
        assert set(kinds) >= MULTI_KEY, kinds
        ok_txns = [op for op in history if op.op == "txn" and op.status == "ok"]
        assert {op.succeeded for op in ok_txns} == {True, False}
        assert any(op.limit for op in history if op.op == "range")
        assert result.ok is True
        # One component of x, y, z (plus ranges naming no key), searched in about one
        # state per operation: far from the sims' 200,000-state budget.
        states = sum(key.states_explored for key in result.keys.values())
        assert states < 2 * len(history)


def test_whole_node_sim_histories_hold_multi_key_operations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = _capturing(monkeypatch, raftkv.sim.whole_node)
    assert run_whole_node(WholeNodeOptions(seed=2)).ok
    ((history, result),) = checked
    assert {op.op for op in history if op.status == "ok"} >= MULTI_KEY
    assert result.ok is True
