"""Shared helpers for the simulator tests: a fault-free cluster the test drives by hand."""

from __future__ import annotations

from raftkv.errors import NotLeader, ProposalDropped
from raftkv.kv.commands import Command
from raftkv.sim import Simulation, SimulationOptions
from raftkv.sim.options import CoreTuning

# Bounds for waiting on a healthy cluster (ticks): a few election timeouts.
ELECTION_TICKS = 300
COMMIT_TICKS = 300


def quiet_simulation(nodes: int = 3, seed: int = 1, tuning: CoreTuning | None = None) -> Simulation:
    """A cluster with no injected faults and no clients: the test decides everything."""
    return Simulation(
        SimulationOptions(seed=seed, nodes=nodes, ticks=0, faults=frozenset(), workload="none"),
        tuning=tuning,
    )


def elect(simulation: Simulation, among: list[int] | None = None) -> int:
    """Run until one of `among` (default: anyone) leads; returns its id."""

    def elected() -> bool:
        leader = simulation.leader()
        return leader is not None and (among is None or leader in among)

    assert simulation.run_until(elected, ELECTION_TICKS), "no leader elected"
    leader = simulation.leader()
    assert leader is not None
    return leader


def put(key: str, value: str) -> Command:
    return Command(op="put", key=key, value=value)


def commit(simulation: Simulation, command: Command, among: list[int] | None = None) -> int:
    """Propose through the current leader (retrying across elections) until committed and
    applied on every running node of `among`; returns the entry's index."""
    for _ in range(20):
        index = _try_commit(simulation, command, elect(simulation, among), among)
        if index is not None:
            return index
    raise AssertionError(f"{command} never committed")


def _try_commit(
    simulation: Simulation, command: Command, leader: int, among: list[int] | None
) -> int | None:
    try:
        index, term = simulation.propose(leader, command)
    except (NotLeader, ProposalDropped):
        simulation.run(5)
        return None

    def decided() -> bool:
        return simulation.is_committed(index, term) or simulation.node(leader).term != term

    simulation.run_until(decided, COMMIT_TICKS)
    if not simulation.is_committed(index, term):
        return None
    nodes = among or simulation.alive()
    assert simulation.run_until(
        lambda: all(simulation.nodes[n].applied_index >= index for n in nodes), COMMIT_TICKS
    )
    return index


def log_terms(simulation: Simulation, node_id: int) -> list[tuple[int, int]]:
    log = simulation.node(node_id).log
    return [(entry.index, entry.term) for entry in log.entries]
