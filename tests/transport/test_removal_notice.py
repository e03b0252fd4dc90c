"""A member dials a removed node to tell it so (`Transport.tell_removed`, a handshake with
`removed_at`): the mirror of the removal refusal, for a removed node that dials no member
(every peer it knows is gone). The rule on hand-made handshakes, then over every transport
kind: the told node hears of it through `on_removed_by`, the member through `on_told`, and a
node re-added since, or of another cluster, is not stopped by it."""

from __future__ import annotations

import pytest

from raftkv.transport.handshake import (
    HANDSHAKE_MAGIC,
    PROTOCOL_VERSION,
    AppliedConfiguration,
    Handshake,
    removal_notice,
)
from tests.waiting import wait_until

from .harness import CLUSTER_ID, LEASE_SETTINGS, NETWORK_KINDS, Inbox, Network, run_on_network

NOTHING_APPLIED = AppliedConfiguration(0, frozenset())


def notice(removed_at: int = 40, **fields: object) -> Handshake:
    """Node 1's notice to node 2: the configuration at `removed_at` does not hold it."""
    values: dict[str, object] = {
        "magic": HANDSHAKE_MAGIC,
        "protocol_version": PROTOCOL_VERSION,
        "cluster_id": CLUSTER_ID,
        "node_id": 1,
        "to_node_id": 2,
        "lease": LEASE_SETTINGS,
        "member_since": 1,
        "removed_at": removed_at,
        **fields,
    }
    return Handshake(**values)  # type: ignore[arg-type]


def answer(
    handshake: Handshake,
    *,
    member_since: int = 10,
    applied: AppliedConfiguration = NOTHING_APPLIED,
    cluster_id: str = CLUSTER_ID,
) -> tuple[str, bool]:
    refusal, removed = removal_notice(
        handshake, cluster_id=cluster_id, node_id=2, member_since=member_since, applied=applied
    )
    return refusal.reply, removed


def test_a_notice_past_this_nodes_membership_proves_its_removal() -> None:
    reply, removed = answer(notice(40), member_since=10)
    assert removed
    assert reply == (
        "node 2 takes the notice: the configuration at index 40 does not hold it (a member "
        "since index 10); stopping"
    )


@pytest.mark.parametrize(
    ("handshake", "fields", "why"),
    [
        (notice(40), {"member_since": 45}, "re-added (joined anew) after the removal"),
        (notice(40), {"member_since": 40}, "no configuration both holds and removes it"),
        (notice(40), {"member_since": 0}, "still joining: it was never a member"),
        (
            notice(40),
            {"applied": AppliedConfiguration(50, frozenset({1, 2}))},
            "it applied a configuration since that holds it",
        ),
        (notice(40, cluster_id="other"), {}, "a node of another cluster"),
        (notice(40), {"cluster_id": ""}, "this node does not know its cluster id yet"),
        (notice(40, cluster_id=""), {}, "the dialer names no cluster id"),
        (notice(40, to_node_id=3), {}, "meant for another node"),
        (notice(40, node_id=2), {}, "claims this node's own id"),
        (notice(40, node_id=0), {}, "an invalid sender"),
    ],
)
def test_a_notice_without_proof_is_refused_and_stops_nothing(
    handshake: Handshake, fields: dict[str, object], why: str
) -> None:
    reply, removed = answer(handshake, **fields)  # type: ignore[arg-type]
    assert not removed, why
    assert reply  # still refused: a notice link never becomes a connection


def test_a_notice_the_node_applied_past_still_counts_when_its_configuration_lacks_it() -> None:
    # Applied a later configuration that does not hold it either (it learnt of the removal
    # itself and is stopping anyway): the notice agrees.
    _, removed = answer(notice(40), applied=AppliedConfiguration(50, frozenset({1, 3})))
    assert removed


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_a_member_tells_a_removed_node_that_dials_nobody(kind: str) -> None:
    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        stopped: dict[int, list[int]] = {}
        nodes = {}
        # Node 2 joined at 10 and was removed at 40; node 4 was re-added at 45 (after the
        # removal the member names). Neither knows the member, so neither dials it.
        for node_id, since in ((2, 10), (4, 45)):
            stopped[node_id] = []
            node = network.create(
                node_id, Inbox(), member_since=since, on_removed_by=stopped[node_id].append
            )
            await node.start()
            nodes[node_id] = node
        told: list[int] = []
        for node_id in nodes:
            member.tell_removed(
                node_id, *nodes[node_id].listen_address, 40, lambda n=node_id: told.append(n)
            )
        await wait_until(lambda: sorted(told) == [2, 4], "both nodes answered the notice")
        assert stopped == {2: [1], 4: []}
        # A notice link only tells: nothing was adopted on either side, nothing connected.
        assert not member.is_connected(2) and not member.is_connected(4)
        assert not nodes[2].is_connected(1) and not nodes[4].is_connected(1)

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_a_notice_waits_for_the_removed_node_to_come_back(kind: str) -> None:
    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        # The removed node is down: nobody listens at its address yet.
        address = network.unused_address()
        told: list[int] = []
        member.tell_removed(2, *address, 40, lambda: told.append(2))
        stopped: list[int] = []
        back = network.create(
            2, Inbox(), member_since=10, on_removed_by=stopped.append, port=address[1]
        )
        await back.start()
        await wait_until(lambda: told == [2], "the notice delivered once node 2 is back")
        assert stopped == [1]

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_a_notice_given_up_or_replaced_by_membership_is_never_delivered(kind: str) -> None:
    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        stopped: list[int] = []
        address = network.unused_address()
        node = network.create(
            2, Inbox(), member_since=10, on_removed_by=stopped.append, port=address[1]
        )
        told: list[int] = []
        # Given before node 2 listens, then withdrawn: once node 2 listens, nothing comes.
        member.tell_removed(2, *address, 40, lambda: told.append(2))
        member.stop_telling(2)
        # A member again: `set_peer_address` withdraws a notice too.
        member.tell_removed(3, "127.0.0.1", 1, 40, lambda: told.append(3))
        member.set_peer_address(3, "127.0.0.1", 1)
        await node.start()
        member.set_peer_address(2, *node.listen_address)
        await wait_until(lambda: member.is_connected(2), "node 2 accepted as a member")
        assert told == [] and stopped == []

    run_on_network(kind, body)
