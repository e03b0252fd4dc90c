"""`PeerBook`, the node's view of its peers and its own membership, on its own: what it tells
the transport as configurations arrive, when it decides this node was removed, and that a
removed peer is forgotten only after the grace period, never after `close()`. Timers run on
the simulator's loop (virtual time: the grace period passes without waiting)."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pytest

from raftkv.core import Membership
from raftkv.server.options import REMOVAL_NOTICE_SECONDS, REMOVED_PEER_GRACE_SECONDS
from raftkv.server.peer_book import PeerBook
from raftkv.server.peers_file import (
    REMOVAL_NOTICES_FILE_NAME,
    load_peer_addresses,
    load_removal_notices,
)
from raftkv.sim.event_loop import SimulatedEventLoop
from raftkv.storage import open_data_dir
from raftkv.storage.datadir import DataDir
from raftkv.storage.filesystem import OS_FILE_SYSTEM

ME = 2
OWN_ADDRESS = ("127.0.0.1", 9002)


class TransportView:
    """What a transport was told: whom to dial, whom it forgot, the applied configuration,
    whom it tells of their removal."""

    def __init__(self) -> None:
        self.addresses: dict[int, tuple[str, int]] = {}
        # Peers forgotten, each with the index of the configuration that removed it.
        self.removed: list[tuple[int, int]] = []
        self.applied: tuple[int, frozenset[int]] = (0, frozenset())
        # Removal notices being dialed: id -> (address, removed_at, on_told).
        self.notices: dict[int, tuple[tuple[str, int], int, Callable[[], None]]] = {}
        self.stopped_telling: list[int] = []

    def set_peer_address(self, node_id: int, host: str, port: int) -> None:
        self.addresses[node_id] = (host, port)
        self.stop_telling(node_id)  # a member again, as the real transports do

    def remove_peer(self, node_id: int, removed_at: int = 0) -> None:
        self.removed.append((node_id, removed_at))
        self.addresses.pop(node_id, None)

    def set_applied_configuration(self, index: int, members: Collection[int]) -> None:
        self.applied = (index, frozenset(members))

    def tell_removed(
        self, node_id: int, host: str, port: int, removed_at: int, on_told: Callable[[], None]
    ) -> None:
        self.notices[node_id] = ((host, port), removed_at, on_told)

    def stop_telling(self, node_id: int) -> None:
        if self.notices.pop(node_id, None) is not None:
            self.stopped_telling.append(node_id)


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
    assert transport.removed == [(3, 9)]
    assert not book.removed.is_set()
    loop.close()


def test_a_peer_dropped_learnt_again_then_removed_gets_the_whole_grace(
    directory: DataDir,
) -> None:
    """Session 29, on real processes: a joiner replaying configurations older than its join
    dropped node 3 for a moment (the first configuration held only node 1) and learnt it
    again; that drop's timer, still running, cut the grace of node 3's real removal a
    second later short, and the transport forgot node 3 a second early."""
    loop = SimulatedEventLoop(random.Random(1))

    async def drop_learn_again_remove() -> tuple[PeerBook, TransportView]:
        book, transport = opened_book(directory)
        book.newest_membership(configuration(1, 2), 5)  # uncommitted: drops node 3
        book.newest_membership(configuration(1, 2, 3), 6)  # learnt again
        return book, transport

    book, transport = loop.run_until_complete(drop_learn_again_remove())
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 0.6)

    async def remove() -> None:
        book.membership_applied(configuration(1, 2, 3), 6)
        book.membership_applied(configuration(1, 2), 9)

    loop.run_until_complete(remove())
    # The first drop's timer would fire now: node 3 must still be dialed.
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 0.6)
    assert transport.removed == []
    loop.run_for(REMOVED_PEER_GRACE_SECONDS * 0.6)
    assert transport.removed == [(3, 9)]
    book.close()
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
    assert transport.removed == [(4, 9)]
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


def notices_file(directory: DataDir) -> dict[int, tuple[tuple[str, int], int]]:
    return load_removal_notices(directory.path, OS_FILE_SYSTEM)


async def apply_removal_of_3(directory: DataDir) -> tuple[PeerBook, TransportView]:
    book, transport = opened_book(directory)
    book.membership_applied(configuration(1, 2, 3), 5)
    book.membership_applied(configuration(1, 2), 9)
    return book, transport


def test_a_member_that_applies_a_removal_tells_the_removed_node_until_it_answers(
    directory: DataDir,
) -> None:
    """Session 29: a removed node that dials no member (every peer it knows is gone) heard
    of its removal from no one (`raft-sim --whole-node --seed 25101 ...`)."""
    loop = SimulatedEventLoop(random.Random(1))
    book, transport = loop.run_until_complete(apply_removal_of_3(directory))
    address, removed_at, on_told = transport.notices[3]
    assert (address, removed_at) == (("127.0.0.1", 9003), 9)
    # Kept in the data dir, its address too (which the peers file no longer holds).
    assert notices_file(directory) == {3: (("127.0.0.1", 9003), 9)}
    assert 3 not in load_peer_addresses(directory.path, OS_FILE_SYSTEM)
    on_told()
    assert book.removal_notices == {} and notices_file(directory) == {}
    # Answered: no deadline left to give it up later.
    loop.run_for(REMOVAL_NOTICE_SECONDS * 2)
    assert transport.stopped_telling == []
    book.close()
    loop.close()


def test_a_notice_outlives_a_restart_of_the_member(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))
    book, _ = loop.run_until_complete(apply_removal_of_3(directory))
    book.close()

    async def restart() -> TransportView:
        return opened_book(directory)[1]

    transport = loop.run_until_complete(restart())
    assert transport.notices[3][:2] == (("127.0.0.1", 9003), 9)
    loop.close()


def test_a_notice_unanswered_for_its_time_is_given_up_for_good(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))
    book, transport = loop.run_until_complete(apply_removal_of_3(directory))
    loop.run_for(REMOVAL_NOTICE_SECONDS * 0.9)
    assert 3 in transport.notices
    loop.run_for(REMOVAL_NOTICE_SECONDS * 0.2)
    assert transport.stopped_telling == [3]
    assert book.removal_notices == {} and notices_file(directory) == {}
    book.close()
    loop.close()


def test_a_node_re_added_is_no_longer_told_it_was_removed(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def remove_then_re_add() -> tuple[PeerBook, TransportView]:
        book, transport = await apply_removal_of_3(directory)
        book.membership_applied(configuration(1, 2, 3), 14)
        return book, transport

    book, transport = loop.run_until_complete(remove_then_re_add())
    assert transport.stopped_telling == [3] and transport.notices == {}
    assert notices_file(directory) == {}
    book.close()
    loop.close()


def test_a_notice_withdrawn_by_a_re_add_truncated_away_is_given_again(directory: DataDir) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def re_add_then_truncate() -> TransportView:
        book, transport = await apply_removal_of_3(directory)
        book.newest_membership(configuration(1, 2, 3), 12)  # uncommitted: a member again
        assert 3 not in transport.notices
        book.newest_membership(configuration(1, 2), 9)  # index 12 overwritten
        book.close()
        return transport

    transport = loop.run_until_complete(re_add_then_truncate())
    assert transport.notices[3][:2] == (("127.0.0.1", 9003), 9)
    loop.close()


def test_no_notice_from_a_removed_node_nor_from_configurations_before_the_join(
    directory: DataDir,
) -> None:
    loop = SimulatedEventLoop(random.Random(1))

    async def replay() -> TransportView:
        book, transport = opened_book(directory, joined_index=5)
        # Before this node's join: history, whose removals others told (or will).
        book.membership_applied(configuration(1, 3, 4), 1)
        book.membership_applied(configuration(1, 3), 3)
        assert transport.notices == {}
        book.membership_applied(configuration(1, 2, 3), 5)
        # This node is removed together with node 3: it stops, and tells nobody.
        book.membership_applied(configuration(1), 8)
        assert book.removed.is_set()
        book.close()
        return transport

    assert loop.run_until_complete(replay()).notices == {}
    loop.close()


def test_a_damaged_notices_file_is_named(directory: DataDir) -> None:
    path = Path(directory.path) / REMOVAL_NOTICES_FILE_NAME
    path.write_text('{"3": {"address": "127.0.0.1:9003", "removed_at": "nine"}}')
    with pytest.raises(ValueError, match=f"{path} is damaged"):
        notices_file(directory)
