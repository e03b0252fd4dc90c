"""Hand-driven fault scenarios through the simulator's API. Every tick of every scenario runs
under the full invariant checker, so beyond what each test asserts, no safety property may
break along the way (a violation raises InvariantViolation)."""

from __future__ import annotations

import pytest

from raftkv.core.node import Role
from raftkv.errors import NotLeader
from raftkv.kv.commands import encode_command
from raftkv.sim import CrashPoint, Simulation
from tests.sim.helpers import COMMIT_TICKS, commit, elect, log_terms, put, quiet_simulation

# Enough election timeouts for a cluster to notice a change and settle.
SETTLE_TICKS = 200


def converge(simulation: Simulation) -> None:
    assert simulation.run_until(simulation.converged, SETTLE_TICKS), "cluster did not converge"


def assert_identical_everywhere(simulation: Simulation) -> None:
    drivers = [simulation.nodes[node_id] for node_id in simulation.node_ids]
    states = {(driver.applied_index, driver.kv.applied_hash) for driver in drivers}
    assert len(states) == 1, states
    logs = {tuple(log_terms(simulation, node_id)[-5:]) for node_id in simulation.node_ids}
    assert len(logs) == 1, logs


def test_leader_crash_during_replication_loses_nothing_committed() -> None:
    simulation = quiet_simulation(nodes=5)
    simulation.set_network(latency_ticks=1)
    for number in range(5):
        commit(simulation, put(f"k{number}", str(number)))
    committed = dict(simulation.kv(1).data)
    leader = elect(simulation)
    # Proposals leave in AppendEntries, then the leader dies before its own disk write.
    node = simulation.node(leader)
    for number in range(3):
        node.propose(encode_command(put("late", str(number))))
    simulation.nodes[leader].arm_crash(CrashPoint.AFTER_SEND, simulation.now)
    simulation.nodes[leader].process_ready()
    assert not simulation.nodes[leader].alive
    assert simulation.network.in_flight_count > 0  # the entries are on their way
    new_leader = elect(simulation, [n for n in simulation.node_ids if n != leader])
    assert new_leader != leader
    commit(simulation, put("after", "crash"))
    simulation.restart(leader)
    converge(simulation)
    assert_identical_everywhere(simulation)
    data = simulation.kv(leader).data
    assert {key: data[key] for key in committed} == committed
    assert data["after"] == "crash"


def test_partition_only_the_majority_commits_then_logs_converge() -> None:
    simulation = quiet_simulation(nodes=5)
    old_leader = elect(simulation)
    commit(simulation, put("x", "before"))
    minority = [old_leader, next(n for n in simulation.node_ids if n != old_leader)]
    majority = [n for n in simulation.node_ids if n not in minority]
    simulation.partition(minority, majority)
    index, term = simulation.propose(old_leader, put("x", "minority"))
    commit(simulation, put("x", "majority"), among=majority)
    simulation.run(50)
    assert not simulation.is_committed(index, term)
    for node_id in minority:
        assert simulation.kv(node_id).get("x") == "before"
    for node_id in majority:
        assert simulation.kv(node_id).get("x") == "majority"
    simulation.heal()
    converge(simulation)
    assert_identical_everywhere(simulation)
    assert all(simulation.kv(node_id).get("x") == "majority" for node_id in simulation.node_ids)


def test_deposed_leader_uncommitted_entries_are_overwritten() -> None:
    simulation = quiet_simulation(nodes=3)
    old_leader = elect(simulation)
    commit(simulation, put("x", "1"))
    simulation.isolate(old_leader)
    stale = [simulation.propose(old_leader, put("x", f"stale{n}")) for n in range(3)]
    others = [n for n in simulation.node_ids if n != old_leader]
    commit(simulation, put("x", "2"), among=others)
    new_term = simulation.node(elect(simulation, others)).term
    simulation.heal()
    converge(simulation)
    old = simulation.node(old_leader)
    assert old.role is Role.FOLLOWER and old.term >= new_term
    for index, term in stale:
        assert old.log.term(index) != term  # replaced by the new leader's entries
        assert not simulation.is_committed(index, term)
    assert_identical_everywhere(simulation)
    assert simulation.kv(old_leader).get("x") == "2"


@pytest.mark.parametrize("nodes", [3, 5])
def test_drops_duplicates_and_reordering_still_commit_everything(nodes: int) -> None:
    simulation = quiet_simulation(nodes=nodes, seed=7)
    simulation.set_network(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.3)
    for number in range(30):
        commit(simulation, put(f"k{number % 4}", str(number)))
    simulation.set_network(drop_rate=0.0, duplicate_rate=0.0)
    converge(simulation)
    assert_identical_everywhere(simulation)
    data = simulation.kv(1).data
    assert data == {"k0": "28", "k1": "29", "k2": "26", "k3": "27"}
    assert simulation.stats.messages_duplicated > 0 and simulation.stats.messages_dropped > 0


def test_crash_and_restart_of_every_node_keeps_every_committed_entry() -> None:
    simulation = quiet_simulation(nodes=3)
    for number in range(10):
        commit(simulation, put(f"k{number}", str(number)))
    before = dict(simulation.kv(1).data)
    committed_index = simulation.checker.committed_index
    for node_id in simulation.node_ids:
        simulation.crash(node_id)
    for node_id in simulation.node_ids:
        simulation.restart(node_id)
    commit(simulation, put("after", "restart"))
    converge(simulation)
    assert_identical_everywhere(simulation)
    data = simulation.kv(1).data
    assert {key: data[key] for key in before} == before
    assert simulation.nodes[1].applied_index > committed_index


def test_rejoining_partitioned_node_does_not_depose_the_leader() -> None:
    simulation = quiet_simulation(nodes=5)
    leader = elect(simulation)
    commit(simulation, put("x", "1"))
    term = simulation.node(leader).term
    loner = next(n for n in simulation.node_ids if n != leader)
    simulation.isolate(loner)
    simulation.run(SETTLE_TICKS)  # many election timeouts: pre-vote keeps its term
    assert simulation.node(loner).term == term
    simulation.heal()
    simulation.run(SETTLE_TICKS)
    assert simulation.leader() == leader
    assert simulation.node(leader).term == term
    converge(simulation)


def test_snapshot_is_installed_on_a_node_that_was_down_during_compaction() -> None:
    simulation = quiet_simulation(nodes=3)
    simulation.set_snapshots(interval=5, keep_entries=0)
    leader = elect(simulation)
    down = next(n for n in simulation.node_ids if n != leader)
    simulation.crash(down)
    for number in range(30):
        commit(simulation, put(f"k{number % 3}", str(number)))
    assert simulation.node(leader).log.snapshot_index > simulation.nodes[down].applied_index
    installed_before = simulation.stats.snapshots_installed
    simulation.restart(down)
    converge(simulation)
    assert simulation.stats.snapshots_installed > installed_before
    assert simulation.node(down).log.snapshot_index > 0
    assert_identical_everywhere(simulation)


def test_chunked_snapshot_survives_loss_and_reordering() -> None:
    simulation = quiet_simulation(nodes=3, seed=3)
    simulation.set_snapshots(interval=4, keep_entries=0)
    leader = elect(simulation)
    down = next(n for n in simulation.node_ids if n != leader)
    simulation.crash(down)
    for number in range(40):
        commit(simulation, put(f"key-{number % 7}", "v" * 20 + str(number)))
    simulation.set_network(drop_rate=0.2, reorder_rate=0.5, duplicate_rate=0.1)
    simulation.restart(down)
    assert simulation.run_until(
        lambda: simulation.nodes[down].applied_index >= simulation.checker.committed_index,
        COMMIT_TICKS * 3,
    )
    simulation.set_network(drop_rate=0.0, reorder_rate=0.0, duplicate_rate=0.0)
    converge(simulation)
    assert_identical_everywhere(simulation)


def test_leadership_transfer_hands_over_without_losing_writes() -> None:
    simulation = quiet_simulation(nodes=3)
    leader = elect(simulation)
    commit(simulation, put("x", "1"))
    target = next(n for n in simulation.node_ids if n != leader)
    simulation.node(leader).transfer_leadership(target)
    assert simulation.run_until(lambda: simulation.leader() == target, COMMIT_TICKS)
    with pytest.raises(NotLeader):
        simulation.propose(leader, put("x", "old leader"))
    commit(simulation, put("x", "2"))
    converge(simulation)
    assert_identical_everywhere(simulation)
    assert simulation.kv(leader).get("x") == "2"


def test_crash_between_persist_and_acknowledgement_keeps_the_vote() -> None:
    """A voter that dies after saving its vote, before the grant leaves, still holds the vote
    in its durable hard state (so it cannot vote twice in that term after restarting)."""
    simulation = quiet_simulation(nodes=3)
    leader = elect(simulation)
    commit(simulation, put("x", "1"))
    old_term = simulation.node(leader).term
    followers = [n for n in simulation.node_ids if n != leader]
    for node_id in followers:
        simulation.nodes[node_id].arm_crash(CrashPoint.AFTER_PERSIST, simulation.now)
    simulation.crash(leader)
    assert simulation.run_until(lambda: len(simulation.alive()) < len(followers), SETTLE_TICKS)
    crashed = [n for n in followers if not simulation.nodes[n].alive]
    for node_id in crashed:
        durable = simulation.nodes[node_id].stable_store.hard_state()
        assert durable.term > old_term and durable.voted_for is not None
    for node_id in followers:
        simulation.nodes[node_id].crash_point = None
    for node_id in simulation.node_ids:
        simulation.restart(node_id)
    converge(simulation)
    assert_identical_everywhere(simulation)


def test_crash_right_after_saving_a_received_snapshot_restarts_cleanly() -> None:
    simulation = quiet_simulation(nodes=3)
    simulation.set_snapshots(interval=5, keep_entries=0)
    leader = elect(simulation)
    down = next(n for n in simulation.node_ids if n != leader)
    simulation.crash(down)
    for number in range(20):
        commit(simulation, put(f"k{number % 3}", str(number)))
    simulation.restart(down)
    simulation.nodes[down].arm_crash(CrashPoint.AFTER_SNAPSHOT_SAVE, simulation.now)
    assert simulation.run_until(lambda: not simulation.nodes[down].alive, SETTLE_TICKS)
    driver = simulation.nodes[down]
    snapshot = driver.snapshot_store.latest()
    assert snapshot is not None and driver.log_store.last_index() < snapshot[0].index
    simulation.restart(down)  # the log is reset to the snapshot, as the server does
    converge(simulation)
    assert_identical_everywhere(simulation)


def test_a_paused_leader_does_not_trust_its_lease_when_it_resumes() -> None:
    simulation = quiet_simulation(nodes=3)
    old = elect(simulation)
    commit(simulation, put("x", "1"))
    simulation.run(6)
    assert simulation.nodes[old].lease_usable()
    simulation.pause(old, 60)  # longer than an election timeout: the others move on
    others = [n for n in simulation.node_ids if n != old]
    commit(simulation, put("x", "2"), among=others)
    for node_id in others:  # keep the old leader from hearing of the new term at once
        simulation.block(node_id, old)
    assert simulation.run_until(lambda: not simulation.nodes[old].paused(simulation.now), 100)
    simulation.tick()
    assert simulation.node(old).role is Role.LEADER  # it does not know yet
    # Its ticks stood still, so the core would trust acknowledgements from before the pause;
    # the driver's blackout (as in the server's ticker) is what keeps the lease unusable.
    assert simulation.node(old).lease_valid()
    assert not simulation.nodes[old].lease_usable()
    simulation.heal()
    converge(simulation)
    assert simulation.kv(old).get("x") == "2"
