"""Shared helpers for the transport tests: event loops, networks, inboxes and deadlines.

Tests are plain sync functions that run an async body in a fresh event loop (no
pytest-asyncio). Every wait is on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import uvloop

from raftkv.core.messages import AnyMessage, AppendEntries, Entry
from raftkv.tls import PeerTls
from raftkv.transport import (
    LeaseSettings,
    MemoryHub,
    MemoryTransport,
    PeerStateHandler,
    RemovedByHandler,
    TcpTransport,
    TraceHandler,
    Transport,
    TransportLimits,
)
from tests.waiting import wait_until

CLUSTER_ID = "test-cluster"
# What every test transport declares unless a test says otherwise (the server's defaults).
LEASE_SETTINGS = LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=15, check_quorum=True)
HOST = "127.0.0.1"
# The whole async body of one test.
TEST_DEADLINE_SECONDS = 20.0
# Tests redial fast so a restart is noticed in milliseconds, not the production second.
TEST_LIMITS = TransportLimits(
    reconnect_backoff_initial_seconds=0.005,
    reconnect_backoff_max_seconds=0.05,
)

NETWORK_KINDS = ["memory", "tcp", "tcp-uvloop"]


def run(body: Coroutine[Any, Any, None], *, use_uvloop: bool = False) -> None:
    """Run `body` in a fresh loop; anything reported to the loop's exception handler (an
    exception escaping a task or callback) fails the test, even if the body passed."""
    factory = uvloop.new_event_loop if use_uvloop else asyncio.new_event_loop
    unhandled: list[dict[str, Any]] = []
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.get_loop().set_exception_handler(lambda loop, context: unhandled.append(context))
        runner.run(asyncio.wait_for(body, TEST_DEADLINE_SECONDS))
    assert unhandled == [], f"unhandled errors in the event loop: {unhandled}"


def append_entries(sender: int, to: int, sequence: int, entry_bytes: int = 100) -> AppendEntries:
    """An AppendEntries whose `prev_log_index` numbers it, with one entry of `entry_bytes`."""
    return AppendEntries(
        to=to,
        term=1,
        leader_id=sender,
        prev_log_index=sequence,
        prev_log_term=1,
        entries=[Entry(term=1, index=sequence + 1, data=b"x" * entry_bytes)],
        leader_commit=0,
    )


class Inbox:
    """An `on_message` callback that keeps what it received."""

    def __init__(self) -> None:
        self.messages: list[AnyMessage] = []

    def __call__(self, message: AnyMessage) -> None:
        self.messages.append(message)

    def sequences_from(self, sender: int) -> list[int]:
        return [
            message.prev_log_index
            for message in self.messages
            if isinstance(message, AppendEntries) and message.leader_id == sender
        ]

    async def wait_for_count(self, count: int) -> None:
        await wait_until(lambda: len(self.messages) >= count, f"{count} messages")


class PeerStates:
    """An `on_peer_state` callback that records every (peer, connected) report."""

    def __init__(self) -> None:
        self.events: list[tuple[int, bool]] = []

    def __call__(self, node_id: int, connected: bool) -> None:
        self.events.append((node_id, connected))


class Network:
    """Creates transports of one kind and closes every one of them at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.hub = MemoryHub(random.Random(7))
        self.transports: list[Transport] = []
        self._next_memory_port = 50000

    @property
    def is_tcp(self) -> bool:
        return self.kind.startswith("tcp")

    def create(
        self,
        node_id: int,
        on_message: Callable[[AnyMessage], None],
        *,
        port: int = 0,
        cluster_id: str = CLUSTER_ID,
        lease_settings: LeaseSettings = LEASE_SETTINGS,
        limits: TransportLimits = TEST_LIMITS,
        accept_unknown_peers: bool = False,
        on_peer_state: PeerStateHandler | None = None,
        on_trace: TraceHandler | None = None,
        client_address: str | None = None,
        listen_host: str = HOST,
        on_cluster_id: Callable[[str], None] | None = None,
        on_removed_by: RemovedByHandler | None = None,
        member_since: int = 0,
        peer_tls: PeerTls | None = None,
    ) -> Transport:
        common: dict[str, Any] = {
            "node_id": node_id,
            "cluster_id": cluster_id,
            "lease_settings": lease_settings,
            "listen_host": listen_host,
            "listen_port": port,
            "on_message": on_message,
            "on_peer_state": on_peer_state,
            "on_trace": on_trace,
            "client_address": client_address,
            "accept_unknown_peers": accept_unknown_peers,
            "limits": limits,
            "rng": random.Random(node_id),
            "on_cluster_id": on_cluster_id,
            "on_removed_by": on_removed_by,
            "member_since": member_since,
        }
        transport: Transport = (
            TcpTransport(**common, peer_tls=peer_tls)
            if self.is_tcp
            else MemoryTransport(self.hub, **common)
        )
        self.transports.append(transport)
        return transport

    def unused_address(self) -> tuple[str, int]:
        """An address nobody listens on (yet)."""
        if not self.is_tcp:
            self._next_memory_port += 1
            return HOST, self._next_memory_port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            return HOST, int(probe.getsockname()[1])

    async def close_all(self) -> None:
        for transport in self.transports:
            await transport.close()


def run_on_network(kind: str, body: Callable[[Network], Awaitable[None]]) -> None:
    async def main() -> None:
        network = Network(kind)
        try:
            await body(network)
        finally:
            await network.close_all()

    run(main(), use_uvloop=kind == "tcp-uvloop")


async def start_cluster(
    network: Network, node_ids: list[int], **options: Any
) -> dict[int, tuple[Transport, Inbox]]:
    """Start one transport per id, each knowing every other's address."""
    nodes: dict[int, tuple[Transport, Inbox]] = {}
    for node_id in node_ids:
        inbox = Inbox()
        transport = network.create(node_id, inbox, **options)
        await transport.start()
        nodes[node_id] = (transport, inbox)
    for node_id, (transport, _) in nodes.items():
        for peer_id, (peer, _) in nodes.items():
            if peer_id != node_id:
                transport.set_peer_address(peer_id, *peer.listen_address)
    return nodes


async def idle_link(network: Network) -> tuple[Transport, Any, Transport, Inbox]:
    """Nodes 1 and 2 connected: (node 1, its link to node 2, node 2, node 2's inbox), with one
    frame delivered and, over TCP, the link's writer task waiting for more."""
    nodes = await start_cluster(network, [1, 2])
    sender, _ = nodes[1]
    receiver, inbox = nodes[2]
    sender.send(append_entries(1, 2, 0))
    await inbox.wait_for_count(1)
    link: Any = sender._links[2]  # type: ignore[attr-defined]
    if network.is_tcp:
        await wait_until(lambda: link._idle_writer is not None, "the link's writer idle")
    return sender, link, receiver, inbox
