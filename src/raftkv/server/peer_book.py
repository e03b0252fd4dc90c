"""This node's view of its peers and of its own membership.

Where each peer listens (the data dir's peers file, kept up to date from `--peers`, what
`--join` learnt and the configurations in the log), the newest configuration the node
applied (which dialers are checked against for their removal, SPEC §4), whether this node
was removed, and the removed peers it still has to tell so (the data dir's removal notices
file). The server feeds it configurations as the log and snapshots bring them; it tells the
transport whom to dial, whom to refuse and whom to tell of their removal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from raftkv.addresses import format_address, parse_host_port
from raftkv.core import Membership
from raftkv.errors import StorageError
from raftkv.server.options import REMOVAL_NOTICE_SECONDS, REMOVED_PEER_GRACE_SECONDS
from raftkv.server.peers_file import (
    load_peer_addresses,
    load_removal_notices,
    save_peer_addresses,
    save_removal_notices,
)
from raftkv.storage.datadir import DataDir
from raftkv.transport.base import Transport

logger = logging.getLogger("raftkv.server")

Address = tuple[str, int]


class PeerBook:
    """Open with `open()` once the data dir is, `attach()` the transport once it is built,
    `close()` at stop. Configurations come in through `membership_applied()` (applied as
    entries, or installed with a snapshot), `snapshot_loaded()` (at start-up) and
    `newest_membership()` (the log's newest, perhaps not yet committed)."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        # Every peer this node dials or accepts, this node's own address included.
        self.addresses: dict[int, Address] = {}
        # Peer addresses learnt while joining (`--join`), before the log tells them.
        self.join_addresses: dict[int, Address] = {}
        # The index of the configuration that added this node (`--join`; kept in the data
        # dir). Only configurations from there on can say this node was removed.
        self.joined_index = 0
        # Set once this node applies a configuration without itself, or a member refuses it
        # as removed (`refused_as_removed`): it should stop.
        self.removed = asyncio.Event()
        # The newest configuration applied (index, members), which peers that dial this
        # node are checked against for their removal (`handshake.removal_refusal`).
        self.applied_configuration: tuple[int, frozenset[int]] = (0, frozenset())
        # Whether this node applied (or started from a snapshot holding) a configuration
        # with itself since its join: only then can leaving one mean it was removed.
        self._was_member = False
        # The newest configuration whose addresses were learnt (`newest_membership`).
        self._membership_index_seen = 0
        self._data_dir: DataDir | None = None
        self._transport: Transport | None = None
        # Removed peers the transport forgets after a grace period, cancelled at close.
        # One timer per peer: a later drop restarts the grace (an earlier drop's timer, of a
        # peer learnt again since, would cut the later one's grace short).
        self._forgetting: dict[int, asyncio.TimerHandle] = {}
        # Peers removed by a configuration this node applied, told so by dialing them until
        # they answer (`Transport.tell_removed`): id -> (address, index of the removal).
        # Kept in the data dir: a member may restart before the removed node is back.
        self.removal_notices: dict[int, tuple[Address, int]] = {}
        # When each notice is given up (`REMOVAL_NOTICE_SECONDS` from this start).
        self._notice_deadlines: dict[int, asyncio.TimerHandle] = {}

    def joined(self, addresses: Mapping[int, Address], joined_index: int) -> None:
        """What `--join` learnt from the leader (before `open`): the members' addresses,
        and the index of the configuration that added this node."""
        self.join_addresses = dict(addresses)
        self.joined_index = joined_index

    def open(self, data_dir: DataDir, given: Mapping[int, Address], own_address: Address) -> None:
        """Load the peers file and add what this start was given (`--peers`, the join's).

        Before the WAL is opened: a node whose WAL exists counts as started (`--join` is
        then ignored), so a crash between the two must not leave it knowing nobody (it
        would refuse every member's connection, for good)."""
        self._data_dir = data_dir
        if self.joined_index > 0:
            data_dir.record_joined_index(self.joined_index)
        self.joined_index = data_dir.joined_index
        self.addresses = load_peer_addresses(data_dir.path, data_dir.filesystem)
        for peer, address in {**self.join_addresses, **given}.items():
            self.addresses[peer] = address
        self.addresses[self.node_id] = own_address
        self._save()
        self.removal_notices = load_removal_notices(data_dir.path, data_dir.filesystem)

    def attach(self, transport: Transport) -> None:
        """Tell a newly built transport whom to dial and the configuration to check
        dialers against."""
        self._transport = transport
        transport.set_applied_configuration(*self.applied_configuration)
        for peer, address in self.addresses.items():
            if peer != self.node_id:
                transport.set_peer_address(peer, *address)
        for peer in list(self.removal_notices):
            self._start_telling(peer)

    def close(self) -> None:
        for handle in (*self._forgetting.values(), *self._notice_deadlines.values()):
            handle.cancel()
        self._forgetting.clear()
        self._notice_deadlines.clear()

    @property
    def member_since(self) -> int:
        """The index of the configuration that made this node a member, for handshakes:
        a founding member's first configuration is the log's first entry."""
        return self.joined_index or 1

    def snapshot_loaded(self, membership: Membership, index: int) -> None:
        """The configuration of the snapshot this node restarts from."""
        self._note(membership, index)

    def forget_removed(self, membership: Membership, index: int) -> None:
        """At start-up, forget the peers the newest configuration in the log (`membership`,
        at `index`) does not hold: a member restarted with the `--peers` it was founded
        with names a member removed since, whose removal may lie inside the snapshot (never
        applied again as an entry), and would dial it for good. A member added later than
        this node knows is learnt from the log as it arrives, and may dial us meanwhile
        (its handshake names its address). A node that holds no configuration yet
        (joining) keeps what it was given."""
        members = membership.members
        if not members:
            return
        removed = [peer for peer in self.addresses if peer != self.node_id and peer not in members]
        if not removed:
            return
        for peer in removed:
            del self.addresses[peer]
        logger.info(
            "not dialing %s: not in the configuration at index %d",
            ", ".join(f"node{peer}" for peer in sorted(removed)),
            index,
        )
        self._save()

    def membership_applied(self, membership: Membership, index: int) -> None:
        """A configuration applied as an entry, or installed with a snapshot (one this
        node never applies as an entry: a follower caught up by a snapshot must learn its
        peers, and its own removal, from it, or it refuses a new leader it never heard of)."""
        previous_index, previous_members = self.applied_configuration
        if self._note(membership, index) and not self.removed.is_set():
            logger.warning("this node was removed from the cluster; stopping")
            self.removed.set()
        transport = self._transport
        assert transport is not None, "configurations are applied once the transport is attached"
        transport.set_applied_configuration(*self.applied_configuration)
        self._stop_telling_members(membership.members)
        if index > previous_index and index >= self.joined_index and not self.removed.is_set():
            self._tell_removed(previous_members - membership.members, index)
        changed = self._learn(membership)
        if membership.addresses:
            changed = self._drop_addresses_outside(membership.members, index) or changed
        if changed:
            self._save()

    def newest_membership(self, membership: Membership, index: int) -> None:
        """The newest configuration in the log (perhaps not yet committed): connect to
        every member. Raft uses a configuration as soon as it is in the log (§6), and a
        member that is not known here cannot be talked to: its connections are refused as
        from an unknown node, so a new leader could never reach us."""
        if index != self._membership_index_seen:
            self._membership_index_seen = index
            changed = self._learn(membership)
            if membership.addresses and index >= self.joined_index:
                # A peer learnt from a configuration since truncated away (appended from a
                # leader that lost office, overwritten by the next one's log), and held by
                # neither this one nor the applied one, would be dialed for good. (Not while
                # a joiner replays configurations older than its join: the members it was
                # told of would be dropped until the log caught up.)
                keep = membership.members | self.applied_configuration[1]
                # A removed peer re-added by a configuration now truncated away: learning
                # it withdrew its removal notice from the transport; it is told again.
                resumed = [p for p in self.removal_notices if p in self.addresses and p not in keep]
                changed = self._drop_addresses_outside(keep, index) or changed
                for peer in resumed:
                    self._start_telling(peer)
            if changed:
                self._save()

    def _tell_removed(self, peers: frozenset[int], index: int) -> None:
        """Tell each peer the configuration at `index` removed, by dialing it (`Transport.
        tell_removed`), until it answers: a removed node whose every known peer is gone
        (it joined through a member removed since, and holds nothing newer) is dialed by
        no one else, and no member refuses it, for it dials none. (Before its address is
        dropped: the caller drops it right after.)"""
        added = False
        for peer in sorted(peers):
            address = self.addresses.get(peer)
            if peer != self.node_id and address is not None:
                self.removal_notices[peer] = (address, index)
                self._start_telling(peer)
                added = True
        if added:
            self._save_notices()

    def _start_telling(self, peer: int) -> None:
        transport = self._transport
        assert transport is not None, "notices are started once the transport is attached"
        address, removed_at = self.removal_notices[peer]
        transport.tell_removed(peer, *address, removed_at, lambda: self._notice_done(peer, True))
        previous = self._notice_deadlines.pop(peer, None)
        if previous is not None:
            previous.cancel()
        self._notice_deadlines[peer] = asyncio.get_running_loop().call_later(
            REMOVAL_NOTICE_SECONDS, self._notice_done, peer, False
        )

    def _notice_done(self, peer: int, told: bool) -> None:
        """The removal notice to `peer` was answered (`told`), or timed out unanswered."""
        notice = self.removal_notices.pop(peer, None)
        deadline = self._notice_deadlines.pop(peer, None)
        if deadline is not None:
            deadline.cancel()
        if notice is None:
            return
        if not told:
            if self._transport is not None:
                self._transport.stop_telling(peer)
            logger.info(
                "gave up telling node%d at %s it was removed (index %d): no answer in %g s",
                peer,
                format_address(notice[0]),
                notice[1],
                REMOVAL_NOTICE_SECONDS,
            )
        try:
            self._save_notices()
        except StorageError as error:
            # Called from the transport or a timer, not the apply path: the file keeps the
            # notice, and a restart only tells the node once more.
            logger.warning("could not forget the removal notice to node%d: %s", peer, error)

    def _stop_telling_members(self, members: frozenset[int]) -> None:
        """A peer re-added since its removal is a member again: no longer told otherwise."""
        again = [peer for peer in self.removal_notices if peer in members]
        for peer in again:
            del self.removal_notices[peer]
            deadline = self._notice_deadlines.pop(peer, None)
            if deadline is not None:
                deadline.cancel()
            if self._transport is not None:
                self._transport.stop_telling(peer)
        if again:
            self._save_notices()

    def refused_as_removed(self, peer: int) -> None:
        """`peer` refused our connection: it applied, so the cluster committed, a
        configuration without this node past the one that made it a member. No leader may
        ever tell us (the leadership changed right after the removal, and a leader never
        talks to a node outside its configuration): stop as on applying the removal."""
        if not self.removed.is_set():
            logger.warning(
                "this node was removed from the cluster (node%d refuses it as removed); stopping",
                peer,
            )
            self.removed.set()

    def _note(self, membership: Membership, index: int) -> bool:
        """Note a configuration applied (or loaded with a snapshot at start-up); whether it
        removes this node.

        A joining node replays configurations from before it was added, perhaps an earlier
        add and removal of the same id: only leaving a configuration it belonged to since
        its own join means it was removed."""
        self.applied_configuration = (index, membership.members)
        if index < self.joined_index:
            return False
        if self.node_id in membership.members:
            self._was_member = True
            return False
        return self._was_member

    def _learn(self, membership: Membership) -> bool:
        transport = self._transport
        assert transport is not None, "configurations are learnt once the transport is attached"
        changed = False
        for member, address_text in membership.addresses.items():
            address = parse_host_port(address_text)
            if member != self.node_id and self.addresses.get(member) != address:
                self.addresses[member] = address
                transport.set_peer_address(member, *address)
                changed = True
        return changed

    def _drop_addresses_outside(self, members: frozenset[int], index: int) -> bool:
        """Stop knowing the address of every peer not in `members` (the configuration at
        `index`, or it and the applied one); whether any."""
        dropped = False
        for member in list(self.addresses):
            if member != self.node_id and member not in members:
                del self.addresses[member]
                # The transport forgets it later, not now: the leader's last message to a
                # removed node (the commit that tells it so) may still be queued.
                earlier = self._forgetting.pop(member, None)
                if earlier is not None:
                    earlier.cancel()
                self._forgetting[member] = asyncio.get_running_loop().call_later(
                    REMOVED_PEER_GRACE_SECONDS, self._forget, member, index
                )
                dropped = True
        return dropped

    def _forget(self, member: int, removed_at: int) -> None:
        self._forgetting.pop(member, None)
        if member not in self.addresses and self._transport is not None:
            self._transport.remove_peer(member, removed_at)
            logger.info("no longer dialing node%d: not in the configuration", member)

    def _save_notices(self) -> None:
        if self._data_dir is not None:
            save_removal_notices(
                self._data_dir.path, self.removal_notices, self._data_dir.filesystem
            )

    def _save(self) -> None:
        if self._data_dir is not None:
            save_peer_addresses(self._data_dir.path, self.addresses, self._data_dir.filesystem)
