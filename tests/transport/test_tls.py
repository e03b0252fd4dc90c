"""TcpTransport over mutual TLS (SPEC §6, "TLS"): peers that hold certificates of the CA
and naming their node ids talk; a certificate naming another node, another CA's, a
client's, or no TLS at all is refused on both sides with a log line, never a hang."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from raftkv.tls import PeerTls, peer_tls
from raftkv.transport import TransportLimits
from tests.certificates import CertificateSet

from .harness import Inbox, Network, append_entries, run_on_network, wait_until

TCP_KINDS = ["tcp", "tcp-uvloop"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return CertificateSet(tmp_path_factory.mktemp("certs"), [1, 2, 3])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return CertificateSet(tmp_path_factory.mktemp("other-ca"), [1, 2])


@pytest.fixture(params=TCP_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def transport_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="raftkv.transport")
    return caplog


async def _pair(
    network: Network, tls_1: PeerTls | None, tls_2: PeerTls | None
) -> tuple[Inbox, Inbox]:
    """Nodes 1 and 2, each knowing the other's address; what each receives."""
    inboxes = Inbox(), Inbox()
    one = network.create(1, inboxes[0], peer_tls=tls_1)
    two = network.create(2, inboxes[1], peer_tls=tls_2)
    await one.start()
    await two.start()
    one.set_peer_address(2, *two.listen_address)
    two.set_peer_address(1, *one.listen_address)
    return inboxes


def _refused(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def test_peers_with_certificates_of_the_ca_exchange_messages(
    kind: str, certificates: CertificateSet
) -> None:
    async def body(network: Network) -> None:
        inbox_1, inbox_2 = await _pair(
            network, peer_tls(certificates.peer_files(1)), peer_tls(certificates.peer_files(2))
        )
        one, two = network.transports
        one.send(append_entries(1, 2, 1))
        two.send(append_entries(2, 1, 1))
        await inbox_2.wait_for_count(1)
        await inbox_1.wait_for_count(1)
        # The SSL object is the loop's alone: no frame of a TLS link is written from the
        # sync thread; the loop sends them.
        [framed] = one.frame([append_entries(1, 2, 2)])
        assert framed[1].send_from_thread(framed[2]) is False
        one.send_framed(framed)
        await inbox_2.wait_for_count(2)

    run_on_network(kind, body)


def test_a_certificate_naming_another_node_is_refused_both_ways(
    kind: str, certificates: CertificateSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Node 2 presents node 3's certificate (signed by the CA, but not its own): node 1
    refuses its handshake for claiming node 2, and refuses to talk to it when dialing."""

    async def body(network: Network) -> None:
        tls_2 = peer_tls(certificates.peer_files(2, certificate_of=3))
        inbox_1, inbox_2 = await _pair(network, peer_tls(certificates.peer_files(1)), tls_2)
        accepted = "claims node id 2 but its certificate names node 3"
        dialed = "its certificate names node 3, not node 2"
        await wait_until(lambda: _refused(caplog, accepted), "the accepting side's refusal")
        await wait_until(lambda: _refused(caplog, dialed), "the dialing side's refusal")
        one, two = network.transports
        assert not one.is_connected(2)
        assert not two.is_connected(1)
        assert inbox_1.messages == inbox_2.messages == []

    run_on_network(kind, body)


def test_a_client_certificate_is_no_peer_certificate(
    kind: str, certificates: CertificateSet, caplog: pytest.LogCaptureFixture
) -> None:
    """The CA signed the client certificate too, but it names no node."""

    async def body(network: Network) -> None:
        client_files = certificates.peer_files(2)
        client_tls = peer_tls(
            type(client_files)(certificates.client_cert, certificates.client_key, certificates.ca)
        )
        await _pair(network, peer_tls(certificates.peer_files(1)), client_tls)
        await wait_until(
            lambda: _refused(caplog, "claims node id 2 but its certificate names no node"),
            "the refusal of a certificate naming no node",
        )
        assert not network.transports[0].is_connected(2)

    run_on_network(kind, body)


def test_a_certificate_of_another_ca_fails_the_tls_handshake(
    kind: str,
    certificates: CertificateSet,
    other_ca: CertificateSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(network: Network) -> None:
        await _pair(network, peer_tls(certificates.peer_files(1)), peer_tls(other_ca.peer_files(2)))
        # Each dialer checks the other's certificate first and hangs up, so the dialing
        # sides are the ones that can say why.
        await wait_until(
            lambda: _refused(caplog, "TLS handshake with node 1 at"), "node 2's log line"
        )
        await wait_until(
            lambda: _refused(caplog, "TLS handshake with node 2 at"), "node 1's log line"
        )
        assert _refused(caplog, "CERTIFICATE_VERIFY_FAILED")
        assert not network.transports[0].is_connected(2)
        assert not network.transports[1].is_connected(1)

    run_on_network(kind, body)


def test_plain_and_tls_nodes_refuse_each_other_with_a_log_line(
    kind: str, certificates: CertificateSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Node 1 has TLS, node 2 has not: each refuses the other's connection, and each
    logs why (the plain node recognises a TLS record where a frame header should be)."""

    async def body(network: Network) -> None:
        await _pair(network, peer_tls(certificates.peer_files(1)), None)
        await wait_until(
            lambda: _refused(caplog, "refused connection from a peer: TLS handshake failed"),
            "the TLS node's refusal of the plain one",
        )
        await wait_until(
            lambda: _refused(caplog, "the sender speaks TLS"),
            "the plain node's refusal of the TLS one",
        )
        await wait_until(
            lambda: _refused(caplog, "is it running without --peer-cert?"),
            "the TLS node's failed dial",
        )
        one, two = network.transports
        assert not one.is_connected(2)
        assert not two.is_connected(1)

    run_on_network(kind, body)


def test_a_silent_connection_to_a_tls_node_is_closed_at_the_handshake_deadline(
    kind: str, certificates: CertificateSet
) -> None:
    """The TLS handshake is bounded like the raftkv one: a socket that never sends its
    ClientHello is closed, not held."""

    async def body(network: Network) -> None:
        transport = network.create(
            1,
            Inbox(),
            peer_tls=peer_tls(certificates.peer_files(1)),
            limits=TransportLimits(handshake_timeout_seconds=0.2),
        )
        await transport.start()
        reader, writer = await asyncio.open_connection(*transport.listen_address)
        try:
            async with asyncio.timeout(5):
                assert await reader.read(100) == b""
        finally:
            writer.close()

    run_on_network(kind, body)


def test_certificate_files_are_checked_when_contexts_are_built(
    certificates: CertificateSet, tmp_path: Path
) -> None:
    from raftkv.tls import PeerTlsFiles, TlsError

    mismatched = PeerTlsFiles(certificates.node_cert(1), certificates.node_key(2), certificates.ca)
    with pytest.raises(TlsError, match="is not the key of --peer-cert"):
        peer_tls(mismatched)
    missing = PeerTlsFiles(str(tmp_path / "absent.pem"), certificates.node_key(1), certificates.ca)
    with pytest.raises(TlsError, match=r"--peer-cert .*absent\.pem"):
        peer_tls(missing)
    not_a_ca = PeerTlsFiles(certificates.node_cert(1), certificates.node_key(1), str(tmp_path))
    with pytest.raises(TlsError, match="--peer-ca"):
        peer_tls(not_a_ca)
