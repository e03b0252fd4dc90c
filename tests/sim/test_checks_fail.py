"""The checks can fail: break a Raft rule on purpose (test doubles and monkeypatches that live
only in these tests) and show the sweep reports it within a pinned range of seeds.

The seed ranges were found by sweeping (docs/simulator.md, "Proving the checks"); a change to
the simulator's random choices moves them, and then these tests say so.
"""

from __future__ import annotations

import msgspec
import pytest

from raftkv.core.messages import HardState, RequestVoteResponse
from raftkv.core.node import RaftNode
from raftkv.core.quorum import joint_committed_index
from raftkv.core.ready import Ready
from raftkv.core.replication import Replication
from raftkv.sim import InvariantViolation, SimNode
from raftkv.sim.options import CoreTuning
from raftkv.sim.sweep import SeedOutcome, run_seeds
from tests.sim.helpers import commit, elect, put, quiet_simulation

NODES = 3
# Re-pinned in session 28, when a leader began to keep one ReadIndex round in flight, in
# session 38, when it began to tell commits lazily (RaftConfig.defer_commit_notices), and
# (EARLY_VOTE_SEEDS) in session 45, when half the seeds began to replicate quorum-first.
FIGURE_8_SEEDS = range(27, 30)  # caught at seed 29 (and 53 of seeds 1-60; 12 before)
FORGOTTEN_VOTE_SEEDS = range(13, 16)  # caught at seed 15 (11 of seeds 1-60)
EARLY_VOTE_SEEDS = range(87, 90)  # caught at seed 89 (5 of seeds 1-400; 7 before)
NO_PAUSE_BLACKOUT_SEEDS = range(1, 10)  # caught at seed 9 (7 of seeds 1-60; 5 before)


def commit_by_counting_any_term(self: Replication) -> None:
    """Replication._maybe_commit without the `log.term(index) != node.term` condition:
    counts replicas of a previous term's entry toward commitment (Figure 8, §5.4.2)."""
    node = self.node
    log = node.log
    match = {peer: progress.match for peer, progress in self.progress.items()}
    match[node.id] = log.stable
    index = joint_committed_index(node.membership, match)
    if index <= log.committed:
        return
    log.commit_to(index)
    self._commit_changed = True
    if self._reads_waiting_for_commit and log.term(log.committed) == node.term:
        self._reads_unsent.extend(self._reads_waiting_for_commit)
        self._reads_waiting_for_commit.clear()
    self._after_commit()


class ForgetfulVoterDriver(SimNode):
    """A runtime that drops `voted_for` when it saves the hard state: after a crash the node
    may vote again in the same term (§5.2 requires the vote to be durable)."""

    def save_hard_state(self, hard_state: HardState) -> None:
        super().save_hard_state(msgspec.structs.replace(hard_state, voted_for=None))


class NoLeaseBlackoutDriver(SimNode):
    """A runtime that, after a process pause, trusts the lease at once: its ticks stood still
    during the pause, so acknowledgements from before it look fresh (the server's ticker
    distrusts the lease for two election timeouts instead)."""

    def resume(self) -> None:
        super().resume()
        self.lease_blackout_ticks = 0


class EarlyVoter(RaftNode):
    """Sends vote grants with `messages` (before the save) instead of after it: a crash in
    between forgets a vote that was already granted."""

    def ready(self) -> Ready:
        ready: Ready = super().ready()
        grants = [
            message
            for message in ready.messages_after_persist
            if isinstance(message, RequestVoteResponse)
        ]
        if grants:
            ready.messages_after_persist = [
                message for message in ready.messages_after_persist if message not in grants
            ]
            ready.messages = [*ready.messages, *grants]
        return ready


def first_violation(seeds: range, **options: object) -> SeedOutcome:
    outcomes = run_seeds(
        seeds,
        NODES,
        check_linearizability=False,
        stop_at_first_violation=True,
        **options,  # type: ignore[arg-type]
    )
    failed = [outcome for outcome in outcomes if not outcome.ok]
    assert failed, f"no violation in seeds {seeds.start}..{seeds.stop - 1}"
    return failed[0]


def assert_correct_core_passes(seed: int) -> None:
    (outcome,) = run_seeds([seed], NODES)
    assert outcome.ok, outcome.violation


@pytest.mark.interpreted
def test_sweep_catches_counting_an_old_terms_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(Replication, "_maybe_commit", commit_by_counting_any_term)
        found = first_violation(FIGURE_8_SEEDS)
    assert found.violation is not None
    assert found.violation.startswith(("Leader Completeness", "State Machine Safety"))
    assert f"--seed {found.seed} " in found.replay
    assert_correct_core_passes(found.seed)


def test_sweep_catches_a_vote_that_is_not_persisted() -> None:
    found = first_violation(FORGOTTEN_VOTE_SEEDS, driver_class=ForgetfulVoterDriver)
    assert found.violation is not None and found.violation.startswith("Election Safety")
    assert_correct_core_passes(found.seed)


def test_sweep_catches_a_vote_sent_before_it_is_persisted() -> None:
    found = first_violation(EARLY_VOTE_SEEDS, node_class=EarlyVoter)
    # A vote granted twice in one term: two leaders, or a leader elected without an entry
    # a majority had committed (the second vote came from a node that forgot the first).
    assert found.violation is not None
    assert found.violation.startswith(("Election Safety", "Leader Completeness"))
    assert_correct_core_passes(found.seed)


# One entry per AppendEntries and one message in flight: replication takes a round trip per
# entry, so a follower can hold the old entry without the leader's no-op after it.
ONE_ENTRY_AT_A_TIME = CoreTuning(
    message_bytes_max=64,
    inflight_messages_max=1,
    snapshot_chunk_bytes=1 << 18,
    snapshot_chunks_inflight_max=4,
)


def test_sweep_catches_a_lease_trusted_right_after_a_pause() -> None:
    found = first_violation(NO_PAUSE_BLACKOUT_SEEDS, driver_class=NoLeaseBlackoutDriver)
    assert found.violation is not None and found.violation.startswith("Lease safety")
    assert_correct_core_passes(found.seed)


def run_figure_8() -> None:
    """Figure 8 of the paper, scripted: A leads with an entry of its term replicated nowhere;
    B then leads a later term with another entry at that index, also replicated nowhere; A
    leads again and replicates its old entry to C (one entry per message). Counting that
    replica would commit it, yet B could still win the next election and overwrite it."""
    simulation = quiet_simulation(nodes=3, tuning=ONE_ENTRY_AT_A_TIME)
    a = elect(simulation)
    b, c = [node_id for node_id in simulation.node_ids if node_id != a]
    commit(simulation, put("x", "0"))
    simulation.isolate(a)
    simulation.propose(a, put("x", "A1"))
    simulation.propose(a, put("y", "A2"))
    simulation.partition([a], [b, c])
    b = elect(simulation, [b, c])
    c = next(node_id for node_id in simulation.node_ids if node_id not in (a, b))
    simulation.partition([a], [b], [c])  # B's first AppendEntries are lost in flight
    simulation.propose(b, put("x", "B"))
    simulation.partition([a, c], [b])
    assert simulation.run_until(
        lambda: simulation.leader() == a and simulation.node(a).term > simulation.node(b).term,
        300,
    )
    # A replicates its old entries to C one by one; at once after that, B rejoins C.
    simulation.run(20)
    simulation.partition([a], [b, c])
    simulation.run(100)


@pytest.mark.interpreted
def test_figure_8_scripted_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(Replication, "_maybe_commit", commit_by_counting_any_term)
        with pytest.raises(InvariantViolation) as raised:
            run_figure_8()
    assert raised.value.invariant == "Leader Completeness"
    assert "could still be elected" in raised.value.detail


def test_figure_8_scripted_is_safe_with_the_real_rule() -> None:
    run_figure_8()  # no InvariantViolation
