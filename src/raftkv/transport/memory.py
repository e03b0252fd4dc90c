"""MemoryTransport: the in-memory twin of TcpTransport, for tests in one event loop.

Transports "listen" on (host, port) addresses of a `MemoryHub`, which also plays the
network: it can partition nodes, block single directions, and lose frames at random (from an
injected `random.Random`). Messages still go through the codec, the bounded per-peer queues,
the handshake check and the counters shared with TcpTransport (`shared.py`), so behaviour a
test sees here is the behaviour the TCP transport has: per-pair FIFO order, drop-oldest when a
peer is unreachable, refusal of strangers, redelivery of the queue once a peer is back.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable, Collection
from itertools import combinations

from raftkv.errors import FrameError
from raftkv.transport.base import (
    ListenFailed,
    MessageHandler,
    PeerCounters,
    PeerStateHandler,
    RemovalNotice,
    RemovedByHandler,
    TraceHandler,
    logger,
)
from raftkv.transport.handshake import (
    Handshake,
    LeaseSettings,
    Refusal,
    is_bootstrap_refusal,
)
from raftkv.transport.limits import FRAME_HEADER_BYTES, TransportLimits
from raftkv.transport.send_queue import SendQueue
from raftkv.transport.shared import TransportBase

# Ports handed out for port 0 start here, clear of the defaults (9000 + id) tests may use.
_FIRST_EPHEMERAL_PORT = 40000


class MemoryHub:
    """The network between MemoryTransports: addresses, partitions and random loss."""

    def __init__(self, rng: random.Random | None = None) -> None:
        # Loss is drawn from this generator only, so a seed replays the same losses.
        self._random = rng or random.Random(0)
        self._listeners: dict[tuple[str, int], MemoryTransport] = {}
        self._blocked: set[tuple[int, int]] = set()
        self._isolated: set[int] = set()
        self._next_port = _FIRST_EPHEMERAL_PORT
        self.drop_probability = 0.0
        self.frames_lost = 0
        # Delivery delay in seconds, drawn per frame from [low, high) by the same generator;
        # None delivers at once. Frames of one link keep their order, as over TCP.
        self.latency_seconds: tuple[float, float] | None = None

    # --- faults ----------------------------------------------------------------------------
    def partition(self, *groups: Collection[int]) -> None:
        """Cut every link between nodes of different groups, both ways (on top of any cut)."""
        for first, second in combinations(groups, 2):
            for a in first:
                for b in second:
                    self._blocked.update({(a, b), (b, a)})
        self._changed()

    def isolate(self, node_id: int) -> None:
        """Cut every link to and from `node_id`."""
        self._isolated.add(node_id)
        self._changed()

    def block(self, from_id: int, to_id: int) -> None:
        """Cut one direction only: `from_id` can no longer reach `to_id`."""
        self._blocked.add((from_id, to_id))
        self._changed()

    def heal(self) -> None:
        """Restore every link cut by `partition`, `isolate` or `block`."""
        self._blocked.clear()
        self._isolated.clear()
        self._changed()

    def set_drop_probability(self, probability: float) -> None:
        """Lose each frame in transit with this probability (after it was counted sent)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("drop probability must be within [0, 1]")
        self.drop_probability = probability

    def crash(self, address: tuple[str, int]) -> None:
        """The process listening at `address` died (no `close()` ran): it takes no frame
        and no connection from now on, and its address is free for a restart."""
        transport = self._listeners.pop(address, None)
        if transport is not None:
            transport._closed = True
        self._changed()

    def can_reach(self, from_id: int, to_id: int) -> bool:
        if from_id in self._isolated or to_id in self._isolated:
            return False
        return (from_id, to_id) not in self._blocked

    # --- for MemoryTransport ---------------------------------------------------------------
    def _bind(self, transport: MemoryTransport, host: str, port: int) -> tuple[str, int]:
        if port == 0:
            while (host, self._next_port) in self._listeners:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        if (host, port) in self._listeners:
            raise ListenFailed(f"cannot listen for peers on {host}:{port}: address in use")
        self._listeners[(host, port)] = transport
        self._changed()
        return host, port

    def _unbind(self, address: tuple[str, int]) -> None:
        self._listeners.pop(address, None)
        self._changed()

    def _listener(self, address: tuple[str, int]) -> MemoryTransport | None:
        return self._listeners.get(address)

    def _lose_frame(self) -> bool:
        if self.drop_probability and self._random.random() < self.drop_probability:
            self.frames_lost += 1
            return True
        return False

    def _changed(self) -> None:
        for transport in list(self._listeners.values()):
            transport._wake_links()


class _MemoryLink:
    """The sending half of a link: a queue and a task that delivers it while the link is up."""

    def __init__(
        self,
        owner: MemoryTransport,
        peer_id: int,
        host: str,
        port: int,
        notice: RemovalNotice | None = None,
    ) -> None:
        self.owner = owner
        # A notice link (`Transport.tell_removed`): handshakes with it, and ends once answered.
        self.notice = notice
        self.peer_id = peer_id
        self.host = host
        self.port = port
        limits = owner.limits
        self.queue = SendQueue(limits.send_queue_frames_max, limits.send_queue_bytes_max)
        self.counters = owner._peer_counters(peer_id)
        self.connected = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_refusal = ""
        self._destination: MemoryTransport | None = None
        self._last_arrival = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(
            self._run(), name=f"raftkv-memory-transport-{self.owner.node_id}-{self.peer_id}"
        )

    def stop(self) -> asyncio.Task[None] | None:
        self._set_connected(False)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def move(self, host: str, port: int) -> asyncio.Task[None] | None:
        self.host, self.port = host, port
        self._wake.set()
        return None

    writes_at_once = False  # delivered by its task, after the hub's latency

    def on_queued(self) -> None:
        self._wake.set()

    def send_now(self, payload: bytes) -> bool:
        return False

    def send_from_thread(self, payload: bytes) -> bool:
        return False

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            if connected:
                self.counters.connections_opened += 1
            self.owner._report_peer_state(self.peer_id, connected)

    async def _run(self) -> None:
        owner = self.owner
        batch_bytes_max = owner.limits.write_batch_bytes_max
        while True:
            # Cleared before looking, with no await in between: a wake-up during the
            # delivery below is never lost.
            self._wake.clear()
            if self.notice is not None:
                if self._tell():
                    return
                await self._wake.wait()
                continue
            destination = self._connect()
            self._set_connected(destination is not None)
            if destination is not None and len(self.queue):
                for payload in self.queue.take_batch(batch_bytes_max):
                    self.counters.frames_sent += 1
                    self.counters.bytes_sent += len(payload) + FRAME_HEADER_BYTES
                    if not owner.hub._lose_frame():
                        self._deliver(destination, payload)
                # Yield, as a socket write would, so one busy link cannot starve the loop.
                await asyncio.sleep(0)
                continue
            await self._wake.wait()

    def _deliver(self, destination: MemoryTransport, payload: bytes) -> None:
        hub = self.owner.hub
        if hub.latency_seconds is None:
            destination._accept_frame(self.owner.node_id, payload)
            return
        loop = asyncio.get_running_loop()
        low, high = hub.latency_seconds
        # In order per link (TCP); a cut made meanwhile loses what was on the wire.
        arrival = max(self._last_arrival, loop.time() + hub._random.uniform(low, high))
        self._last_arrival = arrival
        loop.call_at(arrival, self._arrive, destination, payload, context=destination._context)

    def _arrive(self, destination: MemoryTransport, payload: bytes) -> None:
        owner = self.owner
        if owner.hub.can_reach(owner.node_id, destination.node_id):
            destination._accept_frame(owner.node_id, payload)

    def _tell(self) -> bool:
        """Dial with the removal notice; whether the peer answered (any answer will do)."""
        owner = self.owner
        destination = owner.hub._listener((self.host, self.port))
        if destination is None or not owner.hub.can_reach(owner.node_id, destination.node_id):
            return False
        assert self.notice is not None
        destination._context.run(
            destination._refusal, owner._dial_handshake(self.peer_id, self.notice.removed_at)
        )
        self.notice.on_told()
        return True

    def _connect(self) -> MemoryTransport | None:
        """The destination if the link is up now, doing the handshake check of TCP."""
        owner = self.owner
        destination = owner.hub._listener((self.host, self.port))
        if destination is None or not owner.hub.can_reach(owner.node_id, destination.node_id):
            return None
        if (
            self.connected
            and destination is self._destination
            and owner.node_id in destination._inbound_peers
        ):
            return destination
        # A new listener at the address (the peer restarted) or one that forgot us: the old
        # "connection" is gone, and a new one starts with a new handshake.
        self._set_connected(False)
        self._destination = None
        handshake = owner._dial_handshake(self.peer_id)
        # The accepting side runs in its own process's context: what it starts there (a
        # link back to a peer it did not know) is its own, and dies with it, not with us.
        refusal = destination._context.run(destination._refusal, handshake)
        if refusal is not None:
            if refusal.removed_at:
                owner._report_removed_by(self.peer_id)
            reason = refusal.reply
            if reason != self._last_refusal:
                self._last_refusal = reason
                self.counters.connection_failures += 1
                logger.log(
                    logging.INFO if is_bootstrap_refusal(reason) else logging.WARNING,
                    "node %d at %s:%d refused our connection: %s",
                    self.peer_id,
                    self.host,
                    self.port,
                    reason,
                )
            return None
        self._last_refusal = ""
        self._destination = destination
        # What TcpTransport's dialer reads from the handshake reply.
        owner._learn_cluster_id(destination.cluster_id, self.peer_id)
        owner._learn_client_address(self.peer_id, destination.client_address)
        return destination


class MemoryTransport(TransportBase):
    """See `base.Transport`; the same constructor as TcpTransport plus the hub."""

    def __init__(
        self,
        hub: MemoryHub,
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
        limits: TransportLimits | None = None,
        rng: random.Random | None = None,
        on_cluster_id: Callable[[str], None] | None = None,
        on_removed_by: RemovedByHandler | None = None,
        member_since: int = 0,
    ) -> None:
        super().__init__(
            node_id=node_id,
            cluster_id=cluster_id,
            lease_settings=lease_settings,
            on_message=on_message,
            on_peer_state=on_peer_state,
            on_trace=on_trace,
            client_address=client_address,
            accept_unknown_peers=accept_unknown_peers,
            limits=limits,
            rng=rng,
            on_cluster_id=on_cluster_id,
            on_removed_by=on_removed_by,
            member_since=member_since,
        )
        self.hub = hub
        self._address = (listen_host, listen_port)
        self._bound = False
        # Peers that passed the handshake toward us, as TcpTransport's inbound connections.
        self._inbound_peers: set[int] = set()
        # Frames arriving after a latency are handled in the context this transport was made
        # in (its process, for the simulator's loop): a receiver that is paused or dead
        # takes them late or never, whoever sent them.
        self._context = contextvars.copy_context()

    @property
    def listen_address(self) -> tuple[str, int]:
        return self._address

    @property
    def limits(self) -> TransportLimits:
        return self._limits

    @property
    def client_address(self) -> str:
        return self._client_address

    @property
    def lease_settings(self) -> LeaseSettings:
        return self._lease_settings

    async def start(self) -> None:
        if self._started or self._closed:
            raise RuntimeError("a transport is started once")
        self._address = self.hub._bind(self, *self._address)
        self._bound = True
        self._start_links()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bound:
            self.hub._unbind(self._address)
        await self._close_links()

    def _create_link(
        self, node_id: int, host: str, port: int, notice: RemovalNotice | None = None
    ) -> _MemoryLink:
        return _MemoryLink(self, node_id, host, port, notice)

    def _forget_inbound(self, node_id: int) -> None:
        self._inbound_peers.discard(node_id)
        self.hub._changed()  # its link to us notices, as a TCP peer would see the close

    def _wake_links(self) -> None:
        for link in (*self._links.values(), *self._notices.values()):
            link.on_queued()

    def _refusal(self, handshake: Handshake) -> Refusal | None:
        """The accepting side of the handshake, as TcpTransport runs it: what the dialer is
        told (`reply`, `removed_at`), or None when accepted."""
        refusal = self._check_handshake(handshake)
        if refusal is not None:
            # No address in memory: the sender's id stands for it (every sender is in-process).
            sender = f"node {handshake.node_id}"
            self._log_refusal(refusal.kind, sender, f"{sender}: {refusal.log}")
            return refusal
        self._learn_client_address(handshake.node_id, handshake.client_address)
        self._inbound_peers.add(handshake.node_id)
        return None

    def _accept_frame(self, peer_id: int, payload: bytes) -> None:
        if self._closed or peer_id not in self._inbound_peers:
            return  # the frame was on a connection that is gone, as it would be over TCP
        counters: PeerCounters = self._peer_counters(peer_id)
        try:
            self._receive_payload(peer_id, payload, counters)
        except FrameError as error:
            self._counters.frames_malformed += 1
            sender = f"node {peer_id}"
            self._log_limited(
                "malformed frame", sender, f"closed connection from {sender}: {error}"
            )
