"""A member refuses a peer it knows was removed, and tells it so (`HandshakeReply.removed_at`):
the peer dials with the index of the configuration that made it a member (`member_since`),
and a configuration applied here past that index without it proves it was removed since.
The rule on hand-made handshakes, then over every transport kind, the refused side hearing
of it through `on_removed_by` (the server stops on it: tests/server/test_removed_node_stops.py)."""

from __future__ import annotations

import logging

import pytest

from raftkv.transport.handshake import (
    HANDSHAKE_MAGIC,
    PROTOCOL_VERSION,
    AppliedConfiguration,
    Handshake,
    Refusal,
    check_handshake,
    removal_refusal,
)
from tests.waiting import wait_until

from .harness import (
    CLUSTER_ID,
    LEASE_SETTINGS,
    NETWORK_KINDS,
    Inbox,
    Network,
    run_on_network,
)

APPLIED = AppliedConfiguration(index=40, members=frozenset({1, 3}))


def handshake(node_id: int = 2, member_since: int = 10, **fields: object) -> Handshake:
    return Handshake(
        magic=HANDSHAKE_MAGIC,
        protocol_version=PROTOCOL_VERSION,
        cluster_id=CLUSTER_ID,
        node_id=node_id,
        to_node_id=1,
        lease=LEASE_SETTINGS,
        member_since=member_since,
        **fields,  # type: ignore[arg-type]
    )


def test_a_configuration_past_the_dialers_membership_without_it_refuses_it_as_removed() -> None:
    refusal = removal_refusal(handshake(member_since=10), APPLIED)
    assert refusal is not None
    assert refusal.removed_at == 40
    assert refusal.reply == (
        "node id 2 was removed from the cluster: the configuration at index 40 does not hold "
        "it (a member since index 10)"
    )


@pytest.mark.parametrize(
    ("node_id", "member_since", "why"),
    [
        (3, 10, "a member of the configuration"),
        (2, 41, "re-added after it: this node has not applied the re-add yet"),
        (2, 40, "no configuration both holds and removes it"),
        (2, 0, "an older node, or one still joining, says nothing"),
    ],
)
def test_no_removal_is_claimed_without_proof(node_id: int, member_since: int, why: str) -> None:
    assert removal_refusal(handshake(node_id, member_since), APPLIED) is None, why


def test_the_removal_is_checked_even_for_a_peer_this_node_still_dials() -> None:
    # Still in the links (the grace after a removal, or learnt again from an address book):
    # the configuration decides, not what the transport happens to know.
    refusal = check_handshake(
        handshake(member_since=10),
        cluster_id=CLUSTER_ID,
        node_id=1,
        lease_settings=LEASE_SETTINGS,
        known_peers={2, 3},
        accept_unknown_peers=False,
        applied=APPLIED,
    )
    assert refusal is not None and refusal.removed_at == 40


def test_the_transient_refusal_of_a_removed_peer_is_not_a_proof() -> None:
    # `remove_peer` refuses a peer that tells no `member_since`: it may be a node re-added
    # under that id, whose re-add this node has not appended yet. No `removed_at`, no stop.
    refusal = check_handshake(
        handshake(member_since=0),
        cluster_id=CLUSTER_ID,
        node_id=1,
        lease_settings=LEASE_SETTINGS,
        known_peers={3},
        accept_unknown_peers=False,
        removed_peers={2: 40},
        applied=APPLIED,
    )
    assert refusal is not None and refusal.kind == "removed node" and refusal.removed_at == 0


# Node 2 was removed here by the configuration at `removed_at` (0: at an index not known);
# this node applied the configuration at 6, which does not hold it.
APPLIED_AT_6 = AppliedConfiguration(index=6, members=frozenset({1, 3}))


def refusal_of_removed_dialer(member_since: int, removed_at: int) -> Refusal | None:
    return check_handshake(
        handshake(member_since=member_since, peer_address="127.0.0.1:7002"),
        cluster_id=CLUSTER_ID,
        node_id=1,
        lease_settings=LEASE_SETTINGS,
        known_peers={3},
        accept_unknown_peers=False,
        removed_peers={2: removed_at},
        applied=APPLIED_AT_6,
    )


@pytest.mark.parametrize(
    ("member_since", "accepted"),
    [
        (41, True),  # re-added after the removal this node knows of (seed 998202's case)
        (6, False),  # the incarnation the configuration at 6 removed
        (5, False),
        (0, False),  # says nothing: cannot prove it came back
    ],
)
def test_a_removed_peer_made_a_member_again_since_is_accepted(
    member_since: int, accepted: bool
) -> None:
    # Regression (whole-node seed 998202, 7 nodes): node 4, removed at 6 and re-added at 41,
    # became leader while node 3 had applied only up to 39. Node 3 refused it as removed,
    # and could learn of the re-add from no one else: it never caught up.
    refusal = refusal_of_removed_dialer(member_since, removed_at=6)
    if accepted:
        assert refusal is None
    else:
        assert refusal is not None and refusal.kind == "removed node"


def test_a_peer_removed_without_an_index_is_refused_whatever_it_says() -> None:
    # `remove_peer(node)` without the configuration's index (an embedder's call): no
    # member_since can be shown to come after it.
    refusal = refusal_of_removed_dialer(41, removed_at=0)
    assert refusal is not None and refusal.kind == "removed node"


def test_a_removal_this_node_only_appended_still_refuses_the_removed_incarnation() -> None:
    # Removed by the configuration at 50, appended here but not yet applied (applied: 6):
    # a member since 41 is the incarnation it removed, not a new one.
    refusal = refusal_of_removed_dialer(41, removed_at=50)
    assert refusal is not None and refusal.kind == "removed node" and refusal.removed_at == 0


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_the_refused_peer_hears_it_was_removed_and_only_then(kind: str) -> None:
    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        member.set_applied_configuration(40, {1, 3})
        heard: dict[int, list[int]] = {}
        dialers = {}
        # Node 2 joined at 10 (removed since); node 4 was re-added at 45, which node 1 has
        # not applied yet; node 5 tells no index.
        for node_id, since in ((2, 10), (4, 45), (5, 0)):
            heard[node_id] = []
            dialer = network.create(
                node_id, Inbox(), member_since=since, on_removed_by=heard[node_id].append
            )
            await dialer.start()
            member.set_peer_address(node_id, *dialer.listen_address)
            dialer.set_peer_address(1, *member.listen_address)
            dialers[node_id] = dialer
        await wait_until(lambda: heard[2] != [], "node 2 told it was removed")
        await wait_until(
            lambda: dialers[4].is_connected(1) and dialers[5].is_connected(1),
            "nodes 4 and 5 accepted",
        )
        assert not dialers[2].is_connected(1)
        assert set(heard[2]) == {1}
        assert heard[4] == [] and heard[5] == []

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_a_peer_connected_before_its_removal_was_applied_is_told_too(kind: str) -> None:
    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        heard: list[int] = []
        # A member that knows node 2 by its address, and one that only accepted its dial.
        removed = network.create(2, Inbox(), member_since=10, on_removed_by=heard.append)
        await removed.start()
        removed.set_peer_address(1, *member.listen_address)
        await wait_until(lambda: removed.is_connected(1), "node 2 accepted")
        # Node 1 (restarted, say) applies the configuration that removed node 2 only now.
        member.set_applied_configuration(40, {1, 3})
        await wait_until(lambda: heard != [], "node 2 told it was removed")
        assert heard[0] == 1
        assert not removed.is_connected(1)
        # It was dialed back only because it dialed: that link is gone too.
        assert 2 not in member.counters().peers or not member.is_connected(2)

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_a_peer_removed_here_is_accepted_again_once_re_added_past_the_removal(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="raftkv.transport")

    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        member.set_applied_configuration(6, {1, 3})
        dialers = {}
        # Node 4 was removed here by the configuration at 6 and re-added at 41, which node
        # 1 has not learnt; node 5 was removed without an index, so nothing it says counts.
        for node_id, removed_at in ((4, 6), (5, 0)):
            dialer = network.create(node_id, Inbox(), member_since=41)
            await dialer.start()
            member.set_peer_address(node_id, *dialer.listen_address)
            member.remove_peer(node_id, removed_at)
            dialer.set_peer_address(1, *member.listen_address)
            dialers[node_id] = dialer
        await wait_until(lambda: dialers[4].is_connected(1), "node 4 accepted")
        await wait_until(
            lambda: any(
                "node id 5 was removed from the cluster" in record.getMessage()
                for record in caplog.records
            ),
            "node 5 refused",
        )
        assert not dialers[5].is_connected(1)

    run_on_network(kind, body)
