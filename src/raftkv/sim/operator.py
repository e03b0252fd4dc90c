"""The operator: administrative actions during a run, beside the clients' traffic.

* Leadership transfers (thesis §3.10): now and then the leader is asked to hand over to
  another voter. After some transfers the fault injector makes the old leader deaf.
* Membership changes (`--workload membership`, paper §6): a voter is removed, a removed node
  is added back, or both at once through a joint configuration (which the core leaves by
  itself). When the clients stop, the operator restores the full configuration, so the
  liveness phase ends with every node a voter again.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final

from raftkv.core.membership import Membership
from raftkv.core.node import RaftNode
from raftkv.errors import NotLeader, ProposalDropped

if TYPE_CHECKING:
    from raftkv.sim.cluster import Simulation

TRANSFER_PROBABILITY_PER_TICK: Final = 0.004
MEMBERSHIP_CHANGE_PROBABILITY_PER_TICK: Final = 0.01
# Share of membership changes that swap two voters in one joint configuration.
JOINT_CHANGE_SHARE = 0.4
# Never shrink the voters below this: two voters make every failure fatal for liveness.
VOTERS_MIN = 3


class Operator:
    def __init__(
        self,
        rng: random.Random,
        simulation: Simulation,
        *,
        transfers: bool,
        membership_changes: bool,
    ) -> None:
        self._rng = rng
        self._simulation = simulation
        self.transfers = transfers
        self.membership_changes = membership_changes
        self.active = transfers or membership_changes

    def tick(self, now: int, issuing: bool) -> None:
        rng = self._rng
        if not issuing:
            if self.membership_changes:
                self._restore_full_membership()
            return
        if self.transfers and rng.random() < TRANSFER_PROBABILITY_PER_TICK:
            self._transfer_leadership()
        if self.membership_changes and rng.random() < MEMBERSHIP_CHANGE_PROBABILITY_PER_TICK:
            self._change_membership(now)

    def _leader(self) -> tuple[int, RaftNode] | None:
        simulation = self._simulation
        leader_id = simulation.leader()
        return None if leader_id is None else (leader_id, simulation.node(leader_id))

    def _log(self, text: str) -> None:
        transcript = self._simulation.transcript
        if transcript.enabled:
            transcript.line(self._simulation.now, f"operator: {text}")

    def _transfer_leadership(self) -> None:
        simulation = self._simulation
        found = self._leader()
        if found is None:
            return
        leader_id, leader = found
        targets = sorted(leader.membership.voters - {leader_id})
        if not targets:
            return
        target = self._rng.choice(targets)
        simulation.stats.transfers += 1
        self._log(f"transfer leadership {leader_id} -> {target}")
        try:
            leader.transfer_leadership(target)
        except ProposalDropped:
            return  # refused (not a voter any more): nothing happened
        simulation.faults.after_transfer(leader_id)

    def _change_membership(self, now: int) -> None:
        found = self._leader()
        if found is None:
            return
        leader_id, leader = found
        current = leader.membership
        if current.is_joint:
            return
        rng = self._rng
        voters = set(current.voters)
        outside = sorted(set(self._simulation.node_ids) - voters)
        removable = sorted(voters - {leader_id}) if len(voters) > VOTERS_MIN else []
        if outside and removable and rng.random() < JOINT_CHANGE_SHARE:
            gone, back = rng.choice(removable), rng.choice(outside)
            new = Membership(
                voters=frozenset((voters - {gone}) | {back}), voters_outgoing=current.voters
            )
            self._propose(leader, new, f"joint change: {gone} out, {back} in")
        elif outside and (not removable or rng.random() < 0.5):
            back = rng.choice(outside)
            self._propose(leader, Membership(voters=frozenset(voters | {back})), f"add {back}")
        elif removable:
            gone = rng.choice(removable)
            self._propose(leader, Membership(voters=frozenset(voters - {gone})), f"remove {gone}")

    def _restore_full_membership(self) -> None:
        found = self._leader()
        if found is None:
            return
        _, leader = found
        everyone = frozenset(self._simulation.node_ids)
        if leader.membership.voters != everyone and not leader.membership.is_joint:
            self._propose(leader, Membership(voters=everyone), "restore every node as voter")

    def _propose(self, leader: RaftNode, membership: Membership, text: str) -> None:
        try:
            leader.propose_membership(membership)
        except (NotLeader, ProposalDropped):
            return  # a change in progress or a transfer: try another time
        self._simulation.stats.membership_changes += 1
        self._log(text)
