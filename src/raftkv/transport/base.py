"""The Transport seam (ARCHITECTURE.md): how a node's messages reach its peers.

A transport lives inside the node's one asyncio event loop and every method is called from
that loop. `send()` never blocks and never raises for a peer that is down: each peer has a
bounded queue, and when it is full the oldest frame is dropped and counted, because Raft
retransmits whatever still matters. Implementations: `TcpTransport` (length-prefixed
MessagePack frames over TCP, one outbound connection per peer) and `MemoryTransport` (its
in-memory twin for tests, connected through a `MemoryHub`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

from raftkv.core.messages import AnyMessage
from raftkv.errors import RaftError

if TYPE_CHECKING:
    import random

    from raftkv.transport.handshake import LeaseSettings
    from raftkv.transport.shared import FramedMessage

logger = logging.getLogger("raftkv.transport")

MessageHandler = Callable[[AnyMessage], None]
"""Called in the loop for every message decoded from an authenticated peer."""

PeerStateHandler = Callable[[int, bool], None]
"""Called with (peer id, connected) whenever the outbound connection to a peer comes up or
goes down; a peer starts disconnected and is reported only on a change."""

RemovedByHandler = Callable[[int], None]
"""Called with a peer's id when it refuses our connection because this node was removed
from the cluster, or dials this node to say so (a removal notice, `tell_removed`): it
applied (so the cluster committed) a configuration without this node past the one that made
it a member (`member_since`)."""


@dataclass(frozen=True)
class RemovalNotice:
    """What a notice link dials to say (`Transport.tell_removed`): the index of the applied
    configuration that does not hold the peer, and what to call once the peer answered."""

    removed_at: int
    on_told: Callable[[], None]


TraceDirection = Literal["send", "receive"]
TraceHandler = Callable[[TraceDirection, AnyMessage], None]
"""Called for every message sent (before it is queued) and received (before `on_message`)."""


class ListenFailed(RaftError):
    """The peer address could not be bound (in use, no permission, unknown host)."""


@dataclass
class PeerCounters:
    """Per-peer counters. Frames and bytes count whole frames, length prefix included.

    `frames_sent` counts frames handed to the connection, not acknowledged by the peer: frames
    in flight when a connection breaks are lost uncounted, as Raft expects of a network.
    `frames_dropped` counts frames that were never sent: queue overflow, a frame over the size
    limit, no address for the destination, the peer removed or the transport closed.
    """

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    frames_dropped: int = 0
    # Of `frames_sent`, those the WAL sync thread wrote (`PeerLink.send_from_thread`).
    frames_sent_from_thread: int = 0
    connections_opened: int = 0
    connection_failures: int = 0
    queued_frames: int = 0
    queued_bytes: int = 0


@dataclass
class TransportCounters:
    """A snapshot of a transport's counters, for metrics; changing it changes nothing."""

    peers: dict[int, PeerCounters] = field(default_factory=dict)
    # Connections refused at the handshake or closed for a malformed or oversized frame.
    connections_refused: int = 0
    frames_malformed: int = 0

    def copy(self) -> TransportCounters:
        return TransportCounters(
            peers={node_id: replace(counters) for node_id, counters in self.peers.items()},
            connections_refused=self.connections_refused,
            frames_malformed=self.frames_malformed,
        )

    def totals(self) -> PeerCounters:
        """The per-peer counters summed over every peer."""
        total = PeerCounters()
        for counters in self.peers.values():
            for name, value in vars(counters).items():
                setattr(total, name, getattr(total, name) + value)
        return total


class Transport(Protocol):
    """What the server needs from a transport. All methods run in the node's event loop."""

    @property
    def node_id(self) -> int:
        """This node's id; every accepted peer is told it during the handshake."""

    @property
    def listen_address(self) -> tuple[str, int]:
        """(host, port) actually listened on; with port 0 the chosen port, after `start()`."""

    async def start(self) -> None:
        """Start listening and connecting to every known peer; raises `ListenFailed`."""

    async def close(self) -> None:
        """Stop listening, close every connection, drop every queued frame. Idempotent."""

    def send_at_once(self, message: AnyMessage) -> bool:
        """Write `message` to its peer's connection now, from the caller's turn, when that
        link is idle (nothing queued, nothing unsent in the socket's buffer); otherwise,
        and on links that cannot (the in-memory one), queue it as `send` does. True if it
        was written."""

    def send(self, message: AnyMessage) -> None:
        """Queue `message` for `message.to`; never blocks, never raises for a peer down."""

    def frame(self, messages: list[AnyMessage]) -> list[FramedMessage]:
        """`messages` encoded now, each with its peer and link, to be sent later from
        another thread (`PeerLink.send_from_thread`, which may refuse: only plain TCP links
        write from a thread) or from the loop (`send_framed`). Those `send` would drop (no
        such peer, over the frame limit) are dropped and counted here."""

    def send_framed(self, framed: FramedMessage) -> bool:
        """Send from the loop one of `frame`'s: at once if its link is idle, as
        `send_at_once`, and True; else queued."""

    def set_peer_address(self, node_id: int, host: str, port: int) -> None:
        """Add a peer or move it to a new address (membership changes, `--peers`)."""

    def remove_peer(self, node_id: int, removed_at: int = 0) -> None:
        """Forget a peer: drop its queue, close its connections, refuse it from now on,
        unless it was made a member again after `removed_at` (the index of the
        configuration that removed it; 0: not known): a node re-added under its id says so
        in its handshake (`member_since`), and this node may not have that configuration
        yet (it learns it from that very node when it leads)."""

    def set_applied_configuration(self, index: int, members: Collection[int]) -> None:
        """The newest configuration this node applied: a dialer that joined before `index`
        and is not among `members` was removed, and is told so (`on_removed_by`)."""

    def tell_removed(
        self, node_id: int, host: str, port: int, removed_at: int, on_told: Callable[[], None]
    ) -> None:
        """Dial `node_id` at host:port, with backoff, until it answers a removal notice:
        the configuration at `removed_at`, applied here, does not hold it (SPEC §4). For a
        removed node that dials no member (all the peers it knows are gone). `on_told` is
        called once it answered; a new notice for the same node replaces the old."""

    def stop_telling(self, node_id: int) -> None:
        """Give up the removal notice to `node_id`, if any (it is a member again, or the
        node gave up on it)."""

    def is_connected(self, node_id: int) -> bool:
        """Whether the outbound connection to `node_id` is up (handshake accepted)."""

    def peer_client_address(self, node_id: int) -> str | None:
        """The client address ("host:port") the peer announced in a handshake, if any."""

    def set_advertised_address(self, host: str, port: int) -> None:
        """Tell peers (in handshakes) this address instead of the listen address, which may
        be a wildcard one (`raft-node --advertise-peer`)."""

    def counters(self) -> TransportCounters:
        """A snapshot of the counters."""


class TransportFactory(Protocol):
    """Builds a node's transport once the server knows its identity and callbacks:
    `TcpTransport` itself, or `functools.partial(MemoryTransport, hub)` in simulations."""

    def __call__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        lease_settings: LeaseSettings,
        listen_host: str,
        listen_port: int,
        on_message: MessageHandler,
        on_peer_state: PeerStateHandler | None = None,
        on_trace: TraceHandler | None = None,
        client_address: str | None = None,
        accept_unknown_peers: bool = False,
        rng: random.Random | None = None,
        on_cluster_id: Callable[[str], None] | None = None,
        on_removed_by: RemovedByHandler | None = None,
        member_since: int = 0,
    ) -> Transport: ...


def call_safely(description: str, callback: Callable[[], None]) -> None:
    """Run a user callback; an exception there is a bug in the caller, logged, not spread.

    The transport's tasks must survive a failing callback: letting it escape would kill the
    connection (or the writer) and lose every later message for an unrelated reason.
    """
    try:
        callback()
    except Exception:
        logger.exception("%s raised", description)
