"""`RaftClient`: the blocking client, on `http.client` with one kept-alive connection per node."""

from __future__ import annotations

import functools
import http.client
import os
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

from raftkv import errors
from raftkv.addresses import format_address
from raftkv.client import endpoints, protocol
from raftkv.client import leases as lease_protocol
from raftkv.client.errors import BadResponse, SessionExpired, Unreachable
from raftkv.client.limits import (
    DEFAULT_TIMEOUT_SECONDS,
    FAN_OUT_NODES_MAX,
    SESSION_RESENDS_MAX,
)
from raftkv.client.protocol import NodeHealth, Request
from raftkv.client.results import (
    AdminResult,
    Membership,
    NodeStatus,
    RangeResult,
    ReadResult,
    StatusReport,
    TxnResult,
    WriteResult,
    decode_result,
)
from raftkv.client.routing import ClusterView, Router, connect_timeout_for
from raftkv.client.sessions import CommittedIndex, PendingWrite, Session, new_client_id
from raftkv.client.watching import (
    WATCH_LINE_BYTES_MAX,
    WATCH_SILENCE_SECONDS_MAX,
    WatchCursor,
    WatchEvent,
    WatchLost,
    WatchRoute,
    decode_line,
    lost_from_error_line,
    watch_request,
)
from raftkv.storage.backup_file import Backup

_T = TypeVar("_T")

# A kept-alive connection the node closed while idle fails like this on its first reuse.
_STALE_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection is readable, which means the node closed it (or
    sent what nobody asked for): either way it is not reused. Checked before sending, so a
    write is rarely sent on a connection the node already closed, where a failure would
    leave its fate open."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Connections:
    """One HTTP/1.1 connection per node, opened on first use and dropped after any failure."""

    def __init__(
        self,
        addresses: dict[int, tuple[str, int]],
        token: str | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        # The cluster view's own dict: a leader learned from a hint is reachable at once.
        self._addresses = addresses
        self._token = token
        # HTTPS to every node, or None for HTTP (`endpoints.resolve`).
        self._ssl_context = ssl_context
        self._open: dict[int, http.client.HTTPConnection] = {}
        # Nodes whose connection has carried a whole exchange, so a failure may be staleness.
        self._used: set[int] = set()

    def exchange(
        self,
        node_id: int,
        request: Request,
        timeout_seconds: float,
        write: PendingWrite | None = None,
    ) -> tuple[int, bytes]:
        """Send `request` to the node; its HTTP status and body, or Unreachable."""
        for first_try in (True, False):
            sent = reused = False
            try:
                connection = self._connection(node_id, timeout_seconds)
                reused = node_id in self._used
                sent = True
                return self._exchange_once(node_id, connection, request, timeout_seconds)
            except (http.client.HTTPException, OSError) as error:
                self.drop(node_id)
                # An idle connection the node closed says nothing about the node: one fresh
                # connection is tried at once. Safe for writes too, as they carry their seq;
                # but the node might have read it before closing, so a write no longer
                # counts the attempt as refused.
                if first_try and sent and reused and isinstance(error, _STALE_CONNECTION_ERRORS):
                    if write is not None:
                        write.attempt_lost()
                    continue
                address = format_address(self._addresses[node_id])
                message = f"node {node_id} at {address}: {error or type(error).__name__}"
                payload = {"node": node_id, "message": message}
                raise Unreachable(message, payload, request_sent=sent) from None
        raise AssertionError("unreachable: the loop returns or raises")

    def _connection(self, node_id: int, timeout_seconds: float) -> http.client.HTTPConnection:
        """The node's connection, connected (a fresh one if the node closed the idle one)."""
        connection = self._open.get(node_id)
        if (
            connection is not None
            and connection.sock is not None
            and _closed_by_peer(connection.sock)
        ):
            self.drop(node_id)
            connection = None
        if connection is None:
            host, port = self._addresses[node_id]
            if self._ssl_context is not None:
                connection = http.client.HTTPSConnection(host, port, context=self._ssl_context)
            else:
                connection = http.client.HTTPConnection(host, port)
            self._open[node_id] = connection
        if connection.sock is None:
            connection.timeout = connect_timeout_for(timeout_seconds)
            connection.connect()
        return connection

    def _exchange_once(
        self,
        node_id: int,
        connection: http.client.HTTPConnection,
        request: Request,
        timeout_seconds: float,
    ) -> tuple[int, bytes]:
        assert connection.sock is not None
        connection.sock.settimeout(timeout_seconds)
        headers = protocol.headers_for(request, self._token)
        connection.request(request.method, request.path, body=request.body, headers=headers)
        response = connection.getresponse()
        limit = request.response_bytes_max
        body = response.read(limit + 1)
        if len(body) > limit or not response.isclosed():
            self.drop(node_id)
            message = f"node {node_id} sent an answer over {limit} bytes"
            raise BadResponse(message, {"node": node_id, "message": message})
        self._used.add(node_id)
        return response.status, body

    def drop(self, node_id: int) -> None:
        self._used.discard(node_id)
        connection = self._open.pop(node_id, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for node_id in list(self._open):
            self.drop(node_id)


class RaftClient:
    """A blocking client for a raftkv cluster (SPEC §3).

    `nodes` maps node ids to client addresses (`parse_address_list(text,
    client_ports=True)`), or to `host:port` or `http(s)://host:port` strings. HTTPS (one
    scheme for all nodes) with `https://` URLs or any of `ssl_context`, `ca_file` (trust it
    alone, else the system's CAs), `cert_file`/`key_file` (a client certificate, for nodes
    started with `--client-ca`). `timeout` bounds each operation, retries included. Without `target`
    the client finds the leader itself; with it, it asks that node only and raises NotLeader
    when the node does not lead. `read_from="any"`: each read first asks a member drawn at
    random (followers serve reads with the leader's read index), spreading the reads over
    the cluster; "leader" (the default) sends them where the writes go. Safe to share
    between threads: operations run one at a time
    (the at-most-once session allows one outstanding write). `token`: the bearer token sent
    with every request (a node with `--auth-tokens` asks for one); a refused one raises
    `Unauthenticated` or `Forbidden`, never retried.
    """

    def __init__(
        self,
        nodes: Mapping[int, endpoints.NodeAddress],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        target: int | None = None,
        read_from: str = "leader",
        client_id: str | None = None,
        rng: random.Random | None = None,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        addresses, self.ssl_context = endpoints.resolve(
            nodes,
            ssl_context=ssl_context,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
        self._view = ClusterView(addresses)
        token = self._token = protocol.checked_token(token)
        self._view.check_options(timeout, target, read_from)
        self.timeout = timeout
        self.target = target
        self.read_from = read_from
        self._session = Session(client_id or new_client_id())
        self._committed = CommittedIndex()
        self._random = rng if rng is not None else random.Random()
        self._connections = _Connections(self._view.addresses, token, self.ssl_context)
        # A client like this one (its own connections and session), for a lease keeper's
        # thread.
        self._clone = functools.partial(
            RaftClient,
            nodes,
            timeout=timeout,
            target=target,
            read_from=read_from,
            token=token,
            ssl_context=self.ssl_context,
        )
        self._lock = threading.RLock()

    @property
    def client_id(self) -> str:
        """The current session's id (a new one after the cluster forgot the session)."""
        return self._session.client_id

    @property
    def committed_index(self) -> int:
        """The highest committed index seen in an answer (the `after_index` of new writes)."""
        return self._committed.value

    @property
    def leader(self) -> int | None:
        """The last leader this client saw, if any."""
        return self._view.known_leader

    @property
    def addresses(self) -> dict[int, tuple[str, int]]:
        return dict(self._view.addresses)

    def close(self) -> None:
        with self._lock:
            self._connections.close()

    def __enter__(self) -> RaftClient:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- key-value -----------------------------------------------------------------------
    def put(self, key: str, value: str, lease: int | None = None) -> WriteResult:
        """Set `key`; with `lease`, attached to that lease (deleted when it expires or is
        revoked; a later put without a lease detaches it)."""
        return self._write(lambda write: protocol.put_request(key, value, write, lease=lease))

    def cas(self, key: str, expected: str | None, new: str) -> WriteResult:
        """Set `key` to `new` if its value is `expected` (None: if the key is absent)."""
        if expected is None:
            return self._write(lambda write: protocol.put_request(key, new, write, if_absent=True))
        return self._write(lambda write: protocol.put_request(key, new, write, if_value=expected))

    def put_if_absent(self, key: str, value: str) -> WriteResult:
        return self.cas(key, None, value)

    def delete(self, key: str) -> WriteResult:
        return self._write(lambda write: protocol.delete_request(key, write))

    def get(self, key: str, consistency: str = "linearizable") -> ReadResult:
        return decode_result(self._read(protocol.get_request(key, consistency)), ReadResult)

    def range(
        self,
        prefix: str | None = None,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str = "linearizable",
        after: str | None = None,
    ) -> RangeResult:
        """One page of the keys named by `prefix`, or `start` (inclusive) and/or `end`
        (exclusive), or every key; from the key after `after` (a page's `next`) if given.
        `limit`: keys per page (the server's default 1000, at most 10,000)."""
        keys = protocol.KeyRangeQuery(prefix, start, end)
        request = protocol.range_request(
            keys, consistency, limit=limit, keys_only=keys_only, after=after
        )
        return decode_result(self._read(request), RangeResult)

    def range_pages(
        self,
        prefix: str | None = None,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str = "linearizable",
    ) -> Iterator[RangeResult]:
        """Every page of a range, each asked when the previous one has been used: `range`
        following `next` until a page says no `more`. Each page is the state at its own
        index (a page may see writes made after the one before it)."""
        after = None
        while True:
            page = self.range(
                prefix,
                start=start,
                end=end,
                limit=limit,
                keys_only=keys_only,
                consistency=consistency,
                after=after,
            )
            yield page
            if not page.more or page.next is None:
                return
            after = page.next

    def delete_range(
        self, prefix: str | None = None, *, start: str | None = None, end: str | None = None
    ) -> WriteResult:
        """Delete the keys named by `prefix`, or `start` and/or `end`, as one write applied
        once; `WriteResult.deleted` says how many."""
        keys = protocol.KeyRangeQuery(prefix, start, end)
        return self._write(lambda write: protocol.delete_range_request(keys, write))

    def txn(
        self,
        compare: Sequence[Mapping[str, Any]] = (),
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> TxnResult:
        """Apply a transaction as one write, applied once: `success` runs if every compare
        holds, else `failure` (SPEC §6, "Transactions", for the parts' forms)."""
        result = self._write(lambda write: protocol.txn_request(compare, success, failure, write))
        return decode_result(result.raw, TxnResult)

    def watch(
        self,
        prefix: str | None = None,
        *,
        key: str | None = None,
        start: str | None = None,
        end: str | None = None,
        from_index: int | None = None,
        prev: bool = False,
    ) -> Iterator[WatchEvent]:
        """The changes of `key`, or of the keys named by `prefix` or `start`/`end` (or every
        key), after `from_index` (None: from now), in log order, without end; resumed
        exactly on the next node when a stream is lost (as `AsyncRaftClient.watch`). Each
        stream has a connection of its own, outside the client's lock."""
        keys = protocol.KeyRangeQuery(prefix, start, end)
        watch_request(keys, key, from_index, prev)  # a bad range is refused before any I/O
        return self._watch(keys, key, from_index, prev)

    def _watch(
        self, keys: protocol.KeyRangeQuery, key: str | None, from_index: int | None, prev: bool
    ) -> Iterator[WatchEvent]:
        cursor = WatchCursor(from_index)
        route = WatchRoute(
            self._view, target=self.target, timeout_seconds=self.timeout, rng=self._random
        )
        while True:
            node_id = route.node
            request = watch_request(keys, key, cursor.resume_from(), prev)
            try:
                for line in self._watch_lines(node_id, request):
                    route.streaming()
                    if line["type"] == "error":
                        raise lost_from_error_line(line, node_id)
                    event = cursor.accept(line)
                    if event is not None:
                        yield event
                raise WatchLost(f"node {node_id} ended the watch")
            except errors.ClientError as error:
                delay = route.failed(error)
            if delay > 0:
                time.sleep(delay)

    def _watch_lines(self, node_id: int, request: Request) -> Iterator[dict[str, Any]]:
        """The lines of one watch stream from `node_id`, decoded; raises the node's error
        answer, or `Unreachable` when the connection fails or stays silent too long."""
        host, port = self._view.addresses[node_id]
        connect_timeout = connect_timeout_for(self.timeout)
        connection = (
            http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self.ssl_context
            )
            if self.ssl_context is not None
            else http.client.HTTPConnection(host, port, timeout=connect_timeout)
        )
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(WATCH_SILENCE_SECONDS_MAX)
            headers = protocol.headers_for(request, self._token)
            connection.request(request.method, request.path, headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                protocol.read_answer(response.status, response.read(request.response_bytes_max))
                message = f"node {node_id} answered a watch with HTTP {response.status}"
                raise BadResponse(message, {"node": node_id, "message": message})
            while True:
                line = response.readline(WATCH_LINE_BYTES_MAX + 1)
                if not line.endswith(b"\n"):
                    if len(line) > WATCH_LINE_BYTES_MAX:
                        message = f"node {node_id} sent a watch line over the limit"
                        raise BadResponse(message, {"node": node_id, "message": message})
                    return  # the end of the stream (a line cut short by it is sent again)
                yield decode_line(line[:-1], node_id)
        except (http.client.HTTPException, OSError) as error:
            address = format_address((host, port))
            message = f"node {node_id} at {address}: {error or type(error).__name__}"
            raise Unreachable(message, {"node": node_id, "message": message}) from None
        finally:
            connection.close()

    # --- leases (SPEC §6, "Leases") ------------------------------------------------------
    def lease_grant(self, ttl: int, lease_id: int | None = None) -> lease_protocol.LeaseGrant:
        """Grant a lease of `ttl` seconds (id: the entry's index, or `lease_id` if free)."""
        result = self._write(lambda write: lease_protocol.grant_request(ttl, write, lease_id))
        return lease_protocol.decode_lease(result.raw, lease_protocol.LeaseGrant)

    def lease_keep_alive(self, lease_id: int) -> lease_protocol.LeaseKeepAlive:
        """Renew the lease for its TTL (the leader answers); `LeaseNotFound` once it is gone."""
        _, payload = self._call(lease_protocol.keep_alive_request(lease_id))
        return lease_protocol.decode_lease(payload, lease_protocol.LeaseKeepAlive)

    def lease_revoke(self, lease_id: int) -> WriteResult:
        """Revoke the lease and delete its keys (`deleted` says how many)."""
        return self._write(lambda write: lease_protocol.revoke_request(lease_id, write))

    def lease_info(
        self, lease_id: int, consistency: str = "linearizable"
    ) -> lease_protocol.LeaseInfo:
        payload = self._read(lease_protocol.info_request(lease_id, consistency))
        return lease_protocol.decode_lease(payload, lease_protocol.LeaseInfo)

    def leases(self, consistency: str = "linearizable") -> lease_protocol.LeaseList:
        payload = self._read(lease_protocol.list_request(consistency))
        return lease_protocol.decode_lease(payload, lease_protocol.LeaseList)

    def keep_lease_alive(
        self, lease_id: int, ttl: int, on_lost: Callable[[str], None] | None = None
    ) -> lease_protocol.LeaseKeeper:
        """Keep the lease alive from a thread, every ttl/3, until the keeper is closed
        (`keeper.close()` or `with`); see `LeaseKeeper`. It uses a client of its own, so
        this one's operations never hold its keepalives up."""
        # Each keepalive ends by the time the next is due, so that a hanging one cannot hide
        # that the TTL ran out.
        interval = ttl / lease_protocol.KEEPALIVES_PER_TTL
        keeper_client = self._clone(
            timeout=max(lease_protocol.KEEPALIVE_TIMEOUT_MIN_SECONDS, min(self.timeout, interval))
        )
        return lease_protocol.LeaseKeeper(
            keeper_client.lease_keep_alive, lease_id, ttl, on_lost=on_lost, closing=keeper_client
        )

    def _read(self, request: Request) -> dict[str, Any]:
        """A read's answer, its committed index noted for the `after_index` of writes."""
        try:
            start = self._view.read_start(self.read_from, self._random)
            _, payload = self._call(request, self._router(start))
        except errors.ClientError as error:
            self._committed.note_error(error)
            raise
        self._committed.note(payload)
        return payload

    # --- cluster -------------------------------------------------------------------------
    def status(self, node_id: int) -> NodeStatus:
        with self._lock:
            return self._status(node_id)

    def statuses(self) -> list[StatusReport]:
        """Every node's status, asked at once; an unreachable node is reported with its error."""
        answers = self._fan_out(list(self._view.addresses), self._status)
        reports = []
        for node_id, answer in answers.items():
            address = self._view.addresses[node_id]
            if isinstance(answer, NodeStatus):
                reports.append(StatusReport(node_id, address, answer))
            else:
                reports.append(StatusReport(node_id, address, None, answer))
        return reports

    def hash_at(self, node_id: int, index: int) -> str:
        """The node's applied hash at `index`; NotFound once it no longer remembers it."""
        with self._lock:
            return self._hash_at(node_id, index)

    def hashes_at(
        self, index: int, node_ids: list[int] | None = None
    ) -> dict[int, str | errors.ClientError]:
        """`hash_at` of several nodes (default: all), asked at once."""
        chosen = list(self._view.addresses) if node_ids is None else node_ids
        return self._fan_out(chosen, lambda node_id: self._hash_at(node_id, index))

    def health(self, node_id: int) -> NodeHealth:
        """Node `node_id`'s `/livez` and `/readyz` (SPEC §6); an unhealthy or unreachable
        node is a result, not an error."""
        with self._lock:
            return self._health(node_id)

    def healths(self) -> list[NodeHealth]:
        """`health` of every node, asked at once, in the cluster map's order."""
        answers = self._fan_out(list(self._view.addresses), self._health)
        return [
            answer
            if isinstance(answer, NodeHealth)
            else protocol.not_live(node_id, self._view.addresses[node_id], answer)
            for node_id, answer in answers.items()
        ]

    def members(self) -> Membership:
        _, payload = self._call(protocol.members_request())
        return decode_result(payload, Membership)

    def add_member(self, node_id: int, address: str) -> AdminResult:
        _, payload = self._call(protocol.add_member_request(node_id, address))
        return decode_result(payload, AdminResult)

    def remove_member(self, node_id: int) -> AdminResult:
        _, payload = self._call(protocol.remove_member_request(node_id))
        return decode_result(payload, AdminResult)

    def transfer_leader(self, node_id: int) -> AdminResult:
        _, payload = self._call(protocol.transfer_leader_request(node_id))
        return decode_result(payload, AdminResult)

    # --- backups (an admin operation) -----------------------------------------------------
    def snapshot(self) -> Backup:
        """A backup of the state machine from the leader (`GET /v1/snapshot`), holding every
        write acknowledged before the call; checked (`BadResponse` if damaged in transit)."""
        _, payload = self._call(protocol.snapshot_request())
        return protocol.read_backup(payload)

    def save_snapshot(self, destination: str | os.PathLike[str] | BinaryIO) -> Backup:
        """`snapshot()`, stored: to a path through `<path>.tmp`, fsynced and renamed once its
        checksum is verified (the path never holds part of a backup); or written to an open
        binary file."""
        _, payload = self._call(protocol.snapshot_request())
        return protocol.store_backup(payload, destination)

    # --- the retry loop ------------------------------------------------------------------
    # The underscored node queries take no lock: `_fan_out` runs them in worker threads while
    # the calling thread holds it.
    def _status(self, node_id: int) -> NodeStatus:
        payload = self._ask(node_id, protocol.status_request(), self.timeout)
        self._committed.note(payload, "commit_index")
        return decode_result(payload, NodeStatus)

    def _health(self, node_id: int) -> NodeHealth:
        address = self._view.addresses.get(node_id)
        if address is None:
            raise ValueError(f"node {node_id} is not in the cluster map")
        try:
            self._ask(node_id, protocol.livez_request(), self.timeout)
        except errors.ClientError as error:
            return protocol.not_live(node_id, address, error)
        try:
            status, body = self._connections.exchange(
                node_id, protocol.readyz_request(), self.timeout
            )
            return protocol.read_readiness(node_id, address, status, body)
        except errors.ClientError as error:
            return NodeHealth(node_id, address, live=True, ready=False, error=error)

    def _hash_at(self, node_id: int, index: int) -> str:
        payload = self._ask(node_id, protocol.hash_request(index), self.timeout)
        applied_hash = payload.get("applied_hash")
        if not isinstance(applied_hash, str):
            message = f"node {node_id} answered /v1/hash without applied_hash"
            raise BadResponse(message, {"node": node_id, "message": message})
        return applied_hash

    def _write(self, build: Callable[[PendingWrite], Request]) -> WriteResult:
        """One logical write: its attempts, and its resending under a new session when the
        cluster forgot the session and no attempt may have been applied (sessions.py)."""
        with self._lock:
            router = self._router()
            resends = 0
            while True:
                write = PendingWrite(self._session, self._committed.value)
                try:
                    node_id, payload = self._call(build(write), router, write)
                except errors.ClientError as error:
                    self._committed.note_error(error)
                    if isinstance(error, SessionExpired):
                        self._session = Session(new_client_id())
                    final = write.conclude(error)
                    if final is None and resends < SESSION_RESENDS_MAX:
                        resends += 1
                        continue
                    if final is None or final is error:
                        raise
                    raise final from error
                self._committed.note(payload)
                if "leader" not in payload:
                    payload = {**payload, "leader": node_id}
                return decode_result(payload, WriteResult)

    def _router(self, start: int | None = None) -> Router:
        return Router(
            self._view,
            target=self.target,
            timeout_seconds=self.timeout,
            rng=self._random,
            start=start,
        )

    def _call(
        self, request: Request, router: Router | None = None, write: PendingWrite | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Ask the leader (or the target) until an answer is final or the timeout expires."""
        with self._lock:
            if router is None:
                router = self._router()
            while True:
                node_id = router.node
                attempt_timeout = router.attempt_timeout_seconds()
                try:
                    payload = self._ask(node_id, request, attempt_timeout, write)
                except errors.ClientError as error:
                    delay = router.failed(error)  # raises the error when it is final
                    if write is not None:
                        write.attempt_failed(error)
                    if delay > 0:
                        time.sleep(delay)
                    continue
                router.succeeded(protocol.answered_leader(payload, node_id, request))
                return node_id, payload

    def _ask(
        self,
        node_id: int,
        request: Request,
        timeout_seconds: float,
        write: PendingWrite | None = None,
    ) -> dict[str, Any]:
        if node_id not in self._view.addresses:
            raise ValueError(f"node {node_id} is not in the cluster map")
        status, body = self._connections.exchange(node_id, request, timeout_seconds, write)
        return protocol.read_answer(status, body, binary=request.binary)

    def _fan_out(
        self, node_ids: list[int], work: Callable[[int], _T]
    ) -> dict[int, _T | errors.ClientError]:
        # Each worker uses only its own node's connection, so they never share one.
        def attempt(node_id: int) -> _T | errors.ClientError:
            try:
                return work(node_id)
            except errors.ClientError as error:
                return error

        if not node_ids:
            return {}
        with self._lock, ThreadPoolExecutor(min(len(node_ids), FAN_OUT_NODES_MAX)) as pool:
            answers = list(pool.map(attempt, node_ids))
        return dict(zip(node_ids, answers, strict=True))
