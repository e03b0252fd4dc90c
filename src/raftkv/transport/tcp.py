"""TcpTransport: length-prefixed MessagePack frames over TCP (SPEC §4).

A node listens on its peer address and keeps one outbound connection per peer
(`tcp_peer.OutboundPeer`); it sends on its outbound connections and receives on the
connections its peers opened to it ("one connection per peer pair and direction"). Every
connection starts with a handshake (`handshake.py`); a stranger is refused, logged and
disconnected, and a malformed or oversized frame closes only the connection it came on.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from typing import Any

from raftkv.addresses import WILDCARD_HOSTS
from raftkv.async_cleanup import then_clean_up
from raftkv.errors import ConnectionClosed, FrameError
from raftkv.tls import PeerTls, node_ids_named, report_handshake_failures
from raftkv.transport.base import (
    ListenFailed,
    MessageHandler,
    PeerStateHandler,
    RemovalNotice,
    RemovedByHandler,
    TraceHandler,
    logger,
)
from raftkv.transport.frame_receiver import FrameReceiver
from raftkv.transport.framing import FrameParser, encode_frame
from raftkv.transport.handshake import (
    HandshakeReply,
    LeaseSettings,
    certificate_refusal,
    decode_handshake,
    encode_handshake,
)
from raftkv.transport.limits import TransportLimits
from raftkv.transport.shared import TransportBase
from raftkv.transport.streams import close_writer, describe_remote, read_frame, remote_host
from raftkv.transport.tcp_peer import OutboundPeer

# Listening on every interface says nothing about which one to send from.


class TcpTransport(TransportBase):
    """See `base.Transport`. Construct, `await start()`, then `send()`; `await close()`."""

    def __init__(
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
        limits: TransportLimits | None = None,
        rng: random.Random | None = None,
        on_cluster_id: Callable[[str], None] | None = None,
        on_removed_by: RemovedByHandler | None = None,
        member_since: int = 0,
        peer_tls: PeerTls | None = None,
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
        self._listen_host = listen_host
        self._listen_port = listen_port
        # Mutual TLS on every peer connection, both ways (`raftkv.tls.peer_tls`), or None.
        self._peer_tls = peer_tls
        if peer_tls is not None:
            report_handshake_failures(peer_tls.server, self._on_tls_handshake_failed)
        self._server: asyncio.Server | None = None
        # The live authenticated inbound connection of each peer: a newer one replaces it.
        self._inbound_by_peer: dict[int, asyncio.StreamWriter] = {}
        self._connection_tasks: set[asyncio.Task[None]] = set()
        # Connections still in their handshake, oldest first, with their host: the ones
        # closed first when strangers crowd the port.
        self._unauthenticated: dict[asyncio.StreamWriter, str] = {}

    @property
    def listen_address(self) -> tuple[str, int]:
        # uvloop's `Server.sockets` is a list where typeshed says a tuple: compiled, the
        # declared type would be checked, so the attribute is read untyped.
        server: Any = self._server
        if server is not None and server.sockets:
            name = server.sockets[0].getsockname()
            return str(name[0]), int(name[1])
        return self._listen_host, self._listen_port

    async def start(self) -> None:
        if self._started or self._closed:
            raise RuntimeError("a transport is started once")
        try:
            # Over TLS a connection reaches `_on_connection` once its TLS handshake is done,
            # within the handshake deadline; the failures are logged through
            # `report_handshake_failures`, as nothing of them reaches this side otherwise.
            self._server = await asyncio.start_server(
                self._on_connection,
                self._listen_host,
                self._listen_port,
                limit=self._limits.read_chunk_bytes,
                ssl=self._peer_tls.server if self._peer_tls is not None else None,
                ssl_handshake_timeout=self._limits.handshake_timeout_seconds
                if self._peer_tls is not None
                else None,
            )
        except OSError as error:
            address = f"{self._listen_host}:{self._listen_port}"
            raise ListenFailed(f"cannot listen for peers on {address}: {error}") from error
        host, port = self.listen_address
        logger.info("node %d listening for peers on %s:%d", self._node_id, host, port)
        self._start_links()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in self._connection_tasks:
            task.cancel()
        await asyncio.gather(*self._connection_tasks, return_exceptions=True)
        await self._close_links()
        if self._server is not None:
            await self._server.wait_closed()

    def _create_link(
        self, node_id: int, host: str, port: int, notice: RemovalNotice | None = None
    ) -> OutboundPeer:
        return OutboundPeer(
            own_id=self._node_id,
            peer_id=node_id,
            host=host,
            port=port,
            handshake=self._dial_handshake,
            on_cluster_id=self._learn_cluster_id,
            limits=self._limits,
            counters=self._peer_counters(node_id),
            rng=self._random,
            on_state=self._report_peer_state,
            on_removed_by=self._report_removed_by,
            on_client_address=self._learn_client_address,
            source_host=None if self._listen_host in WILDCARD_HOSTS else self._listen_host,
            tls_context=self._peer_tls.client if self._peer_tls is not None else None,
            notice=notice,
        )

    def _forget_inbound(self, node_id: int) -> None:
        inbound = self._inbound_by_peer.pop(node_id, None)
        if inbound is not None:
            inbound.close()

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain function, not a coroutine: asyncio would wrap a coroutine in a task of its
        # own whose done-callback, on Python 3.11, calls `exception()` and so reports a task
        # cancelled by `close()` as an unhandled error. This task is ours to cancel.
        task = asyncio.create_task(
            self._serve_connection(reader, writer),
            name=f"raftkv-transport-inbound-{describe_remote(writer)}",
        )
        self._connection_tasks.add(task)
        task.add_done_callback(self._connection_tasks.discard)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One accepted connection, from handshake to close. Nothing escapes unlogged."""
        # Closed however it ends (through async_cleanup: mypyc miscompiles an awaiting `finally`).
        await then_clean_up(
            self._converse(reader, writer),
            lambda: close_writer(writer, self._limits.close_timeout_seconds),
        )

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote = describe_remote(writer)
        host = remote_host(remote)
        peer_id: int | None = None
        try:
            if len(self._connection_tasks) > self._limits.inbound_connections_max:
                self._log_refusal("too many connections", host, f"{host}: too many connections")
                return
            self._make_room_for_handshake(host)
            self._unauthenticated[writer] = host
            certificate_ids: set[int] | None = None
            if self._peer_tls is not None:
                certificate_ids = node_ids_named(writer.get_extra_info("peercert"))
            accepted = await self._accept(reader, writer, remote, certificate_ids)
            self._unauthenticated.pop(writer, None)
            if accepted is None:
                return
            peer_id, parser = accepted
            await self._receive(peer_id, reader, writer, parser)
            logger.info("node %d closed its connection (from %s)", peer_id, remote)
        except FrameError as error:
            if peer_id is None:
                self._log_refusal("malformed handshake", host, f"{host}: {error} (from {remote})")
            else:
                self._counters.frames_malformed += 1
                self._log_limited(
                    "malformed frame",
                    host,
                    f"closed connection from node {peer_id} (from {remote}): {error}",
                )
        except (ConnectionClosed, OSError) as error:
            if peer_id is not None:
                logger.info("connection from node %d ended: %s", peer_id, error)
            else:
                logger.debug("connection from %s ended before its handshake: %s", remote, error)
        except Exception:
            logger.exception("unexpected error on the connection from %s", remote)
        finally:
            self._unauthenticated.pop(writer, None)
            if peer_id is not None and self._inbound_by_peer.get(peer_id) is writer:
                del self._inbound_by_peer[peer_id]

    def _make_room_for_handshake(self, host: str) -> None:
        """Close the oldest connection still in its handshake, from `host` when that host
        has its share, else of all when they are at their limit, so strangers holding
        sockets open cannot keep a member out (the handshake deadline alone let them)."""
        limits = self._limits
        from_host = [writer for writer, other in self._unauthenticated.items() if other == host]
        if len(from_host) >= limits.unauthenticated_per_host_max:
            oldest = from_host[0]
        elif len(self._unauthenticated) >= limits.unauthenticated_connections_max:
            oldest = next(iter(self._unauthenticated))
        else:
            return
        evicted_host = self._unauthenticated.pop(oldest)
        # Its task reads end of stream, and closes and forgets it.
        oldest.close()
        text = f"{evicted_host}: still no handshake, closed to make room for a newer connection"
        self._log_refusal("crowded out", evicted_host, text)

    async def _accept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: str,
        certificate_ids: set[int] | None = None,
    ) -> tuple[int, FrameParser] | None:
        """Run the accepting side of the handshake: the peer's id and the parser holding any
        bytes that arrived right behind the handshake, or None when refused. Over TLS,
        `certificate_ids` are the node ids the peer's certificate names: the id its
        handshake claims must be one of them."""
        limits = self._limits
        parser = FrameParser(limits.handshake_frame_bytes_max)
        try:
            async with asyncio.timeout(limits.handshake_timeout_seconds):
                payload = await read_frame(reader, parser, limits.read_chunk_bytes)
        except TimeoutError:
            host = remote_host(remote)
            silence = f"no handshake within {limits.handshake_timeout_seconds:.1f} s"
            self._log_refusal("no handshake", host, f"{host}: {silence} (from {remote})")
            return None
        try:
            handshake = decode_handshake(payload)
        except FrameError as error:
            # Tell a raftkv node of another version why; a stranger ignores the answer.
            self._write_reply(writer, HandshakeReply(accepted=False, reason=str(error)))
            raise
        refusal = None
        if certificate_ids is not None:
            refusal = certificate_refusal(handshake.node_id, certificate_ids)
        if refusal is None:
            refusal = self._check_handshake(handshake)
        if refusal is not None:
            self._log_refusal(
                refusal.kind,
                remote_host(remote),
                f"node {handshake.node_id}: {refusal.log} (from {remote})",
            )
            self._write_reply(
                writer,
                HandshakeReply(accepted=False, reason=refusal.reply, removed_at=refusal.removed_at),
            )
            return None
        peer_id = handshake.node_id
        reply = HandshakeReply(
            accepted=True,
            node_id=self._node_id,
            client_address=self._client_address,
            # A founding member dialing before it knows the cluster id learns it here.
            cluster_id="" if handshake.cluster_id else self._cluster_id,
        )
        self._write_reply(writer, reply)
        self._learn_client_address(peer_id, handshake.client_address)
        # A newer connection from the same node means the old one is dead (the peer
        # restarted or redialed); closing it frees the socket now rather than at a timeout.
        previous = self._inbound_by_peer.get(peer_id)
        if previous is not None:
            previous.close()
        self._inbound_by_peer[peer_id] = writer
        logger.info("accepted connection from node %d (from %s)", peer_id, remote)
        return peer_id, parser

    def _on_tls_handshake_failed(self, error: ssl.SSLError) -> None:
        # The TLS layer knows no remote address: one rate limit for all hosts.
        reason = error.reason or str(error)
        self._log_refusal(
            "TLS handshake failed",
            "",
            f"a peer: TLS handshake failed: {reason} (a node without --peer-cert, or a "
            "certificate not signed by --peer-ca?)",
        )

    def _write_reply(self, writer: asyncio.StreamWriter, reply: HandshakeReply) -> None:
        writer.write(encode_frame(encode_handshake(reply)))

    async def _receive(
        self,
        peer_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: FrameParser,
    ) -> None:
        parser.frame_bytes_max = self._limits.frame_bytes_max
        chunk_bytes = self._limits.read_chunk_bytes
        counters = self._peer_counters(peer_id)
        receive_payload = self._receive_payload
        receiver = FrameReceiver.take_over(
            reader, writer, parser, lambda payload: receive_payload(peer_id, payload, counters)
        )
        if receiver is not None:
            await receiver.ended
            return
        # (a Python whose StreamReader this cannot take over: read through the stream)
        while True:
            while (payload := parser.next_frame()) is not None:
                receive_payload(peer_id, payload, counters)
            data = await reader.read(chunk_bytes)
            if not data:
                return
            parser.feed(data)
