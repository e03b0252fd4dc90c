"""User-space link cutting: a TCP proxy for each ordered pair of nodes, so that a test (or a
chaos tool) can partition a cluster on loopback without root and without nftables.

Routing. Node A is told (in its `--peers`) that node B lives at the proxy of the link A→B,
which forwards to B's real peer port. raftkv keeps one connection per ordered pair: A dials B
to send to B, and B's only bytes on that connection are its handshake reply; B dials A for the
other direction. So the proxies of A→B and B→A carry every peer byte between A and B, as long
as the nodes learn peer addresses only from what they are told at start (`--peers`, which a
node keeps in its data dir's peers.json; the handshake carries no peer address). A membership
change is different: it writes the proposing leader's view of the peer addresses (its own
proxy addresses) into the log, and every node then dials those, so clusters that add or remove
nodes are not routed link by link.

Cutting. `cut(group, others)` turns both directions between every node of `group` and every
node of `others` into a black hole, the user-space twin of an nftables drop rule: connections
already open stay open but nothing more is forwarded on them, either way (what arrives is read
and thrown away, so nothing piles up in the proxy), and a new connection is accepted but never
forwarded. Nobody is told. A closed or refused connection would tell an isolated leader at once
that its peers are gone; a black hole leaves it to find out the way it would in a real
partition, by its own timeouts (handshake, check-quorum, lease), which is what the partition
tests are about.

Healing. `heal()` restores every link. Connections that were black-holed are reset: they lost
bytes in the middle of a stream (nftables would have let TCP retransmit them; a proxy that
threw them away cannot resume), so the nodes redial, through the healed proxies.

All proxies run on one asyncio loop in a daemon thread: `LinkProxies()` starts it and
`close()` stops it, aborting every connection. Each method returns once the loop has carried
it out, so when `cut()` returns no further byte crosses a cut link. Call them from any thread
but the proxies' own (from asyncio code: `await asyncio.to_thread(proxies.cut, ...)`).
Everything is bounded: reads by `CHUNK_BYTES` with the writer drained before the next read,
connections per link by `CONNECTIONS_PER_LINK_MAX`, dials by `CONNECT_TIMEOUT_SECONDS`.
Standard library only, so it can move out of the tests as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Collection, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"
CHUNK_BYTES = 256 << 10
# raftkv keeps one connection per link, plus a redial or two while the old one times out.
CONNECTIONS_PER_LINK_MAX = 64
CONNECT_TIMEOUT_SECONDS = 5.0
# How long a caller waits for the loop to carry out a request before giving up.
CONTROL_TIMEOUT_SECONDS = 10.0
# `route(avoid_ports=...)`: listening ports drawn again when the kernel picks an avoided one.
LISTEN_ATTEMPTS_MAX = 16

Pair = tuple[int, int]
Address = tuple[str, int]


@dataclass(frozen=True)
class LinkStatus:
    sender: int
    receiver: int
    address: Address  # where the sender dials
    target: Address  # where the receiver listens
    cut: bool
    connections_forwarding: int
    connections_black_holed: int


class _Connection:
    """One connection through a link: the dialer's side and, once dialed, the target's."""

    def __init__(self, client: asyncio.StreamWriter, black_holed: bool) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        # Set for good: a connection that lost bytes in a black hole never forwards again.
        self.black_holed = black_holed

    def writers(self) -> list[asyncio.StreamWriter]:
        return [writer for writer in (self.client, self.upstream) if writer is not None]

    def abort(self) -> None:
        """Reset both sides (the nodes see a reset, as after a peer's crash)."""
        for writer in self.writers():
            writer.transport.abort()

    async def close(self) -> None:
        """Abort, and wait until both sockets are released."""
        self.abort()
        for writer in self.writers():
            with contextlib.suppress(Exception):  # it is closed, however it says so
                await writer.wait_closed()


class _Link:
    """The proxy of one ordered pair: it listens for `sender` and forwards to `receiver`."""

    def __init__(self, pair: Pair, target: Address) -> None:
        self.pair = pair
        self.target = target
        self.server: asyncio.Server | None = None
        self.address: Address = ("", 0)
        self.connections: set[_Connection] = set()


class LinkProxies:
    """Proxies between the peer ports of a cluster's nodes, each link cuttable on its own."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self._links: dict[Pair, _Link] = {}
        # Cut ordered pairs; a link routed later starts cut if its pair is here.
        self._cut: set[Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="raftkv-link-proxies", daemon=True
        )
        self._thread.start()

    # --- the link-cutting interface -----------------------------------------------------
    def route(
        self, sender: int, receiver: int, target: Address, avoid_ports: Collection[int] = ()
    ) -> Address:
        """The address `sender` should be told `receiver` lives at: the proxy of that link,
        forwarding to `target` (the receiver's real peer address). Created at the first
        call; a later call with another target re-aims new connections. `avoid_ports`: ports
        the proxy must not take, such as ports a cluster has chosen but not yet bound."""
        return self._call(self._route((sender, receiver), target, frozenset(avoid_ports)))

    def cut(self, group: Iterable[int], others: Iterable[int]) -> None:
        """Black-hole all peer traffic between `group` and `others`, both ways, open
        connections included. Cuts add up until `heal()`."""
        group, others = list(group), list(others)
        pairs = {(a, b) for a in group for b in others if a != b}
        pairs |= {(b, a) for a, b in pairs}
        self._call(self._cut_pairs(pairs))

    def heal(self) -> None:
        """Restore every link; connections that were black-holed are reset."""
        self._call(self._heal())

    def status(self) -> list[LinkStatus]:
        """Every routed link, as it is now."""
        return self._call(self._status())

    def close(self) -> None:
        """Stop every proxy and the thread; safe to call twice, and after a failure."""
        if self._closed:
            return
        try:
            self._call(self._shutdown())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_SECONDS)
            if not self._thread.is_alive():
                self._loop.close()

    # --- on the loop ----------------------------------------------------------------------
    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("the link proxies are closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(CONTROL_TIMEOUT_SECONDS)

    async def _route(self, pair: Pair, target: Address, avoid_ports: frozenset[int]) -> Address:
        link = self._links.get(pair)
        if link is not None:
            link.target = target
            return link.address
        link = _Link(pair, target)
        rejected: list[asyncio.Server] = []
        try:
            for _ in range(LISTEN_ATTEMPTS_MAX):
                # Port 0: the kernel picks a free port, with no window for anyone to take it.
                server = await asyncio.start_server(
                    lambda reader, writer: self._on_connection(link, reader, writer),
                    self.host,
                    0,
                    limit=CHUNK_BYTES,
                )
                port = int(server.sockets[0].getsockname()[1])
                if port not in avoid_ports:
                    link.server, link.address = server, (self.host, port)
                    break
                rejected.append(server)  # held until the end, so it is not drawn again
            else:
                raise RuntimeError(f"no free port for link {pair} outside the avoided ones")
        finally:
            for server in rejected:
                server.close()
        self._links[pair] = link
        return link.address

    async def _status(self) -> list[LinkStatus]:
        def count(link: _Link, black_holed: bool) -> int:
            return sum(c.black_holed == black_holed for c in link.connections)

        return [
            LinkStatus(
                *pair,
                address=link.address,
                target=link.target,
                cut=pair in self._cut,
                connections_forwarding=count(link, black_holed=False),
                connections_black_holed=count(link, black_holed=True),
            )
            for pair, link in sorted(self._links.items())
        ]

    async def _cut_pairs(self, pairs: set[Pair]) -> None:
        self._cut |= pairs
        for pair in pairs:
            link = self._links.get(pair)
            if link is not None:
                for connection in link.connections:
                    connection.black_holed = True

    async def _heal(self) -> None:
        self._cut.clear()
        for link in self._links.values():
            for connection in list(link.connections):
                if connection.black_holed:
                    connection.abort()  # its task sees the end and forgets it

    async def _shutdown(self) -> None:
        for link in self._links.values():
            if link.server is not None:
                link.server.close()
            for connection in link.connections:
                connection.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self._links.values():
            if link.server is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONTROL_TIMEOUT_SECONDS / 2):
                        await link.server.wait_closed()

    def _on_connection(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # A plain function, not a coroutine, so that the task is ours to track and cancel.
        task = self._loop.create_task(self._serve(link, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, link: _Link, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        connection = _Connection(client, black_holed=link.pair in self._cut)
        if len(link.connections) >= CONNECTIONS_PER_LINK_MAX:
            await connection.close()
            return
        link.connections.add(connection)
        try:
            upstream_reader: asyncio.StreamReader | None = None
            if not connection.black_holed:
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                        upstream_reader, connection.upstream = await asyncio.open_connection(
                            *link.target, limit=CHUNK_BYTES
                        )
                except OSError:  # TimeoutError included
                    # The receiver is down: the dialer sees its connection end, and redials.
                    return
            pumps = [self._pump(connection, client_reader, upstream_side=True)]
            if upstream_reader is not None:
                pumps.append(self._pump(connection, upstream_reader, upstream_side=False))
            await _first_to_finish(pumps)
        finally:
            link.connections.discard(connection)
            await connection.close()

    async def _pump(
        self, connection: _Connection, reader: asyncio.StreamReader, *, upstream_side: bool
    ) -> None:
        """Copy one direction until either side ends; a black-holed connection's bytes are
        read and thrown away (the writer is looked up per chunk: a cut may come at any
        await). Returns when the connection ends, however it ends."""
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK_BYTES):
                writer = connection.upstream if upstream_side else connection.client
                if connection.black_holed or writer is None:
                    continue
                writer.write(data)
                await writer.drain()


async def _first_to_finish(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines until the first one returns, then cancel the others."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
