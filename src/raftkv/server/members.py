"""Cluster operations on a running node: listing and changing the membership (§6, joint
consensus), promoting caught-up learners, and leadership transfer (thesis §3.10)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from raftkv.addresses import AddressError, format_address, parse_host_port
from raftkv.core import Membership, RaftNode
from raftkv.core.node import MembershipChangeRefused
from raftkv.errors import NotLeader, RaftError, Timeout
from raftkv.server.peer_book import PeerBook

logger = logging.getLogger("raftkv.node")

# A learner is promoted once it is this close to the leader's commit index.
PROMOTION_LAG_ENTRIES_MAX = 100
# How often the leader looks for learners to promote.
PROMOTION_CHECK_SECONDS = 0.2


class MembershipHost(Protocol):
    """What membership operations need of the node (`RaftServer`). Properties: the core
    and the cluster id exist only once the node has started, and addresses change."""

    @property
    def id(self) -> int: ...

    @property
    def node(self) -> RaftNode: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def peers(self) -> PeerBook:
        """Peer addresses known to this node, the log's and those it started with."""

    def leader_client_address(self, leader_id: int | None) -> str | None: ...

    def wake(self) -> None:
        """Have the Ready loop look at the core again (after a proposal)."""


class MembershipOperations:
    def __init__(
        self,
        server: MembershipHost,
        wait_entry: Callable[[int, int], Awaitable[object]],
        *,
        request_timeout_seconds: float,
        tick_seconds: float,
    ) -> None:
        self.server = server
        # Waits until an entry this leader appended applies (RequestTracker.wait_entry).
        self._wait_entry = wait_entry
        self._request_timeout_seconds = request_timeout_seconds
        self._tick_seconds = tick_seconds
        self._leader_changed = asyncio.Event()

    def describe(self) -> dict[str, Any]:
        server = self.server
        node = server.node
        membership = node.membership
        members = []
        for member in sorted(membership.members):
            address = membership.addresses.get(member)
            if address is None and member in server.peers.addresses:
                address = format_address(server.peers.addresses[member])
            members.append(
                {
                    "id": member,
                    "role": "voter" if membership.is_voter(member) else "learner",
                    "address": address,
                    "client_address": server.leader_client_address(member),
                }
            )
        return {
            "members": members,
            "leader": node.leader_id,
            "joint": membership.is_joint,
            "cluster_id": server.cluster_id,
        }

    def _known_addresses(self, membership: Membership) -> dict[int, str]:
        server = self.server
        addresses = dict(membership.addresses)
        for member in membership.members:
            if member not in addresses and member in server.peers.addresses:
                addresses[member] = format_address(server.peers.addresses[member])
        return addresses

    async def _change(self, membership: Membership) -> int:
        server = self.server
        index, term = server.node.propose_membership(membership)
        server.wake()
        await self._wait_entry(index, term)
        return index

    async def add(self, member: int, address: str) -> dict[str, Any]:
        """Add a node as a learner; it is promoted to voter once it has caught up.
        Idempotent: adding a member again changes nothing."""
        server = self.server
        node = server.node
        self._require_leader()
        try:
            parse_host_port(address)
        except AddressError as error:
            raise MembershipChangeRefused(str(error)) from None
        current = node.membership
        if member in current.members:
            # `index`: the configuration in force, which holds the member (a joining node
            # records it: configurations before it are history, see RaftServer).
            return {
                "ok": True,
                "changed": False,
                "index": node.membership_index,
                "members": sorted(current.members),
            }
        addresses = self._known_addresses(current)
        addresses[member] = address
        change = Membership(
            voters=current.voters,
            learners=current.learners | {member},
            addresses=addresses,
        )
        index = await self._change(change)
        logger.info("added node%d at %s as a learner (index %d)", member, address, index)
        return {"ok": True, "changed": True, "index": index, "members": sorted(change.members)}

    async def remove(self, member: int) -> dict[str, Any]:
        server = self.server
        node = server.node
        self._require_leader()
        current = node.membership
        if member not in current.members:
            return {"ok": True, "changed": False, "members": sorted(current.members)}
        voters = current.voters - {member}
        if not voters:
            raise MembershipChangeRefused("refusing to remove the last voter")
        addresses = self._known_addresses(current)
        addresses.pop(member, None)
        if member in current.voters:
            # Joint consensus (§6): old and new voter sets both decide until the leader
            # leaves the joint configuration on its own.
            change = Membership(
                voters=voters,
                voters_outgoing=current.voters,
                learners=current.learners,
                addresses=addresses,
            )
        else:
            change = Membership(
                voters=current.voters, learners=current.learners - {member}, addresses=addresses
            )
        index = await self._change(change)
        logger.info("removed node%d (index %d)", member, index)
        return {"ok": True, "changed": True, "index": index, "members": sorted(voters)}

    async def promote_caught_up_learners(self) -> None:
        """Runs on every node; acts only while leader and no change is in flight.

        A background task must outlive every refusal it can meet (not leader, a change in
        flight, a transfer, a full proposal window) and log what it did not expect: a task
        that dies silently here left learners unpromoted until a restart.
        """
        while True:
            await asyncio.sleep(PROMOTION_CHECK_SECONDS)
            try:
                self.promote_one_learner()
            except RaftError as error:
                logger.info("learner promotion postponed: %s", error)
            except Exception:
                logger.exception("learner promotion failed; trying again later")

    def promote_one_learner(self) -> int | None:
        """Propose promoting the first caught-up, live learner; returns its id, if any.

        Only a learner that answered within an election timeout: a dead one that had caught
        up would become a voter that cannot vote, and with one voter before, a change to
        two would stall every write until it returns.
        """
        server = self.server
        node = server.node
        if node.role != "leader" or node.membership_index > node.log.committed:
            return None
        current = node.membership
        if current.is_joint:
            return None
        peers = node.peer_status()
        for learner in sorted(current.learners):
            progress = peers.get(learner)
            if (
                progress is None
                or not progress.active
                or node.log.committed - progress.match > PROMOTION_LAG_ENTRIES_MAX
                # It must hold the configuration that names it: a node with none votes for
                # nobody (core), and a voter that cannot vote can stall elections for good.
                or progress.match < node.membership_index
            ):
                continue
            change = Membership(
                voters=current.voters | {learner},
                voters_outgoing=current.voters,
                learners=current.learners - {learner},
                addresses=self._known_addresses(current),
            )
            node.propose_membership(change)
            server.wake()
            logger.info("promoting caught-up learner node%d to voter", learner)
            return learner
        return None

    def leader_changed(self) -> None:
        self._leader_changed.set()

    async def transfer_leadership(self, target: int, timeout_seconds: float | None = None) -> int:
        """Move leadership to `target`; returns once this node sees it lead."""
        server = self.server
        node = server.node
        self._require_leader()
        if target == server.id:
            return target
        node.transfer_leadership(target)
        server.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_seconds or self._request_timeout_seconds)
        poll_seconds = self._tick_seconds
        while node.leader_id != target:
            if node.role == "leader" and node.transfer_target is None:
                raise Timeout(
                    f"leadership transfer to node{target} aborted: it did not catch up "
                    "within an election timeout"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(f"leadership did not move to node{target} in time")
            self._leader_changed.clear()
            try:
                # Woken by a leader change; polled each tick to notice an abort.
                async with asyncio.timeout(min(remaining, poll_seconds)):
                    await self._leader_changed.wait()
            except TimeoutError:
                continue
        return target

    def _require_leader(self) -> None:
        node = self.server.node
        if node.role != "leader":
            raise NotLeader(node.leader_id)
