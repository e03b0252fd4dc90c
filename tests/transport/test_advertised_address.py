"""The peer address a transport announces in handshakes (`--advertise-peer`)."""

from __future__ import annotations

from raftkv.transport import LeaseSettings
from raftkv.transport.tcp import TcpTransport

SETTINGS = LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=15, check_quorum=True)


def transport(host: str) -> TcpTransport:
    return TcpTransport(
        node_id=1,
        cluster_id="c",
        lease_settings=SETTINGS,
        listen_host=host,
        listen_port=9001,
        on_message=lambda message: None,
    )


def test_a_wildcard_listener_announces_no_address_unless_one_is_advertised() -> None:
    wildcard = transport("0.0.0.0")
    assert wildcard.own_peer_address() == ""
    wildcard.set_advertised_address("10.0.0.1", 9001)
    assert wildcard.own_peer_address() == "10.0.0.1:9001"


def test_the_advertised_address_replaces_a_specific_listen_address() -> None:
    specific = transport("127.0.0.1")
    assert specific.own_peer_address() == "127.0.0.1:9001"
    specific.set_advertised_address("::1", 9002)
    assert specific.own_peer_address() == "[::1]:9002"
