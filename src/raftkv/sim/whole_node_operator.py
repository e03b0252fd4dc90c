"""The whole-node simulator's operator: what happens to the machines (power losses, some
inside a disk operation; restarts; partitions and lost frames; process pauses) and what an
operator does to the cluster through its HTTP API, as `raft-node` and `raft-client` would:
new nodes join (`--join`), members are removed, a removed id comes back on a new disk,
leadership moves, and a node whose disk failed is restarted."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from raftkv.sim.whole_node_machine import Machine, MachineState

if TYPE_CHECKING:
    from raftkv.sim.whole_node import WholeNodeSimulation

# How long a join keeps trying before the operator gives up on it (a partition, no leader).
JOIN_ATTEMPTS_MAX = 10
JOIN_RETRY_SECONDS = 0.2
OPERATOR_REQUEST_TIMEOUT_SECONDS = 2.0
# A process pause: long enough to outlast an election timeout and a lease.
PAUSE_SECONDS = (0.05, 1.5)


class Operator:
    def __init__(self, simulation: WholeNodeSimulation, rng: random.Random) -> None:
        self.simulation = simulation
        self.rng = rng
        # One membership change or leadership transfer at a time, as an operator would.
        self._busy = False

    # --- the fault loop -------------------------------------------------------------------
    async def run(self) -> None:
        simulation, rng = self.simulation, self.rng
        while simulation.issuing:
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            if not simulation.issuing:
                return  # healed meanwhile: nothing after the heal
            self.restart_failed_storage()
            self._fault(rng.random())
            if simulation.membership_changes and not self._busy and rng.random() < 0.15:
                self._start(self._change_membership)

    def _fault(self, draw: float) -> None:
        simulation, rng = self.simulation, self.rng
        stats = simulation.stats
        running = simulation.machines_in(MachineState.RUNNING)
        down = simulation.machines_in(MachineState.DOWN)
        if draw < 0.10 and running:
            simulation.crash(self._victim(running))
        elif draw < 0.16 and running:
            # A power loss inside one of the next disk operations of a node.
            rng.choice(running).disk.schedule_crash(rng.randint(1, 40))
        elif draw < 0.36 and down:
            simulation.restart(rng.choice(down))
        elif draw < 0.44:
            stats.partitions += 1
            simulation.hub.isolate(self._victim(running).id if running else 1)
        elif draw < 0.52:
            simulation.hub.heal()
        elif draw < 0.56:
            simulation.hub.set_drop_probability(rng.choice((0.0, 0.05, 0.2)))
        elif draw < 0.62 and running:
            stats.pauses += 1
            simulation.loop.pause(self._victim(running).owner, rng.uniform(*PAUSE_SECONDS))
        elif draw < 0.67 and not self._busy and simulation.membership_changes:
            self._start(self._transfer_leadership)

    def _victim(self, running: list[Machine]) -> Machine:
        """Half the time the leader (Jepsen's kill-leader and partition-leader nemeses:
        most of the protocol's hard cases start there), else any running node."""
        leader = self.simulation.leader()
        if leader is not None and self.rng.random() < 0.5:
            return leader
        return self.rng.choice(running)

    def restart_failed_storage(self) -> None:
        """A node whose disk failed stops taking part and says why (SPEC); the operator
        restarts its machine."""
        simulation = self.simulation
        for machine in simulation.machines_in(MachineState.RUNNING):
            server = machine.server
            reason = server.storage_failure if server is not None else None
            if reason is None:
                continue
            # (One that no disk fault explains has already failed the run, as it happened.)
            simulation.stats.storage_failures += 1
            simulation.crash(machine)

    def _start(self, operation: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._busy = True
        self.simulation.in_process(self.simulation.OPERATOR_OWNER, self._finally_idle(operation))

    async def _finally_idle(self, operation: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # The operation's coroutine is made here, not by the caller: one made and never
        # awaited (the run ended first) would warn when collected.
        try:
            await operation()
        finally:
            self._busy = False

    # --- operations through the API -----------------------------------------------------
    async def _transfer_leadership(self) -> None:
        simulation, rng = self.simulation, self.rng
        leader = simulation.leader()
        if leader is None:
            return
        voters = sorted(leader.server_node().membership.all_voters - {leader.id})
        if not voters:
            return
        simulation.stats.transfers += 1
        await simulation.call(
            leader.id,
            "POST",
            "/v1/transfer-leader",
            {"to": rng.choice(voters)},
            OPERATOR_REQUEST_TIMEOUT_SECONDS,
        )

    async def _change_membership(self) -> None:
        simulation, rng = self.simulation, self.rng
        leader = simulation.leader()
        if leader is None:
            return
        members = leader.server_node().membership.members
        outside = [
            machine
            for machine in simulation.machines.values()
            if machine.id not in members and machine.server is None
        ]
        # Grow toward the full size more often than shrink; never remove the last member.
        if outside and (len(members) <= 1 or rng.random() < 0.6):
            await self.join(rng.choice(outside))
            if rng.random() < 0.5:
                # Rolling operations move leadership right after adding a node, while the
                # newcomer is still a learner waiting for its promotion.
                await self._transfer_leadership()
        elif len(members) > 1:
            await self._remove(rng.choice(sorted(members)))

    async def _remove(self, member: int) -> None:
        simulation = self.simulation
        leader = simulation.leader()
        if leader is None:
            return
        status, _ = await simulation.call(
            leader.id, "DELETE", f"/v1/members/{member}", None, OPERATOR_REQUEST_TIMEOUT_SECONDS
        )
        if status != 200:
            return
        simulation.stats.removals += 1
        machine = simulation.machines[member]
        if machine.state in (MachineState.DOWN, MachineState.REFUSED):
            # Not running: it never learns of its removal; its disk is stale from now on.
            machine.state = MachineState.REMOVED

    async def grow(self, node_ids: list[int]) -> None:
        """A cluster founded by one node: the others join one at a time, a while apart, so
        the single voter serves with learners for a while (and again after removals)."""
        simulation, rng = self.simulation, self.rng
        for node_id in node_ids:
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            machine = simulation.machines[node_id]
            while self._busy:
                await asyncio.sleep(0.1)
            if machine.state is MachineState.NEW:
                self._busy = True
                try:
                    await self.join(machine)
                finally:
                    self._busy = False

    async def join(self, machine: Machine) -> None:
        """`raft-node --join`: a new disk (a removed id comes back empty), ask any member
        for the cluster and to add this node (following leader hints), then start with
        what the answer said."""
        simulation, rng = self.simulation, self.rng
        simulation.new_disk(machine)
        machine.state = MachineState.JOINING
        for _ in range(JOIN_ATTEMPTS_MAX):
            running = simulation.machines_in(MachineState.RUNNING)
            if not running:
                break
            contact = rng.choice(running).id
            status, described = await simulation.call(
                contact, "GET", "/v1/members", None, OPERATOR_REQUEST_TIMEOUT_SECONDS
            )
            if status == 200:
                status, answer = await simulation.call(
                    contact,
                    "POST",
                    "/v1/members",
                    {"id": machine.id, "address": simulation.peer_address_text(machine.id)},
                    OPERATOR_REQUEST_TIMEOUT_SECONDS,
                )
                if status == 200 and isinstance(answer.get("index"), int):
                    simulation.stats.joins += 1
                    simulation.start(machine, joining=(described, answer["index"]))
                    return
            await asyncio.sleep(JOIN_RETRY_SECONDS)
        # Gave up: the id may or may not have been added; either way the node is not running.
        machine.state = MachineState.NEW
