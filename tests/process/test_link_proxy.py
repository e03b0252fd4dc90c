"""The user-space link cutter on plain sockets: it forwards, a cut black-holes open and new
connections both ways (nothing sent during the cut ever arrives), healing resets what was
black-holed and lets new connections through, and closing releases everything."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from raftkv.chaos.link_proxy import LinkProxies
from tests.process.cluster import wait_for

DEADLINE_SECONDS = 10.0


@pytest.fixture
def proxies() -> Iterator[LinkProxies]:
    links = LinkProxies()
    try:
        yield links
    finally:
        links.close()


@pytest.fixture
def target() -> Iterator[socket.socket]:
    """Node 2's peer port, as far as the proxy can tell."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE_SECONDS)
        yield listener


def address_of(listener: socket.socket) -> tuple[str, int]:
    host, port = listener.getsockname()[:2]
    return str(host), int(port)


def dial(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=DEADLINE_SECONDS)


def wait_black_holed(proxies: LinkProxies, sender: int, receiver: int, count: int) -> None:
    """The proxy accepts in its own time: wait until it holds `count` connections in its black
    hole, so that a heal cannot come before it has even seen them."""
    wait_for(
        lambda: any(
            (link.sender, link.receiver, link.connections_black_holed) == (sender, receiver, count)
            for link in proxies.status()
        ),
        DEADLINE_SECONDS,
        f"{count} black-holed connections on {sender}->{receiver}",
    )


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def receive_until_closed(connection: socket.socket) -> bytes:
    """Everything that arrives before the connection ends (by a close or a reset)."""
    data = b""
    try:
        while chunk := connection.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_forwards_both_ways_on_one_route(proxies: LinkProxies, target: socket.socket) -> None:
    address = proxies.route(1, 2, address_of(target))
    assert proxies.route(1, 2, address_of(target)) == address
    assert proxies.route(2, 1, address_of(target)) != address
    with dial(address) as client:
        upstream, _ = target.accept()
        with upstream:
            client.sendall(b"append")
            assert receive_exactly(upstream, 6) == b"append"
            upstream.sendall(b"ack")
            assert receive_exactly(client, 3) == b"ack"


def test_cut_black_holes_until_heal_then_resets(
    proxies: LinkProxies, target: socket.socket
) -> None:
    address = proxies.route(1, 2, address_of(target))
    open_client = dial(address)
    open_upstream, _ = target.accept()
    with open_client, open_upstream:
        open_client.sendall(b"before")
        assert receive_exactly(open_upstream, 6) == b"before"

        proxies.cut([2], [1])  # either side named first: the link is cut both ways
        open_client.sendall(b"lost from 1")
        open_upstream.sendall(b"lost from 2")
        with dial(address) as new_client:  # accepted, as a black hole accepts
            new_client.sendall(b"lost handshake")
            wait_black_holed(proxies, 1, 2, count=2)
            proxies.heal()
            # What was black-holed is reset, and nothing sent during the cut came out.
            assert receive_until_closed(new_client) == b""
            assert receive_until_closed(open_client) == b""
            assert receive_until_closed(open_upstream) == b""

        # Healed: the next connection is the first the target sees since the cut, so the
        # black-holed one was never forwarded.
        with dial(address) as client:
            client.sendall(b"after")
            upstream, _ = target.accept()
            with upstream:
                assert receive_exactly(upstream, 5) == b"after"


def test_a_link_routed_during_a_cut_starts_cut(proxies: LinkProxies, target: socket.socket) -> None:
    proxies.cut([1], [2, 3])
    address = proxies.route(3, 1, address_of(target))
    with dial(address) as client:
        client.sendall(b"lost")
        wait_black_holed(proxies, 3, 1, count=1)
        assert [link.cut for link in proxies.status()] == [True]
        proxies.heal()
        assert receive_until_closed(client) == b""
    with dial(address) as client:
        client.sendall(b"through")
        upstream, _ = target.accept()
        with upstream:
            assert receive_exactly(upstream, 7) == b"through"


def test_route_never_takes_an_avoided_port(proxies: LinkProxies) -> None:
    with pytest.raises(RuntimeError, match="no free port"):
        proxies.route(1, 2, ("127.0.0.1", 1), avoid_ports=range(1 << 16))
    assert proxies.status() == []


def test_close_aborts_connections_and_stops_listening(target: socket.socket) -> None:
    proxies = LinkProxies()
    address = proxies.route(1, 2, address_of(target))
    client = dial(address)
    upstream, _ = target.accept()
    with client, upstream:
        proxies.close()
        proxies.close()  # twice is fine
        assert receive_until_closed(client) == b""
        assert receive_until_closed(upstream) == b""
    with pytest.raises(ConnectionRefusedError):
        dial(address).close()
    with pytest.raises(RuntimeError):
        proxies.heal()
