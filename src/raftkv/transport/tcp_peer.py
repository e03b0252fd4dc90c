"""The outbound side of a TCP peer link: one long-lived connection, its queue and writer.

One task per peer dials, handshakes, then runs two child tasks until the connection dies:
the writer, which drains the queue in batches (one `write()` of many frames, then `drain()`),
and a watcher, which notices at once when the peer closes (the accepting side never sends
after its handshake reply, so any read returning is an end). Then it backs off and redials.
Frames queued while the link is down wait in the bounded queue.

Over plain TCP the node's WAL sync thread may write a frame itself (`send_from_thread`): a
follower's acknowledgement leaves the moment its entries are durable, not after its event
loop has been woken to send it (docs/ARCHITECTURE.md, session 50). Every write to the
connection, the loop's too, then holds the link's `_write_lock`, and the thread writes only
while nothing can be ahead of its frame (nothing queued, nothing unsent in the transport's
buffer), so the order of the frames is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import threading
from collections.abc import Callable

from raftkv.async_cleanup import first_to_end, then_clean_up
from raftkv.errors import ConnectionClosed, FrameError
from raftkv.tls import node_dns_name, node_ids_named
from raftkv.transport.backoff import Backoff
from raftkv.transport.base import PeerCounters, RemovalNotice, logger
from raftkv.transport.framing import FrameParser, encode_frame, join_frames
from raftkv.transport.handshake import (
    Handshake,
    decode_reply,
    encode_handshake,
    is_bootstrap_refusal,
)
from raftkv.transport.limits import REMOVAL_NOTICE_BACKOFF_MAX_SECONDS, TransportLimits
from raftkv.transport.send_queue import SendQueue
from raftkv.transport.streams import (
    close_writer,
    read_frame,
    set_unacknowledged_send_timeout,
)


class HandshakeRefused(ConnectionClosed):
    """The peer answered our handshake with a refusal."""


class TlsHandshakeFailed(ConnectionClosed):
    """Over TLS: the peer hung up during the TLS handshake."""


class WrongCertificate(ConnectionClosed):
    """Over TLS: the peer's certificate does not name the node dialed."""


# Failures that need an operator (logged as warnings): the peer is up but will not talk.
_REFUSALS = (HandshakeRefused, WrongCertificate, TlsHandshakeFailed, ssl.SSLError)


class OutboundPeer:
    def __init__(
        self,
        *,
        own_id: int,
        peer_id: int,
        host: str,
        port: int,
        handshake: Callable[[int, int], Handshake],
        limits: TransportLimits,
        counters: PeerCounters,
        rng: random.Random,
        on_state: Callable[[int, bool], None],
        on_client_address: Callable[[int, str], None],
        on_removed_by: Callable[[int], None] = lambda peer_id: None,
        on_cluster_id: Callable[[str, int], None] = lambda cluster_id, peer_id: None,
        source_host: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        notice: RemovalNotice | None = None,
    ) -> None:
        self.own_id = own_id
        # Mutual TLS (`raftkv.tls.peer_tls(...).client`), or None for plain TCP.
        self._tls_context = tls_context
        # Outbound connections leave from the node's own peer address when it listens on a
        # specific one, so that firewall rules (and peers' logs) can tell nodes apart.
        self.source_host = source_host
        self.peer_id = peer_id
        self.host = host
        self.port = port
        # Built at each dial (`TransportBase._dial_handshake(peer, removed_at)`): a
        # founding member learns the cluster id after starting (`on_cluster_id`).
        self._handshake = handshake
        self._on_cluster_id = on_cluster_id
        self._limits = limits
        self.counters = counters
        self.queue = SendQueue(limits.send_queue_frames_max, limits.send_queue_bytes_max)
        # A notice link (`Transport.tell_removed`) handshakes with its notice, sends
        # nothing, and ends once answered; a removed node is most often gone for good, so
        # it is redialed less often than a member.
        self._notice = notice
        self._told = False
        backoff_max = limits.reconnect_backoff_max_seconds
        if notice is not None:
            backoff_max = max(backoff_max, REMOVAL_NOTICE_BACKOFF_MAX_SECONDS)
        self._backoff = Backoff(limits.reconnect_backoff_initial_seconds, backoff_max, rng)
        self._on_state = on_state
        self._on_client_address = on_client_address
        self._on_removed_by = on_removed_by
        # The connection's writer while its writer task waits with nothing queued
        # (`send_now` may write to it then); None otherwise.
        self._idle_writer: asyncio.StreamWriter | None = None
        # Over plain TCP, another thread may write frames (`send_from_thread`). Held around
        # every write to the connection, by the loop and by that thread.
        self._write_lock = threading.Lock()
        # The connection's socket, duplicated, while it serves (-1 otherwise): the thread
        # writes to a descriptor of its own, which cannot be closed and reused for another
        # socket under it; the loop closes it (holding the lock) when the connection ends.
        self._thread_fd = -1
        # The end of a frame the thread's write left unsent (the socket's buffer full):
        # it goes first in the loop's next write to the connection.
        self._unsent = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        # Bumped whenever the running task is replaced: a task that was cancelled may still
        # be unwinding, and must not report its stale connection as down after the new one.
        self._generation = 0
        # The last failure logged, so a peer down for an hour logs once, not once a second.
        self._last_failure = ""

    def start(self) -> None:
        self._generation += 1
        self._task = asyncio.create_task(
            self._run(self._generation), name=f"raftkv-transport-peer-{self.peer_id}"
        )

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the link without waiting; returns the task still unwinding, if any."""
        self._generation += 1
        self._set_connected(False)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def move(self, host: str, port: int) -> asyncio.Task[None] | None:
        """Dial a new address from now on; the queue is kept."""
        self.host, self.port = host, port
        if self._task is None:
            return None
        retired = self.stop()
        self._last_failure = ""
        self._backoff.reset()
        self.start()
        return retired

    writes_at_once = True

    def on_queued(self) -> None:
        pass  # the queue's own event wakes the writer

    def send_now(self, payload: bytes) -> bool:
        # Only while the writer task waits for frames with none queued, and the socket
        # holds nothing unsent: then nothing can be ahead of this frame, and it goes in
        # one write from the caller's turn instead of after a wake-up of the writer.
        writer = self._idle_writer
        if writer is None or self.queue:
            return False
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        frame = encode_frame(payload)
        with self._write_lock:
            self._write(writer, frame)
            self.counters.frames_sent += 1
            self.counters.bytes_sent += len(frame)
        return True

    def send_from_thread(self, payload: bytes) -> bool:
        """From a thread other than the loop's: write `payload` now if the link is idle as
        `send_now` asks, over plain TCP; False (nothing done) otherwise, and the caller
        sends it from the loop."""
        frame = encode_frame(payload)
        with self._write_lock:
            writer = self._idle_writer
            fd = self._thread_fd
            if writer is None or fd < 0 or self.queue or self._unsent:
                return False
            transport = writer.transport
            # Read with the GIL held and the lock keeping the loop from writing: a buffer
            # being emptied by the event loop's own I/O only reads as not yet empty.
            if transport.is_closing() or transport.get_write_buffer_size():
                return False
            try:
                written = os.write(fd, frame)  # non-blocking: the socket's own mode
            except OSError:  # full (EAGAIN) or broken: the loop sends it, or learns why
                return False
            if written < len(frame):
                self._unsent = frame[written:]
                loop = self._loop
                if loop is not None:
                    loop.call_soon_threadsafe(self._write_unsent)
            self.counters.frames_sent += 1
            self.counters.bytes_sent += len(frame)
            self.counters.frames_sent_from_thread += 1
        return True

    def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write `data` after whatever the thread left unsent; with `_write_lock` held."""
        if self._unsent:
            data, self._unsent = self._unsent + data, b""
        writer.write(data)

    def _write_unsent(self) -> None:
        """On the loop: the end of the thread's frame, unless a write took it already or
        the writer is busy (its next write takes it)."""
        with self._write_lock:
            writer = self._idle_writer
            if self._unsent and writer is not None and not writer.is_closing():
                self._write(writer, b"")
            elif self._unsent:
                self.queue.nonempty.set()  # the writer's next turn writes it

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        self._on_state(self.peer_id, connected)

    async def _run(self, generation: int) -> None:
        # The generation check is a second line of defence: a task replaced by `stop()` or
        # `move()` ends at its next turn even if a library swallowed its cancellation.
        while generation == self._generation and not self._told:
            try:
                await self._connect_and_serve(generation)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._log_failure(error, was_connected=self.connected)
            finally:
                if generation == self._generation:
                    self._set_connected(False)
            if self._told:
                return
            await asyncio.sleep(self._backoff.next_delay_seconds())

    def _log_failure(self, error: Exception, *, was_connected: bool) -> None:
        where = f"node {self.peer_id} at {self.host}:{self.port}"
        if was_connected and isinstance(error, (ConnectionClosed, OSError)):
            logger.info("lost connection to %s: %s", where, error)
            self._last_failure = ""
            return
        self.counters.connection_failures += 1
        if isinstance(error, HandshakeRefused):
            description = f"{where} refused our connection: {error}"
        elif isinstance(error, WrongCertificate):
            description = f"refused {where}: {error}"
        elif isinstance(error, ssl.SSLError | TlsHandshakeFailed):
            reason = getattr(error, "reason", None) or str(error)
            description = f"TLS handshake with {where} failed: {reason}"
        elif isinstance(error, TimeoutError):
            description = f"no answer from {where} in time"
        elif isinstance(error, (ConnectionClosed, OSError)):
            description = f"connection to {where} failed: {error}"
        else:
            logger.exception("unexpected error on the connection to %s", where)
            return
        if description == self._last_failure:
            logger.debug("%s (retrying)", description)
            return
        self._last_failure = description
        if isinstance(error, HandshakeRefused) and is_bootstrap_refusal(str(error)):
            logger.info("%s; retrying with backoff", description)
        elif isinstance(
            error, HandshakeRefused | WrongCertificate | TlsHandshakeFailed | ssl.SSLError
        ):
            logger.warning("%s; retrying with backoff", description)
        else:
            logger.info("%s; retrying with backoff", description)

    async def _connect_and_serve(self, generation: int) -> None:
        limits = self._limits
        # Over TLS the connect deadline covers the TLS handshake too.
        try:
            async with asyncio.timeout(limits.connect_timeout_seconds):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    limit=limits.read_chunk_bytes,
                    local_addr=(self.source_host, 0) if self.source_host else None,
                    ssl=self._tls_context,
                    # Sent as SNI only; the certificate is checked against the node id below.
                    server_hostname=node_dns_name(self.peer_id) if self._tls_context else None,
                )
        except ConnectionResetError as error:
            if self._tls_context is None:
                raise
            # Reset during the TLS handshake: most often a node without TLS, which reads
            # the ClientHello as a malformed frame and hangs up.
            raise TlsHandshakeFailed(
                "reset during the TLS handshake: is it running without --peer-cert?"
            ) from error
        # Closed however it ends (through async_cleanup: mypyc miscompiles an awaiting `finally`).
        await then_clean_up(
            self._handshake_and_serve(reader, writer, generation),
            lambda: close_writer(writer, limits.close_timeout_seconds),
        )

    async def _handshake_and_serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        limits = self._limits
        if self._tls_context is not None:
            self._check_certificate(writer)
        set_unacknowledged_send_timeout(writer, limits.unacknowledged_send_timeout_seconds)
        removed_at = self._notice.removed_at if self._notice is not None else 0
        handshake = self._handshake(self.peer_id, removed_at)
        writer.write(encode_frame(encode_handshake(handshake)))
        parser = FrameParser(limits.handshake_frame_bytes_max)
        async with asyncio.timeout(limits.handshake_timeout_seconds):
            payload = await read_frame(reader, parser, limits.read_chunk_bytes)
        reply = decode_reply(payload)
        if self._notice is not None:
            # Any answer means the node heard the notice (it judges it, not us).
            self._told = True
            self._notice.on_told()
            return
        if not reply.accepted:
            if reply.removed_at:
                self._on_removed_by(self.peer_id)
            raise HandshakeRefused(reply.reason or "no reason given")
        if reply.node_id != self.peer_id:
            raise HandshakeRefused(f"it answered as node {reply.node_id}")
        if reply.cluster_id:
            self._on_cluster_id(reply.cluster_id, self.peer_id)
        if reply.client_address:
            self._on_client_address(self.peer_id, reply.client_address)
        self._backoff.reset()
        self._last_failure = ""
        self.counters.connections_opened += 1
        logger.info("connected to node %d at %s:%d", self.peer_id, self.host, self.port)
        if generation != self._generation:
            return  # replaced while dialing; the new task owns the link now
        self._set_connected(True)
        await self._serve(reader, writer, parser)

    def _check_certificate(self, writer: asyncio.StreamWriter) -> None:
        """The peer's verified certificate must name the node we meant to dial: an address
        now used by another member (or a stolen certificate of a CA-signed non-node, such
        as a client's) is refused, not talked to."""
        named = node_ids_named(writer.get_extra_info("peercert"))
        if self.peer_id not in named:
            names = ", ".join(f"node {node_id}" for node_id in sorted(named)) or "no node"
            raise WrongCertificate(f"its certificate names {names}, not node {self.peer_id}")

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: FrameParser
    ) -> None:
        if self._tls_context is None:  # (the SSL object is the loop's alone)
            self._loop = asyncio.get_running_loop()
            # Out of descriptors (EMFILE), this connection is written by the loop alone.
            with contextlib.suppress(OSError):
                self._thread_fd = os.dup(writer.get_extra_info("socket").fileno())
        watcher = asyncio.create_task(self._watch_for_close(reader, parser))
        sender = asyncio.create_task(self._write_batches(writer))
        try:
            done = await first_to_end(watcher, sender)
        finally:
            self._end_thread_writes()
        for task in done:
            task.result()  # re-raises why the connection ended, for the caller to log

    def _end_thread_writes(self) -> None:
        with self._write_lock:
            if self._thread_fd >= 0:
                os.close(self._thread_fd)
            self._thread_fd = -1
            self._unsent = b""  # the connection is gone, and the frame with it

    async def _watch_for_close(self, reader: asyncio.StreamReader, parser: FrameParser) -> None:
        data = await reader.read(self._limits.read_chunk_bytes)
        if data or parser.buffered_bytes:
            raise FrameError("node sent data after its handshake reply")
        raise ConnectionClosed("closed by the peer")

    async def _write_batches(self, writer: asyncio.StreamWriter) -> None:
        queue = self.queue
        counters = self.counters
        batch_bytes_max = self._limits.write_batch_bytes_max
        while True:
            if not queue:
                self._idle_writer = writer
                try:
                    await queue.nonempty.wait()
                finally:
                    self._idle_writer = None
            if writer.is_closing():
                raise ConnectionClosed("connection closing")
            # Everything queued while the last drain waited goes out in one write.
            batch = queue.take_batch(batch_bytes_max)
            data = join_frames(batch)
            with self._write_lock:
                self._write(writer, data)
                counters.frames_sent += len(batch)
                counters.bytes_sent += len(data)
            await writer.drain()
