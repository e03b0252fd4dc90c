"""The handshake's lease settings (protocol version 2): nodes whose tick, minimum election
timeout or check-quorum setting differ refuse each other, and both sides log both values; a
wrong cluster id is refused without the real one in the answer. Over every transport kind:
the in-memory twin runs the same check."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from raftkv.transport import LeaseSettings, Transport
from raftkv.transport.framing import encode_frame
from raftkv.transport.handshake import (
    HANDSHAKE_MAGIC,
    PROTOCOL_VERSION,
    Handshake,
    HandshakeReply,
    decode_reply,
    encode_handshake,
)

from .harness import (
    CLUSTER_ID,
    LEASE_SETTINGS,
    NETWORK_KINDS,
    Inbox,
    Network,
    append_entries,
    run_on_network,
    wait_until,
)

OURS = "election timeout 150 ms (tick 10 ms), check-quorum on"


@pytest.fixture(params=NETWORK_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def transport_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="raftkv.transport")
    return caplog


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def pair(
    network: Network, first: LeaseSettings, second: LeaseSettings
) -> tuple[tuple[Transport, Inbox], tuple[Transport, Inbox]]:
    """Nodes 1 and 2 with the given settings, each dialing the other, each sending one
    message to the other."""
    inbox_1, inbox_2 = Inbox(), Inbox()
    node_1 = network.create(1, inbox_1, lease_settings=first)
    node_2 = network.create(2, inbox_2, lease_settings=second)
    await node_1.start()
    await node_2.start()
    node_1.set_peer_address(2, *node_2.listen_address)
    node_2.set_peer_address(1, *node_1.listen_address)
    node_1.send(append_entries(1, 2, 0))
    node_2.send(append_entries(2, 1, 0))
    return (node_1, inbox_1), (node_2, inbox_2)


def assert_refused_both_ways(kind: str, theirs: LeaseSettings, theirs_text: str) -> None:
    """Node 2 runs `theirs`, node 1 the test default: neither connection is accepted, no
    message is delivered, and each node's log names both nodes' values."""
    assert theirs.describe() == theirs_text

    async def body(network: Network) -> None:
        (node_1, inbox_1), (node_2, inbox_2) = await pair(network, LEASE_SETTINGS, theirs)

        def refused_and_told(node: Transport, peer: int) -> bool:
            counters = node.counters()
            return (
                counters.connections_refused >= 1 and counters.peers[peer].connection_failures >= 1
            )

        await wait_until(
            lambda: refused_and_told(node_1, 2) and refused_and_told(node_2, 1),
            "each node to refuse the other and to be refused",
        )
        assert not node_1.is_connected(2) and not node_2.is_connected(1)
        assert inbox_1.messages == [] and inbox_2.messages == []

    run_on_network(kind, body)


@pytest.mark.parametrize(
    ("theirs", "theirs_text"),
    [
        (
            LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=10, check_quorum=True),
            "election timeout 100 ms (tick 10 ms), check-quorum on",
        ),
        # The same timeout in milliseconds, counted in coarser ticks: still refused.
        (
            LeaseSettings.of(tick_ms=50, election_timeout_ticks_min=3, check_quorum=True),
            "election timeout 150 ms (tick 50 ms), check-quorum on",
        ),
    ],
)
def test_a_different_election_timeout_is_refused_and_logged_on_both_sides(
    kind: str,
    theirs: LeaseSettings,
    theirs_text: str,
    transport_logs: pytest.LogCaptureFixture,
) -> None:
    assert_refused_both_ways(kind, theirs, theirs_text)
    check_logs(transport_logs, theirs_text)


def test_check_quorum_off_on_one_node_is_refused_and_logged_on_both_sides(
    kind: str, transport_logs: pytest.LogCaptureFixture
) -> None:
    theirs = LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=15, check_quorum=False)
    theirs_text = "election timeout 150 ms (tick 10 ms), check-quorum off"
    assert_refused_both_ways(kind, theirs, theirs_text)
    check_logs(transport_logs, theirs_text)


def check_logs(caplog: pytest.LogCaptureFixture, theirs_text: str) -> None:
    """Each node logs both values twice: refusing the connection the other dialed, and
    told of the refusal of the connection it dialed."""
    lines = warnings(caplog)
    node_1 = f"node 1 has {OURS}"
    node_2 = f"node 2 has {theirs_text}"
    expected = [
        ("refused connection from node 2:", f"lease settings differ: {node_2}; {node_1}"),
        ("refused connection from node 1:", f"lease settings differ: {node_1}; {node_2}"),
        ("node 2 at 127.0.0.1:", f"refused our connection: lease settings differ: {node_1}; "),
        ("node 1 at 127.0.0.1:", f"refused our connection: lease settings differ: {node_2}; "),
    ]
    for start, reason in expected:
        assert any(line.startswith(start) and reason in line for line in lines), (
            start,
            reason,
            lines,
        )


def test_equal_settings_connect_whatever_they_are(kind: str) -> None:
    # Not the defaults: equality with each other is the rule, not with some standard.
    settings = LeaseSettings.of(tick_ms=20, election_timeout_ticks_min=25, check_quorum=False)

    async def body(network: Network) -> None:
        (node_1, inbox_1), (node_2, inbox_2) = await pair(network, settings, settings)
        await inbox_1.wait_for_count(1)
        await inbox_2.wait_for_count(1)
        assert node_1.is_connected(2) and node_2.is_connected(1)
        assert node_1.counters().connections_refused == 0
        assert node_2.counters().connections_refused == 0

    run_on_network(kind, body)


def test_a_wrong_cluster_id_is_refused_without_naming_the_real_one(
    kind: str, transport_logs: pytest.LogCaptureFixture
) -> None:
    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        stranger = network.create(7, Inbox(), cluster_id="guessed-cluster")
        await stranger.start()
        stranger.set_peer_address(1, *member.listen_address)
        await wait_until(
            lambda: member.counters().connections_refused >= 1, "the stranger to be refused"
        )
        # The member counts the refusal before the stranger has read its answer.
        await wait_until(
            lambda: any("refused our connection" in line for line in warnings(transport_logs)),
            "the stranger to log the refusal",
        )
        assert not stranger.is_connected(1)

    run_on_network(kind, body)
    lines = warnings(transport_logs)
    told = [line for line in lines if "refused our connection" in line]
    assert told and all(
        "cluster id 'guessed-cluster' is not this node's cluster id" in line for line in told
    )
    assert not any(CLUSTER_ID in line for line in told), told
    # The member's own log names both.
    assert any(
        f"refused connection from node 7: cluster id 'guessed-cluster' != '{CLUSTER_ID}'" in line
        for line in lines
    ), lines


# --- what a raw TCP client hears ------------------------------------------------------------
async def raw_handshake(address: tuple[str, int], **changes: object) -> HandshakeReply:
    fields: dict[str, object] = {
        "magic": HANDSHAKE_MAGIC,
        "protocol_version": PROTOCOL_VERSION,
        "cluster_id": CLUSTER_ID,
        "node_id": 2,
        "to_node_id": 1,
        "lease": LEASE_SETTINGS,
    }
    fields.update(changes)
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(encode_frame(encode_handshake(Handshake(**fields))))  # type: ignore[arg-type]
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        return decode_reply(await reader.readexactly(length))
    finally:
        writer.close()


@pytest.mark.parametrize("tcp_kind", ["tcp", "tcp-uvloop"])
def test_a_raw_handshake_hears_only_what_its_checks_allow(tcp_kind: str) -> None:
    other = LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=10, check_quorum=True)

    async def body(network: Network) -> None:
        member = network.create(1, Inbox())
        await member.start()
        member.set_peer_address(2, *network.unused_address())
        address = member.listen_address
        # Wrong cluster, other settings too: refused for the cluster, and hears neither the
        # real cluster id nor this node's settings.
        reply = await raw_handshake(address, cluster_id="x", lease=other)
        assert (reply.accepted, reply.reason) == (
            False,
            "cluster id 'x' is not this node's cluster id",
        )
        assert CLUSTER_ID not in reply.reason and "150 ms" not in reply.reason
        # A configured peer with the right cluster id but other settings hears both values.
        reply = await raw_handshake(address, lease=other)
        assert not reply.accepted
        assert f"node 2 has {other.describe()}; node 1 has {OURS}" in reply.reason
        # Without any settings (a version-2 handshake that left them out): refused.
        reply = await raw_handshake(address, lease=None)
        assert not reply.accepted and "node 2 has no lease settings" in reply.reason
        # An older peer is refused for its version before anything else is read.
        reply = await raw_handshake(address, protocol_version=1)
        assert (reply.accepted, reply.reason) == (
            False,
            f"protocol version 1 != {PROTOCOL_VERSION}",
        )
        # The same handshake with the same settings is accepted.
        reply = await raw_handshake(address)
        assert reply.accepted and reply.node_id == 1

    run_on_network(tcp_kind, body)
