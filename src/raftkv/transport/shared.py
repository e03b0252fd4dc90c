"""What TcpTransport and MemoryTransport share: peers, queues, counters, callbacks.

Both keep one `PeerLink` per peer (an outbound connection, or its in-memory twin) that owns
the peer's bounded queue; everything here is the same for both, so the twin cannot drift from
the real transport in how it routes, drops, counts, traces or checks a handshake.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import Protocol

from mypy_extensions import mypyc_attr

from raftkv.addresses import WILDCARD_HOSTS, AddressError, format_address, parse_host_port
from raftkv.core import codec
from raftkv.core.messages import AnyMessage
from raftkv.errors import FrameError
from raftkv.transport.base import (
    MessageHandler,
    PeerCounters,
    PeerStateHandler,
    RemovalNotice,
    RemovedByHandler,
    TraceHandler,
    TransportCounters,
    call_safely,
    logger,
)
from raftkv.transport.handshake import (
    CLUSTER_ID_UNKNOWN,
    HANDSHAKE_MAGIC,
    NO_CONFIGURATION,
    PROTOCOL_VERSION,
    AppliedConfiguration,
    Handshake,
    LeaseSettings,
    Refusal,
    check_handshake,
    removal_notice,
    was_removed,
)
from raftkv.transport.limits import (
    ADOPTED_PEERS_MAX,
    FRAME_HEADER_BYTES,
    REFUSAL_LOG_INTERVAL_SECONDS,
    REFUSALS_REMEMBERED_MAX,
    TransportLimits,
)
from raftkv.transport.send_queue import SendQueue


class PeerLink(Protocol):
    """The sending half of the link to one peer."""

    host: str
    port: int
    queue: SendQueue
    counters: PeerCounters
    connected: bool

    def start(self) -> None: ...

    def stop(self) -> asyncio.Task[None] | None:
        """Stop without waiting; returns the task still unwinding, if any."""

    def move(self, host: str, port: int) -> asyncio.Task[None] | None:
        """Use a new address, keeping the queue; returns a task still unwinding, if any."""

    # Whether `send_now` can write from the caller's turn (TCP); the in-memory link
    # cannot, and its transport's `send_at_once` is then `send` itself.
    writes_at_once: bool

    def on_queued(self) -> None:
        """A frame was queued (the memory twin wakes its delivery task)."""

    def send_now(self, payload: bytes) -> bool:
        """Write `payload` now if the link is idle; False (nothing done) otherwise."""

    def send_from_thread(self, payload: bytes) -> bool:
        """From a thread other than the loop's: write `payload` now if the link is idle;
        False (nothing done) otherwise, and always over TLS or in memory."""


# A message encoded for another thread to write: (peer id, its link, the payload).
FramedMessage = tuple[int, PeerLink, bytes]


# Compiled (setup.py); the TCP and in-memory transports subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class TransportBase(ABC):
    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        lease_settings: LeaseSettings,
        on_message: MessageHandler,
        on_peer_state: PeerStateHandler | None,
        on_trace: TraceHandler | None,
        client_address: str | None,
        accept_unknown_peers: bool,
        limits: TransportLimits | None,
        rng: random.Random | None,
        on_cluster_id: Callable[[str], None] | None = None,
        on_removed_by: RemovedByHandler | None = None,
        member_since: int = 0,
    ) -> None:
        if node_id <= 0:
            raise ValueError("node_id must be a positive integer")
        self._node_id = node_id
        # Empty while this node, a founding member, has not learnt it: see `_learn_cluster_id`.
        self._cluster_id = cluster_id
        self._on_cluster_id = on_cluster_id
        self._on_removed_by = on_removed_by
        # Told in handshakes (`Handshake.member_since`); 0: not known.
        self._member_since = member_since
        # What a dialer is checked against for its removal (`handshake.removal_refusal`).
        self._applied_configuration = NO_CONFIGURATION
        self._lease_settings = lease_settings
        self._on_message = on_message
        self._on_peer_state = on_peer_state
        self._on_trace = on_trace
        self._client_address = client_address or ""
        # What `own_peer_address` names instead of the listen address (`--advertise-peer`).
        self._advertised_address: tuple[str, int] | None = None
        self._accept_unknown_peers = accept_unknown_peers
        self._limits = limits or TransportLimits()
        # Only reconnect jitter draws from it; a fresh generator when none is injected.
        self._random = rng or random.Random()
        self._links: dict[int, PeerLink] = {}
        # Links that only dial to tell a removed peer so (`tell_removed`), apart from
        # `_links`: such a peer is neither sent messages nor accepted as known.
        self._notices: dict[int, PeerLink] = {}
        self._counters = TransportCounters()
        self._client_addresses: dict[int, str] = {}
        # Peers removed with `remove_peer` (until given an address again), each with the
        # index of the configuration that removed it (0: not known): refused even when
        # their handshake says where to reach them, unless it says they became members
        # again after that index.
        self._removed_peers: dict[int, int] = {}
        # Peers accepted without being known, on the address their handshake named.
        self._adopted_peers: set[int] = set()
        # The `member_since` of each peer whose handshake was accepted (its latest): when a
        # configuration applied later proves it removed, its connection is closed, so that
        # it redials and hears so.
        self._accepted_member_since: dict[int, int] = {}
        # Cancelled link tasks still unwinding; `close()` waits for them.
        # Insertion-ordered, not a set: awaited in a repeatable order (the simulator).
        self._retired_tasks: dict[asyncio.Task[None], None] = {}
        self._refusals_logged: dict[tuple[str, str], float] = {}
        self._started = False
        self._closed = False

    # --- hooks for the implementations ---------------------------------------------------
    @property
    @abstractmethod
    def listen_address(self) -> tuple[str, int]:
        """Where this transport accepts peers (the bound port once started)."""

    @abstractmethod
    def _create_link(
        self, node_id: int, host: str, port: int, notice: RemovalNotice | None = None
    ) -> PeerLink:
        """The implementation's link to a peer (a TCP connection or a hub mailbox); with a
        notice, one that only dials to tell it, and ends once answered."""

    def _forget_inbound(self, node_id: int) -> None:  # noqa: B027 - optional hook
        """Close what `node_id` opened to us; it was removed from the peers (a no-op where
        there is nothing inbound to close)."""

    # --- the Transport protocol ------------------------------------------------------------
    @property
    def node_id(self) -> int:
        return self._node_id

    def send(self, message: AnyMessage) -> None:
        framed = self._framed(message)
        if framed is not None:
            self._queue(message.to, *framed)

    def send_at_once(self, message: AnyMessage) -> bool:
        link = self._links.get(message.to)
        if link is None or not link.writes_at_once:
            self.send(message)
            return False
        framed = self._framed(message)
        if framed is None:
            return False
        link, payload = framed
        if link.send_now(payload):
            return True
        self._queue(message.to, link, payload)
        return False

    def frame(self, messages: list[AnyMessage]) -> list[FramedMessage]:
        """`messages` encoded now, each with its peer and link, to be sent later: from
        another thread (`PeerLink.send_from_thread`, which may refuse) or the loop
        (`send_framed`). Those `send` would drop are dropped here (and counted)."""
        framed: list[FramedMessage] = []
        for message in messages:
            one = self._framed(message)
            if one is not None:
                framed.append((message.to, one[0], one[1]))
        return framed

    def send_framed(self, framed: FramedMessage) -> bool:
        """Send from the loop one of `frame`'s (at once if its link is idle: True)."""
        to, link, payload = framed
        if link.send_now(payload):
            return True
        self._queue(to, link, payload)
        return False

    def _framed(self, message: AnyMessage) -> tuple[PeerLink, bytes] | None:
        """The link and encoded payload for `message`, or None when it is dropped (no such
        peer, closed, over the frame limit: counted and logged)."""
        if self._on_trace is not None:
            trace = self._on_trace
            call_safely("on_trace", lambda: trace("send", message))
        link = self._links.get(message.to)
        if link is None or self._closed:
            self._peer_counters(message.to).frames_dropped += 1
            logger.debug("dropped %s for node %d: no such peer", type(message).__name__, message.to)
            return None
        payload = codec.encode(message)
        if len(payload) > self._limits.frame_bytes_max:
            link.counters.frames_dropped += 1
            logger.error(
                "dropped %s for node %d: %d bytes, over the frame limit of %d",
                type(message).__name__,
                message.to,
                len(payload),
                self._limits.frame_bytes_max,
            )
            return None
        return link, payload

    def _queue(self, to: int, link: PeerLink, payload: bytes) -> None:
        dropped = link.queue.push(payload)
        if dropped:
            link.counters.frames_dropped += dropped
            logger.debug("queue for node %d full: dropped %d oldest frames", to, dropped)
        link.on_queued()

    def set_peer_address(self, node_id: int, host: str, port: int) -> None:
        if node_id == self._node_id:
            return  # a membership list includes this node; it never dials itself
        self._removed_peers.pop(node_id, None)
        self.stop_telling(node_id)  # a member again
        link = self._links.get(node_id)
        if link is None:
            link = self._links[node_id] = self._create_link(node_id, host, port)
            if self._started and not self._closed:
                link.start()
        elif (link.host, link.port) != (host, port):
            self._retire(link.move(host, port))

    def remove_peer(self, node_id: int, removed_at: int = 0) -> None:
        earlier = self._removed_peers.get(node_id, removed_at)
        # Not known (0) wins: such a peer is refused whatever it says.
        self._removed_peers[node_id] = 0 if 0 in (earlier, removed_at) else max(earlier, removed_at)
        self._adopted_peers.discard(node_id)
        link = self._links.pop(node_id, None)
        if link is not None:
            link.counters.frames_dropped += link.queue.clear()
            self._retire(link.stop())
        if not self._accept_unknown_peers:
            self._forget_inbound(node_id)

    def tell_removed(
        self, node_id: int, host: str, port: int, removed_at: int, on_told: Callable[[], None]
    ) -> None:
        if node_id == self._node_id:
            return
        self.stop_telling(node_id)

        def told() -> None:
            if self._notices.get(node_id) is link:  # not one replaced or stopped since
                del self._notices[node_id]  # its task ends by itself
                logger.info("node %d answered its removal notice (index %d)", node_id, removed_at)
                call_safely("on_told", on_told)

        notice = RemovalNotice(removed_at, told)
        link = self._notices[node_id] = self._create_link(node_id, host, port, notice)
        if self._started and not self._closed:
            link.start()

    def stop_telling(self, node_id: int) -> None:
        link = self._notices.pop(node_id, None)
        if link is not None:
            self._retire(link.stop())

    def set_applied_configuration(self, index: int, members: Collection[int]) -> None:
        applied = self._applied_configuration = AppliedConfiguration(index, frozenset(members))
        # A removed peer connected before (this node had not applied the removal, or had
        # just restarted and applied nothing yet) would keep its connection, never redial,
        # never be refused, and so never learn it was removed.
        for peer, since in list(self._accepted_member_since.items()):
            if was_removed(peer, since, applied):
                del self._accepted_member_since[peer]
                if peer in self._adopted_peers:
                    self.remove_peer(peer, applied.index)  # dialed back only because it dialed us
                self._forget_inbound(peer)

    @property
    def member_since(self) -> int:
        return self._member_since

    def is_connected(self, node_id: int) -> bool:
        link = self._links.get(node_id)
        return link is not None and link.connected

    def peer_client_address(self, node_id: int) -> str | None:
        return self._client_addresses.get(node_id)

    def counters(self) -> TransportCounters:
        snapshot = self._counters.copy()
        for node_id, link in self._links.items():
            snapshot.peers[node_id].queued_frames = len(link.queue)
            snapshot.peers[node_id].queued_bytes = link.queue.queued_bytes
        return snapshot

    # --- for the implementations -----------------------------------------------------------
    def _start_links(self) -> None:
        self._started = True
        for link in (*self._links.values(), *self._notices.values()):
            link.start()

    async def _close_links(self) -> None:
        for link in self._links.values():
            link.counters.frames_dropped += link.queue.clear()
            self._retire(link.stop())
        for node_id in list(self._notices):
            self.stop_telling(node_id)
        await asyncio.gather(*self._retired_tasks, return_exceptions=True)

    def _peer_counters(self, node_id: int) -> PeerCounters:
        counters = self._counters.peers.get(node_id)
        if counters is None:
            counters = self._counters.peers[node_id] = PeerCounters()
        return counters

    def _retire(self, task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            self._retired_tasks[task] = None
            task.add_done_callback(lambda done: self._retired_tasks.pop(done, None))

    def _report_peer_state(self, node_id: int, connected: bool) -> None:
        handler = self._on_peer_state
        if handler is not None:
            call_safely("on_peer_state", lambda: handler(node_id, connected))

    def _report_removed_by(self, peer_id: int) -> None:
        handler = self._on_removed_by
        if handler is not None:
            call_safely("on_removed_by", lambda: handler(peer_id))

    def _learn_client_address(self, node_id: int, client_address: str) -> None:
        if client_address:
            self._client_addresses[node_id] = client_address

    def _log_refusal(self, kind: str, host: str, text: str) -> None:
        """Count and log a refused connection; see `_log_limited`."""
        self._counters.connections_refused += 1
        self._log_limited(kind, host, f"refused connection from {text}")

    def _log_limited(self, kind: str, host: str, text: str) -> None:
        """Log `text` as a warning the first time, then at most once per
        `REFUSAL_LOG_INTERVAL_SECONDS` for the same kind of event from the same host, and
        at debug level in between. The key is never text the sender chose (a cluster id, a
        node id, a decoder's error): keyed on that, a flood of varying refusals once grew a
        node's log by 8 MB in 0.6 s. A refused peer also redials every second or so."""
        key = (kind, host)
        now = time.monotonic()
        logged_at = self._refusals_logged.get(key)
        if logged_at is not None and now - logged_at < REFUSAL_LOG_INTERVAL_SECONDS:
            logger.debug("%s", text)
            return
        if len(self._refusals_logged) >= REFUSALS_REMEMBERED_MAX:
            self._refusals_logged.clear()
        self._refusals_logged[key] = now
        logger.log(logging.INFO if kind == CLUSTER_ID_UNKNOWN else logging.WARNING, "%s", text)

    def _check_handshake(self, handshake: Handshake) -> Refusal | None:
        """Why the handshake is refused, or None; a peer accepted without being known
        (it named its address) is dialed back at that address, so it gets answers. A
        removal notice is always refused, and reported when it proves this node removed."""
        if handshake.removed_at:
            answer, removed = removal_notice(
                handshake,
                cluster_id=self._cluster_id,
                node_id=self._node_id,
                member_since=self._member_since,
                applied=self._applied_configuration,
            )
            if removed:
                self._report_removed_by(handshake.node_id)
            return answer
        refusal = check_handshake(
            handshake,
            cluster_id=self._cluster_id,
            node_id=self._node_id,
            lease_settings=self._lease_settings,
            known_peers=self._links,
            accept_unknown_peers=self._accept_unknown_peers,
            removed_peers=self._removed_peers,
            applied=self._applied_configuration,
        )
        if refusal is None and not self._cluster_id:
            self._learn_cluster_id(handshake.cluster_id, handshake.node_id)
        if refusal is None and handshake.node_id not in self._links and handshake.peer_address:
            try:
                host, port = parse_host_port(handshake.peer_address)
            except AddressError:
                return Refusal.same(
                    f"bad peer address {handshake.peer_address!r}", "bad peer address"
                )
            if len(self._adopted_peers) >= ADOPTED_PEERS_MAX:
                return Refusal.same(
                    f"unknown node id {handshake.node_id}: already {ADOPTED_PEERS_MAX} "
                    "peers not in the configuration",
                    "too many unknown peers",
                )
            self._adopted_peers.add(handshake.node_id)
            logger.info(
                "node %d, not in the configuration known here, connected from %s",
                handshake.node_id,
                handshake.peer_address,
            )
            self.set_peer_address(handshake.node_id, host, port)
        if refusal is None:
            self._accepted_member_since[handshake.node_id] = handshake.member_since
        return refusal

    @property
    def cluster_id(self) -> str:
        """The cluster id handshakes carry; empty until a founding member learns it."""
        return self._cluster_id

    def _learn_cluster_id(self, cluster_id: str, from_node: int) -> None:
        """Adopt the cluster id a member told us (in its handshake or its reply to ours).

        A founding member other than the lowest-id one starts without a cluster id: that
        one made it at random, and the others learn it from the first member that knows it
        (`handshake.check_handshake` allows nothing else while it is unknown). The callback
        records it durably before anything else arrives from that member."""
        if self._cluster_id or not cluster_id:
            return
        if self._on_cluster_id is not None:
            self._on_cluster_id(cluster_id)
        self._cluster_id = cluster_id
        logger.info("learnt cluster id %s from node %d", cluster_id, from_node)

    def set_advertised_address(self, host: str, port: int) -> None:
        self._advertised_address = (host, port)

    def _dial_handshake(self, peer_id: int, removed_at: int = 0) -> Handshake:
        """What this node says when it dials `peer_id` (both transports, so that the twin
        says what TCP says); `removed_at`: a removal notice (`tell_removed`)."""
        return Handshake(
            magic=HANDSHAKE_MAGIC,
            protocol_version=PROTOCOL_VERSION,
            cluster_id=self._cluster_id,
            node_id=self._node_id,
            to_node_id=peer_id,
            client_address=self._client_address,
            lease=self._lease_settings,
            peer_address=self.own_peer_address(),
            member_since=self._member_since,
            removed_at=removed_at,
        )

    def own_peer_address(self) -> str:
        """Where peers reach this node, for handshakes: the advertised address if one was
        set, else the listen address; empty on a wildcard address."""
        if self._advertised_address is not None:
            return format_address(self._advertised_address)
        host, port = self.listen_address
        return "" if host in WILDCARD_HOSTS else format_address((host, port))

    def _receive_payload(self, peer_id: int, payload: bytes, counters: PeerCounters) -> None:
        """Decode one frame from an authenticated peer and hand it on.

        Raises `FrameError` for a malformed frame or one that names another sender or
        destination than the connection it came on: a peer that does that is broken.
        """
        message = codec.decode(payload)
        if message.to != self._node_id or message.sender != peer_id:
            raise FrameError(
                f"{type(message).__name__} from node {message.sender} to node {message.to} "
                f"arrived on the link from node {peer_id} to node {self._node_id}"
            )
        counters.frames_received += 1
        counters.bytes_received += len(payload) + FRAME_HEADER_BYTES
        # Not `call_safely`: this runs for every message received, and a closure costs.
        try:
            if self._on_trace is not None:
                self._on_trace("receive", message)
            self._on_message(message)
        except Exception:
            logger.exception("on_message raised for %s", type(message).__name__)
