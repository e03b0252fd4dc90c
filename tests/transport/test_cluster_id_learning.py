"""A founding member learns the cluster id from a member that knows it (SPEC §4).

The founder with the lowest id makes the cluster id at random; the others start without
one (an empty id in their handshake) and learn it from the first member that knows it:
from the answer to their own handshake, or from the handshake of a member dialing them.
Only a member may learn it or teach it, and two founders that both lack it refuse each
other. Every case runs on each transport kind.
"""

from __future__ import annotations

import logging

import pytest

from tests.transport.harness import (
    CLUSTER_ID,
    NETWORK_KINDS,
    Inbox,
    Network,
    append_entries,
    run_on_network,
    wait_until,
)


@pytest.fixture(params=NETWORK_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_founder_learns_the_id_from_the_reply_to_its_own_handshake(kind: str) -> None:
    async def body(network: Network) -> None:
        member_inbox, learnt = Inbox(), []
        member = network.create(1, member_inbox)
        await member.start()
        founder = network.create(2, Inbox(), cluster_id="", on_cluster_id=learnt.append)
        await founder.start()
        # The member knows the founder but cannot reach it: only the founder's dial connects.
        member.set_peer_address(2, *network.unused_address())
        founder.set_peer_address(1, *member.listen_address)
        founder.send(append_entries(2, 1, 0))
        await member_inbox.wait_for_count(1)
        assert learnt == [CLUSTER_ID]

    run_on_network(kind, body)


def test_a_founder_learns_the_id_from_a_member_that_dials_it(kind: str) -> None:
    async def body(network: Network) -> None:
        founder_inbox, learnt = Inbox(), []
        member = network.create(1, Inbox())
        await member.start()
        founder = network.create(2, founder_inbox, cluster_id="", on_cluster_id=learnt.append)
        await founder.start()
        founder.set_peer_address(1, *network.unused_address())
        member.set_peer_address(2, *founder.listen_address)
        member.send(append_entries(1, 2, 0))
        await founder_inbox.wait_for_count(1)
        assert learnt == [CLUSTER_ID]
        # And it now presents that id: a dial of its own to the member is accepted.
        founder.set_peer_address(1, *member.listen_address)
        await wait_until(lambda: founder.is_connected(1), "the founder's own link")

    run_on_network(kind, body)


def test_two_founders_without_the_id_refuse_each_other(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raftkv.transport")

    async def body(network: Network) -> None:
        inboxes, learnt = {2: Inbox(), 3: Inbox()}, []
        two = network.create(2, inboxes[2], cluster_id="", on_cluster_id=learnt.append)
        three = network.create(3, inboxes[3], cluster_id="", on_cluster_id=learnt.append)
        await two.start()
        await three.start()
        two.set_peer_address(3, *three.listen_address)
        three.set_peer_address(2, *two.listen_address)
        two.send(append_entries(2, 3, 0))
        three.send(append_entries(3, 2, 0))
        await wait_until(
            lambda: (
                two.counters().connections_refused >= 1
                and three.counters().connections_refused >= 1
            ),
            "both to refuse",
        )
        assert not two.is_connected(3) and not three.is_connected(2)
        assert learnt == [] and inboxes[2].messages == inboxes[3].messages == []

    run_on_network(kind, body)
    # Expected while a cluster starts: both sides say so at INFO, not as a warning.
    said = [record for record in caplog.records if "neither node knows" in record.getMessage()]
    assert {record.levelname for record in said} == {"INFO"}
    assert any("refused connection from" in record.getMessage() for record in said)
    assert any("refused our connection" in record.getMessage() for record in said)


def test_a_stranger_without_the_id_is_neither_told_it_nor_accepted(kind: str) -> None:
    async def body(network: Network) -> None:
        member_inbox, learnt = Inbox(), []
        member = network.create(1, member_inbox)
        await member.start()
        # Node 7 is no member of node 1's configuration; it names its address, which would
        # get a member not known yet accepted (see test_conformance).
        stranger = network.create(7, Inbox(), cluster_id="", on_cluster_id=learnt.append)
        await stranger.start()
        stranger.set_peer_address(1, *member.listen_address)
        stranger.send(append_entries(7, 1, 0))
        await wait_until(lambda: member.counters().connections_refused >= 1, "a refusal")
        assert not stranger.is_connected(1)
        assert learnt == [] and member_inbox.messages == []

    run_on_network(kind, body)


def test_a_member_without_the_id_is_not_taught_a_strangers_id(kind: str) -> None:
    """A founder still learning accepts an id only from a member of its configuration."""

    async def body(network: Network) -> None:
        founder_inbox, learnt = Inbox(), []
        founder = network.create(2, founder_inbox, cluster_id="", on_cluster_id=learnt.append)
        await founder.start()
        founder.set_peer_address(1, *network.unused_address())
        stranger = network.create(7, Inbox(), cluster_id="a-strangers-cluster")
        await stranger.start()
        stranger.set_peer_address(2, *founder.listen_address)
        stranger.send(append_entries(7, 2, 0))
        await wait_until(lambda: founder.counters().connections_refused >= 1, "a refusal")
        assert learnt == [] and founder_inbox.messages == []

    run_on_network(kind, body)
