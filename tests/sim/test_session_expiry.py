"""Forgotten sessions under faults: with a session table of one (every write of another
client forgets a session), the simulated clients' writes are refused `session_expired`
over and over, resent or reported unknown, and the execution ledger shows no write executed
twice; and the ledger does catch it when the store executes any write of a forgotten
session (the behaviour before `evicted_through`)."""

from __future__ import annotations

from typing import Any

import pytest

import raftkv.kv.sessions
import raftkv.sim.cluster
from raftkv.kv.sessions import SessionTable
from raftkv.sim.clients import Workload
from raftkv.sim.sweep import run_seeds

NODES = 3
SEEDS = range(1, 9)
BROKEN_SEEDS = range(1, 3)  # caught at seed 1 (29 of seeds 1-30)


@pytest.fixture
def workloads(monkeypatch: pytest.MonkeyPatch) -> list[Workload]:
    """A session table of one; the workloads the simulations build, to read their counts."""
    monkeypatch.setattr(raftkv.kv.sessions, "SESSIONS_MAX", 1)
    built: list[Workload] = []

    class RecordedWorkload(Workload):
        def __init__(self, *arguments: Any, **keywords: Any) -> None:
            super().__init__(*arguments, **keywords)
            built.append(self)

    monkeypatch.setattr(raftkv.sim.cluster, "Workload", RecordedWorkload)
    return built


@pytest.mark.interpreted
def test_no_write_is_executed_twice_while_sessions_are_forgotten(
    workloads: list[Workload],
) -> None:
    outcomes = run_seeds(SEEDS, NODES)
    assert [outcome.violation for outcome in outcomes] == [None] * len(SEEDS)
    assert all(workload.ledger.sessions_max == 1 for workload in workloads)
    # The rule was exercised, not idle: refusals, each resent or reported unknown.
    assert sum(workload.sessions_expired for workload in workloads) > 100


@pytest.mark.interpreted
def test_the_ledger_catches_a_forgotten_session_executing_again(
    workloads: list[Workload], monkeypatch: pytest.MonkeyPatch
) -> None:
    def any_request_opens_a_session(self: SessionTable[Any], seq: int, after: int | None) -> bool:
        return True

    monkeypatch.setattr(SessionTable, "may_open", any_request_opens_a_session)
    outcomes = run_seeds(BROKEN_SEEDS, NODES, stop_at_first_violation=True)
    violation = outcomes[-1].violation
    assert violation is not None and violation.startswith("Client sessions:"), outcomes
    assert "was executed at" in violation
