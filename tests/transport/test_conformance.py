"""The Transport contract, run over every implementation (ARCHITECTURE.md, test layer 4).

`memory` is MemoryTransport on a MemoryHub; `tcp` and `tcp-uvloop` are TcpTransport on
loopback under the standard and the uvloop event loop (the server runs uvloop).
"""

from __future__ import annotations

import logging

import pytest

from raftkv.core import codec
from raftkv.core.membership import Membership
from raftkv.core.messages import (
    AnyMessage,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.transport import TransportLimits
from raftkv.transport.limits import ADOPTED_PEERS_MAX

from .harness import (
    NETWORK_KINDS,
    Inbox,
    Network,
    PeerStates,
    append_entries,
    idle_link,
    run_on_network,
    start_cluster,
    wait_until,
)


@pytest.fixture(params=NETWORK_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_messages_arrive_in_order_between_three_nodes(kind: str) -> None:
    count = 300

    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2, 3])
        for sequence in range(count):
            for sender, (transport, _) in nodes.items():
                for receiver in nodes:
                    if receiver != sender:
                        transport.send(append_entries(sender, receiver, sequence))
        for receiver, (_, inbox) in nodes.items():
            await inbox.wait_for_count(2 * count)
            for sender in nodes:
                if sender != receiver:
                    assert inbox.sequences_from(sender) == list(range(count))
        for node_id, (transport, _) in nodes.items():
            totals = transport.counters().totals()
            assert totals.frames_sent == 2 * count
            assert totals.frames_received == 2 * count
            assert totals.frames_dropped == 0
            assert totals.bytes_sent == totals.bytes_received > 2 * count * 100
            assert all(transport.is_connected(peer) for peer in nodes if peer != node_id)

    run_on_network(kind, body)


def test_every_message_kind_round_trips(kind: str) -> None:
    messages: list[AnyMessage] = [
        AppendEntries(
            to=2,
            term=5,
            leader_id=1,
            prev_log_index=10,
            prev_log_term=4,
            entries=[Entry(term=5, index=11, kind=0, data=b"\x00\xff"), Entry(term=5, index=12)],
            leader_commit=9,
            read_context=3,
        ),
        AppendEntriesResponse(to=2, term=5, from_id=1, success=False, match_index=10),
        RequestVote(to=2, term=6, candidate_id=1, last_log_index=10, last_log_term=4),
        RequestVoteResponse(to=2, term=6, from_id=1, granted=True, pre_vote=True),
        InstallSnapshot(
            to=2,
            term=5,
            leader_id=1,
            last_included_index=100,
            last_included_term=4,
            offset=0,
            data=bytes(range(256)) * 8,
            done=True,
            membership=Membership(voters=frozenset({1, 2})).encode(),  # decoded: a real one
        ),
        InstallSnapshotResponse(to=2, term=5, from_id=1, last_included_index=100, next_offset=0),
        TimeoutNow(to=2, term=5, leader_id=1),
    ]

    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2])
        sender, _ = nodes[1]
        _, inbox = nodes[2]
        for message in messages:
            sender.send(message)
        await inbox.wait_for_count(len(messages))
        assert inbox.messages == messages

    run_on_network(kind, body)


def test_send_to_an_unreachable_peer_neither_blocks_nor_raises(kind: str) -> None:
    async def body(network: Network) -> None:
        transport = network.create(1, Inbox())
        await transport.start()
        transport.set_peer_address(2, *network.unused_address())
        for sequence in range(10):
            transport.send(append_entries(1, 2, sequence))
        # A peer nobody gave an address for: dropped and counted, not raised.
        transport.send(append_entries(1, 9, 0))
        assert not transport.is_connected(2)
        counters = transport.counters()
        assert counters.peers[2].queued_frames == 10
        assert counters.peers[2].frames_dropped == 0
        assert counters.peers[9].frames_dropped == 1
        if network.is_tcp:
            await wait_until(
                lambda: transport.counters().peers[2].connection_failures >= 2, "redial attempts"
            )
        assert not transport.is_connected(2)

    run_on_network(kind, body)


def test_full_queue_drops_the_oldest_and_delivers_the_rest_when_the_peer_comes_up(
    kind: str,
) -> None:
    limits = TransportLimits(
        send_queue_frames_max=8,
        reconnect_backoff_initial_seconds=0.005,
        reconnect_backoff_max_seconds=0.05,
    )

    async def body(network: Network) -> None:
        sender = network.create(1, Inbox(), limits=limits)
        await sender.start()
        address = network.unused_address()
        sender.set_peer_address(2, *address)
        for sequence in range(20):
            sender.send(append_entries(1, 2, sequence))
        counters = sender.counters().peers[2]
        assert counters.frames_dropped == 12
        assert counters.queued_frames == 8

        inbox = Inbox()
        receiver = network.create(2, inbox, port=address[1])
        receiver.set_peer_address(1, *sender.listen_address)
        await receiver.start()
        await inbox.wait_for_count(8)
        assert inbox.sequences_from(1) == list(range(12, 20))
        assert sender.counters().peers[2].queued_frames == 0

    run_on_network(kind, body)


def test_queue_byte_limit_drops_the_oldest(kind: str) -> None:
    entry_bytes = 1000
    frame_bytes = len(codec.encode(append_entries(1, 2, 0, entry_bytes=entry_bytes))) + 4
    limits = TransportLimits(send_queue_bytes_max=4 * frame_bytes)

    async def body(network: Network) -> None:
        sender = network.create(1, Inbox(), limits=limits)
        await sender.start()
        sender.set_peer_address(2, *network.unused_address())
        for sequence in range(10):
            sender.send(append_entries(1, 2, sequence, entry_bytes=entry_bytes))
        counters = sender.counters().peers[2]
        assert counters.queued_bytes == limits.send_queue_bytes_max
        assert counters.queued_frames == 4
        assert counters.frames_dropped == 6

    run_on_network(kind, body)


def test_reconnects_after_the_peer_restarts(kind: str) -> None:
    async def body(network: Network) -> None:
        states = PeerStates()
        first = network.create(1, Inbox(), on_peer_state=states)
        await first.start()
        inbox = Inbox()
        second = network.create(2, inbox)
        second.set_peer_address(1, *first.listen_address)
        await second.start()
        address = second.listen_address
        first.set_peer_address(2, *address)

        first.send(append_entries(1, 2, 0))
        await inbox.wait_for_count(1)
        assert first.is_connected(2)

        await second.close()
        await wait_until(lambda: not first.is_connected(2), "node 1 to notice node 2 is gone")

        restarted_inbox = Inbox()
        restarted = network.create(2, restarted_inbox, port=address[1])
        restarted.set_peer_address(1, *first.listen_address)
        await restarted.start()
        await wait_until(lambda: first.is_connected(2), "node 1 to reconnect to node 2")
        first.send(append_entries(1, 2, 1))
        await restarted_inbox.wait_for_count(1)
        assert restarted_inbox.sequences_from(1) == [1]
        assert states.events == [(2, True), (2, False), (2, True)]
        assert first.counters().peers[2].connections_opened == 2

    run_on_network(kind, body)


def test_client_addresses_are_learned_from_the_handshake(kind: str) -> None:
    async def body(network: Network) -> None:
        first = network.create(1, Inbox(), client_address="127.0.0.1:8001")
        second = network.create(2, Inbox(), client_address="127.0.0.1:8002")
        await first.start()
        await second.start()
        assert first.peer_client_address(2) is None
        first.set_peer_address(2, *second.listen_address)
        second.set_peer_address(1, *first.listen_address)
        await wait_until(lambda: first.is_connected(2) and second.is_connected(1), "links up")
        assert first.peer_client_address(2) == "127.0.0.1:8002"
        assert second.peer_client_address(1) == "127.0.0.1:8001"

    run_on_network(kind, body)


def test_a_node_of_another_cluster_is_refused_and_logged(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raftkv.transport")

    async def body(network: Network) -> None:
        inbox = Inbox()
        member = network.create(1, inbox)
        await member.start()
        stranger = network.create(7, Inbox(), cluster_id="other-cluster")
        await stranger.start()
        member.set_peer_address(7, *stranger.listen_address)
        stranger.set_peer_address(1, *member.listen_address)
        stranger.send(append_entries(7, 1, 0))
        await wait_until(
            lambda: member.counters().connections_refused >= 1, "the stranger to be refused"
        )
        assert not stranger.is_connected(1)
        assert inbox.messages == []

    run_on_network(kind, body)
    assert (
        "refused connection from node 7: cluster id 'other-cluster' != 'test-cluster'"
        in caplog.text
    )
    assert "node 1 at 127.0.0.1" in caplog.text and "refused our connection" in caplog.text


@pytest.mark.parametrize("accept_unknown_peers", [False, True])
def test_an_unknown_node_id_without_an_address_is_refused_unless_allowed(
    kind: str, accept_unknown_peers: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raftkv.transport")

    async def body(network: Network) -> None:
        inbox = Inbox()
        member = network.create(1, inbox, accept_unknown_peers=accept_unknown_peers)
        await member.start()
        # Listening on every interface, it has no address to give in its handshake.
        stranger = network.create(4, Inbox(), listen_host="0.0.0.0")
        await stranger.start()
        stranger.set_peer_address(1, *member.listen_address)
        stranger.send(append_entries(4, 1, 0))
        if accept_unknown_peers:
            await inbox.wait_for_count(1)
            assert stranger.is_connected(1)
        else:
            await wait_until(lambda: member.counters().connections_refused >= 1, "a refusal")
            assert not stranger.is_connected(1)
            assert inbox.messages == []

    run_on_network(kind, body)
    refused = "refused connection from node 4: unknown node id 4" in caplog.text
    assert refused != accept_unknown_peers


def test_a_member_not_known_yet_that_names_its_address_is_accepted_and_answered(
    kind: str,
) -> None:
    """A node that lagged (or restarted knowing only the members at its join) must accept
    a leader added since, and answer it: otherwise it can never catch up."""

    async def body(network: Network) -> None:
        lagging_inbox, leader_inbox = Inbox(), Inbox()
        lagging = network.create(1, lagging_inbox)
        await lagging.start()
        leader = network.create(5, leader_inbox)
        await leader.start()
        leader.set_peer_address(1, *lagging.listen_address)
        leader.send(append_entries(5, 1, 0))
        await lagging_inbox.wait_for_count(1)
        # Dialed back at the address the handshake named: the answer reaches the leader.
        lagging.send(append_entries(1, 5, 0))
        await leader_inbox.wait_for_count(1)
        assert lagging.is_connected(5)

    run_on_network(kind, body)


def test_a_removed_peer_is_refused_even_when_it_names_its_address(kind: str) -> None:
    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2])
        first, first_inbox = nodes[1]
        second, _ = nodes[2]
        await wait_until(lambda: first.is_connected(2) and second.is_connected(1), "links up")
        first.remove_peer(2)
        second.send(append_entries(2, 1, 0))
        await wait_until(lambda: first.counters().connections_refused >= 1, "node 2 refused")
        assert first_inbox.messages == []

    run_on_network(kind, body)


def test_removed_peer_loses_its_queue_and_is_refused(kind: str) -> None:
    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2])
        first, first_inbox = nodes[1]
        second, _ = nodes[2]
        await wait_until(lambda: first.is_connected(2) and second.is_connected(1), "links up")
        first.remove_peer(2)
        assert not first.is_connected(2)
        first.send(append_entries(1, 2, 0))
        assert first.counters().peers[2].frames_dropped == 1
        second.send(append_entries(2, 1, 0))
        await wait_until(lambda: first.counters().connections_refused >= 1, "node 2 refused")
        assert first_inbox.messages == []

    run_on_network(kind, body)


def test_a_peer_that_moves_is_followed_to_its_new_address(kind: str) -> None:
    async def body(network: Network) -> None:
        first = network.create(1, Inbox())
        await first.start()
        old_inbox, new_inbox = Inbox(), Inbox()
        old = network.create(2, old_inbox)
        old.set_peer_address(1, *first.listen_address)
        await old.start()
        first.set_peer_address(2, *old.listen_address)
        first.send(append_entries(1, 2, 0))
        await old_inbox.wait_for_count(1)

        moved = network.create(2, new_inbox)
        moved.set_peer_address(1, *first.listen_address)
        await moved.start()
        first.set_peer_address(2, *moved.listen_address)
        first.send(append_entries(1, 2, 1))
        await new_inbox.wait_for_count(1)
        assert new_inbox.sequences_from(1) == [1]
        assert old_inbox.sequences_from(1) == [0]

    run_on_network(kind, body)


def test_trace_hook_sees_every_message_sent_and_received(kind: str) -> None:
    async def body(network: Network) -> None:
        traces: list[tuple[str, int, AnyMessage]] = []
        first = network.create(1, Inbox(), on_trace=lambda d, m: traces.append((d, 1, m)))
        inbox = Inbox()
        second = network.create(2, inbox, on_trace=lambda d, m: traces.append((d, 2, m)))
        await first.start()
        await second.start()
        first.set_peer_address(2, *second.listen_address)
        second.set_peer_address(1, *first.listen_address)
        message = append_entries(1, 2, 0)
        first.send(message)
        await inbox.wait_for_count(1)
        assert traces == [("send", 1, message), ("receive", 2, message)]

    run_on_network(kind, body)


def test_a_failing_callback_does_not_break_the_link(kind: str) -> None:
    async def body(network: Network) -> None:
        received: list[AnyMessage] = []

        def fragile(message: AnyMessage) -> None:
            received.append(message)
            if len(received) == 1:
                raise RuntimeError("bug in the server")

        first = network.create(1, Inbox())
        second = network.create(2, fragile)
        await first.start()
        await second.start()
        first.set_peer_address(2, *second.listen_address)
        second.set_peer_address(1, *first.listen_address)
        first.send(append_entries(1, 2, 0))
        first.send(append_entries(1, 2, 1))
        await wait_until(lambda: len(received) == 2, "both messages")
        assert first.is_connected(2)

    run_on_network(kind, body)


def test_peers_accepted_without_being_known_are_bounded(kind: str) -> None:
    """Whoever knows the cluster id could otherwise make a node keep links to, and dial,
    any number of addresses of its choosing by naming new node ids."""

    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        strangers = []
        for node_id in range(100, 100 + ADOPTED_PEERS_MAX + 4):
            stranger = network.create(node_id, Inbox())
            await stranger.start()
            stranger.set_peer_address(1, *member.listen_address)
            stranger.send(append_entries(node_id, 1, 0))
            strangers.append(stranger)
        await wait_until(
            lambda: (
                sum(s.is_connected(1) for s in strangers) == ADOPTED_PEERS_MAX
                and member.counters().connections_refused >= 4
            ),
            "the first ones adopted, the rest refused",
        )
        assert sum(s.is_connected(1) for s in strangers) == ADOPTED_PEERS_MAX

    run_on_network(kind, body)


def test_send_at_once_writes_on_an_idle_link_and_keeps_the_order(kind: str) -> None:
    """`send_at_once` writes from the caller's turn only when nothing can be ahead of the
    frame (the writer task waiting with nothing queued); a frame queued before it makes it
    queue too, so the order is kept. The in-memory link always queues."""

    async def body(network: Network) -> None:
        sender, _, _, inbox = await idle_link(network)
        assert sender.send_at_once(append_entries(1, 2, 1)) is (kind != "memory")
        sender.send(append_entries(1, 2, 2))  # queued: its writer task has not run yet
        assert sender.send_at_once(append_entries(1, 2, 3)) is False
        assert sender.send_at_once(append_entries(1, 2, 4)) is False
        await inbox.wait_for_count(5)
        assert inbox.sequences_from(1) == [0, 1, 2, 3, 4]
        totals = sender.counters().totals()
        assert (totals.frames_sent, totals.frames_dropped) == (5, 0)

    run_on_network(kind, body)


def test_send_at_once_to_an_unreachable_peer_queues(kind: str) -> None:
    async def body(network: Network) -> None:
        transport = network.create(1, Inbox())
        await transport.start()
        transport.set_peer_address(2, *network.unused_address())
        assert transport.send_at_once(append_entries(1, 2, 0)) is False
        assert transport.send_at_once(append_entries(1, 3, 0)) is False  # no such peer
        totals = transport.counters().totals()
        assert totals.frames_sent == 0
        await transport.close()

    run_on_network(kind, body)
