"""`PeerBook`, the node's view of its peers and its own membership, on its own: what it tells
the transport as configurations arrive, when it decides this node was removed, and that a
removed peer is forgotten only after the grace period, never after `close()`. Timers run on
the simulator's loop (virtual time: the grace period passes without waiting)."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from raftkv.core import Membership
from raftkv.server.options import REMOVED_PEER_GRACE_SECONDS
from raftkv.server.peer_book import PeerBook
from raftkv.server.peers_file import load_peer_addresses
from raftkv.sim.event_loop import SimulatedEventLoop
from raftkv.storage import open_data_dir
from raftkv.storage.datadir import DataDir
from raftkv.storage.filesystem import OS_FILE_SYSTEM

ME = 2
OWN_ADDRESS = ("127.0.0.1", 9002)


class TransportView:
    """What a transport was told: whom to dial, whom it forgot, the applied configuration."""

    def __init__(self) -> None:
        self.addresses: dict[int, tuple[str, int]] = {}
        self.removed: list[int] = []
        self.applied: tuple[int, frozenset[int]] = (0, frozenset())

    def set_peer_address(self, node_id: int, host: str, port: int) -> None:
        self.addresses[node_id] = (host, port)

    def remove_peer(self, node_id: int) -> None:
        self.removed.append(node_id)
        self.addresses.pop(node_id, None)

    def set_applied_configuration(self, index: int, members: Collection[int]) -> None:
        self.applied = (index, frozenset(members))


def configuration(*members: int) -> Membership:
    return Membership(
        voters=frozenset(members),
        addresses={member: f"127.0.0.1:{9000 + member}" for member in members},
    )


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[DataDir]:
    opened = open_data_dir(str(tmp_path), ME, "cluster", filesystem=OS_FILE_SYSTEM)
    yield opened
    opened.close()


def opened_book(directory: DataDir, joined_index: int = 0) -> tuple[PeerBook, TransportView]:
    book = PeerBook(ME)
    if joined_index:
        book.joined({1: ("127.0.0.1", 9001)}, joined_index)
    book.open(directory, {1: ("127.0.0.1", 9001), 3: ("127.0.0.1", 9003)}, OWN_ADDRESS)
    transport = TransportView()
    book.attach(transport)  # type: ignore[arg-type]
    return book, transport


def test_attach_dials_every_peer_but_this_node_and_the_file_keeps_them(directory: DataDir) -> None:
    book, transport = opened_book(directory)
    assert transport.addresses == {1: ("127.0.0.1", 9001), 3: ("127.0.0.1", 9003)}
    assert load_peer_addresses(directory.path, OS_FILE_SYSTEM) == {
        1: ("127.0.0.1", 9001),
        2: OWN_ADDRESS,
        3: ("127.0.0.1", 9003),
    }
    assert book.member_since == 1  # a founder: the log's first configuration


def test_a_new_member_in_the_log_is_dialed_at_once_and_saved(directory: DataDir) -> None:
    book, transport = opened_book(directory)
    book.newest_membership(configuration(1, 2, 3, 4), 7)
    assert transport.addresses[4] == ("127.0.0.1", 9004)
    assert load_peer_addresses(directory.path, OS_FILE_SYSTEM)[4] == ("127.0.0.1", 9004)


def test_a_removed_peer_is_forgotten_after_the_grace_period_not_before(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def apply_removal() -> tuple[PeerBook, TransportView]:
        book, transport = opened_book(directory)
        book.membership_applied(configuration(1, 2), 9)
        return book, transport

    book, transport = loop.run_until_complete(apply_removal())
    assert 3 not in book.addresses and transport.applied == (9, frozenset({1, 2}))
    assert 3 not in load_peer_addresses(directory.path, OS_FILE_SYSTEM)
    # Its last messages (the commit that tells it) may still be queued: not forgotten yet.
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 0.9)
    assert transport.removed == []
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 0.2)
    assert transport.removed == [3]
    assert not book.removed.is_set()
    loop.close()


def test_a_closed_book_forgets_nobody(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def apply_removal_then_close() -> TransportView:
        book, transport = opened_book(directory)
        book.membership_applied(configuration(1, 2), 9)
        book.close()  # the node stops: its transport is closing
        return transport

    transport = loop.run_until_complete(apply_removal_then_close())
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 2)
    assert transport.removed == []
    loop.close()


def test_removed_only_by_leaving_a_configuration_held_since_the_join(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def replay() -> list[bool]:
        book, _ = opened_book(directory, joined_index=5)
        seen = []
        # Replayed from before this node's join: an earlier life of id 2, removed at 3.
        for index, members in ((1, (1, 2, 3)), (3, (1, 3)), (5, (1, 2, 3)), (8, (1, 3))):
            book.membership_applied(configuration(*members), index)
            seen.append(book.removed.is_set())
        book.close()
        return seen

    assert loop.run_until_complete(replay()) == [False, False, False, True]
    loop.close()


def test_a_refusal_as_removed_stops_the_node(directory: DataDir) -> None:
    book, _ = opened_book(directory)
    book.refused_as_removed(3)
    assert book.removed.is_set()


def test_a_peer_learnt_from_a_configuration_truncated_away_is_forgotten(
    directory: DataDir,
) -> None:
    """Node 4 is learnt from a configuration appended from a leader that lost office; the
    next leader's log overwrites it, and the newest configuration is the applied one again.
    Nothing forgot node 4, and the node dialed it for good (the whole-node simulator's
    seeds 805, 851 and 869 at 5 nodes: "node 3 still dials node 4, not a member")."""
    loop = SimulatedEventLoop(random.Random(1))

    async def learn_then_truncate() -> tuple[PeerBook, TransportView]:
        book, transport = opened_book(directory)
        book.membership_applied(configuration(1, 2, 3), 9)
        book.newest_membership(configuration(1, 2, 3, 4), 12)  # uncommitted
        assert transport.addresses[4] == ("127.0.0.1", 9004)
        book.newest_membership(configuration(1, 2, 3), 9)  # index 12 overwritten
        return book, transport

    book, transport = loop.run_until_complete(learn_then_truncate())
    assert 4 not in book.addresses
    assert 4 not in load_peer_addresses(directory.path, OS_FILE_SYSTEM)
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 1.1)
    assert transport.removed == [4]
    assert set(transport.addresses) == {1, 3}
    loop.close()


def test_a_joiner_keeps_the_members_it_was_told_of_while_replaying_older_configurations(
    directory: DataDir,
) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def replay() -> TransportView:
        book, transport = opened_book(directory, joined_index=20)
        book.newest_membership(configuration(1, 5), 1)  # the founders, long before the join
        return transport

    transport = loop.run_until_complete(replay())
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 2)
    assert transport.removed == [] and {1, 3} <= set(transport.addresses)
    loop.close()
