"""`AsyncRaftClient`: the asyncio client, on one aiohttp session with kept-alive connections."""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import aiohttp
import yarl

from raftkv import errors
from raftkv.addresses import format_address
from raftkv.client import endpoints, protocol
from raftkv.client import leases as lease_protocol
from raftkv.client.errors import BadResponse, SessionExpired, Unreachable
from raftkv.client.limits import (
    ASYNC_CONNECTIONS_MAX,
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
from raftkv.client.sessions import (
    CommittedIndex,
    PendingWrite,
    Session,
    SessionPool,
    new_client_id,
)
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


class AsyncRaftClient:
    """The asyncio twin of `RaftClient`: same constructor, same methods, awaited.

    `token`: the bearer token sent with every request (a node with `--auth-tokens` asks for
    one); a refused one raises `Unauthenticated` or `Forbidden`, never retried.

    Concurrent operations are fine: each concurrent write takes an at-most-once session of its
    own (the first one's client id is `client_id`). Close it (`await client.close()`, or use
    `async with`) to release its connections.
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
        self._token = protocol.checked_token(token)
        self._view.check_options(timeout, target, read_from)
        self.timeout = timeout
        self.target = target
        self.read_from = read_from
        self.client_id = client_id or new_client_id()
        self._sessions = SessionPool(self.client_id)
        self._committed = CommittedIndex()
        self._random = rng if rng is not None else random.Random()
        # Made on first use: an aiohttp session belongs to the event loop that runs it.
        self._http: aiohttp.ClientSession | None = None

    @property
    def _scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def leader(self) -> int | None:
        """The last leader this client saw, if any."""
        return self._view.known_leader

    @property
    def addresses(self) -> dict[int, tuple[str, int]]:
        return dict(self._view.addresses)

    @property
    def committed_index(self) -> int:
        """The highest committed index seen in an answer (the `after_index` of new writes)."""
        return self._committed.value

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> AsyncRaftClient:
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- key-value -----------------------------------------------------------------------
    async def put(self, key: str, value: str, lease: int | None = None) -> WriteResult:
        """Set `key`; with `lease`, attached to that lease (deleted when it expires or is
        revoked; a later put without a lease detaches it)."""
        return await self._write(lambda write: protocol.put_request(key, value, write, lease=lease))

    async def cas(self, key: str, expected: str | None, new: str) -> WriteResult:
        """Set `key` to `new` if its value is `expected` (None: if the key is absent)."""
        if expected is None:
            return await self._write(
                lambda write: protocol.put_request(key, new, write, if_absent=True)
            )
        return await self._write(
            lambda write: protocol.put_request(key, new, write, if_value=expected)
        )

    async def put_if_absent(self, key: str, value: str) -> WriteResult:
        return await self.cas(key, None, value)

    async def delete(self, key: str) -> WriteResult:
        return await self._write(lambda write: protocol.delete_request(key, write))

    async def get(self, key: str, consistency: str = "linearizable") -> ReadResult:
        return decode_result(await self._read(protocol.get_request(key, consistency)), ReadResult)

    async def range(
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
        return decode_result(await self._read(request), RangeResult)

    async def range_pages(
        self,
        prefix: str | None = None,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
        consistency: str = "linearizable",
    ) -> AsyncIterator[RangeResult]:
        """Every page of a range, each asked when the previous one has been used: `range`
        following `next` until a page says no `more`. Each page is the state at its own
        index (a page may see writes made after the one before it)."""
        after = None
        while True:
            page = await self.range(
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

    async def delete_range(
        self, prefix: str | None = None, *, start: str | None = None, end: str | None = None
    ) -> WriteResult:
        """Delete the keys named by `prefix`, or `start` and/or `end`, as one write applied
        once; `WriteResult.deleted` says how many."""
        keys = protocol.KeyRangeQuery(prefix, start, end)
        return await self._write(lambda write: protocol.delete_range_request(keys, write))

    async def txn(
        self,
        compare: Sequence[Mapping[str, Any]] = (),
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> TxnResult:
        """Apply a transaction as one write, applied once: `success` runs if every compare
        holds, else `failure` (SPEC §6, "Transactions", for the parts' forms)."""
        result = await self._write(
            lambda write: protocol.txn_request(compare, success, failure, write)
        )
        return decode_result(result.raw, TxnResult)

    async def watch(
        self,
        prefix: str | None = None,
        *,
        key: str | None = None,
        start: str | None = None,
        end: str | None = None,
        from_index: int | None = None,
        prev: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """The changes of `key`, or of the keys named by `prefix` or `start`/`end` (or every
        key), at log indexes after `from_index` (None: from now), in log order, without end:
        `async for event in client.watch(prefix="a/")`. Any node serves it; when a stream is
        lost (its node stops or falls silent) it resumes on the next node, exactly after the
        last event delivered. Raises `WatchCompacted` when no node holds the changes after
        the index to resume from any more, and the last failure when no node sent anything
        for the client's timeout. `prev`: events carry `prev_value`."""
        keys = protocol.KeyRangeQuery(prefix, start, end)
        watch_request(keys, key, from_index, prev)  # a bad range is refused before any I/O
        cursor = WatchCursor(from_index)
        route = WatchRoute(
            self._view, target=self.target, timeout_seconds=self.timeout, rng=self._random
        )
        while True:
            node_id = route.node
            request = watch_request(keys, key, cursor.resume_from(), prev)
            try:
                async for line in self._watch_lines(node_id, request):
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
                await asyncio.sleep(delay)

    async def _watch_lines(self, node_id: int, request: Request) -> AsyncIterator[dict[str, Any]]:
        """The lines of one watch stream from `node_id`, decoded; raises the node's error
        answer, or `Unreachable` when the connection fails or stays silent too long."""
        address = format_address(self._view.addresses[node_id])
        url = yarl.URL(f"{self._scheme}://{address}{request.path}", encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=connect_timeout_for(self.timeout),
            sock_read=WATCH_SILENCE_SECONDS_MAX,
        )
        headers = protocol.headers_for(request, self._token)
        try:
            async with self._session().get(url, headers=headers, timeout=timeout) as response:
                if response.status != 200:
                    body = await response.content.read(request.response_bytes_max)
                    protocol.read_answer(response.status, body)  # raises the error answered
                    message = f"node {node_id} answered a watch with HTTP {response.status}"
                    raise BadResponse(message, {"node": node_id, "message": message})
                pending = bytearray()
                async for chunk in response.content.iter_any():
                    pending += chunk
                    end = pending.rfind(b"\n")
                    if end < 0:
                        if len(pending) > WATCH_LINE_BYTES_MAX:
                            message = f"node {node_id} sent a watch line over the limit"
                            raise BadResponse(message, {"node": node_id, "message": message})
                        continue
                    lines = bytes(pending[:end]).split(b"\n")
                    del pending[: end + 1]
                    for line in lines:
                        yield decode_line(line, node_id)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise _unreachable(node_id, address, error, request_sent=True) from None

    # --- leases (SPEC §6, "Leases") ------------------------------------------------------
    async def lease_grant(self, ttl: int, lease_id: int | None = None) -> lease_protocol.LeaseGrant:
        """Grant a lease of `ttl` seconds (id: the entry's index, or `lease_id` if free)."""
        result = await self._write(lambda write: lease_protocol.grant_request(ttl, write, lease_id))
        return lease_protocol.decode_lease(result.raw, lease_protocol.LeaseGrant)

    async def lease_keep_alive(self, lease_id: int) -> lease_protocol.LeaseKeepAlive:
        """Renew the lease for its TTL (the leader answers); `LeaseNotFound` once it is gone."""
        _, payload = await self._call(lease_protocol.keep_alive_request(lease_id))
        return lease_protocol.decode_lease(payload, lease_protocol.LeaseKeepAlive)

    async def lease_revoke(self, lease_id: int) -> WriteResult:
        """Revoke the lease and delete its keys (`deleted` says how many)."""
        return await self._write(lambda write: lease_protocol.revoke_request(lease_id, write))

    async def lease_info(
        self, lease_id: int, consistency: str = "linearizable"
    ) -> lease_protocol.LeaseInfo:
        payload = await self._read(lease_protocol.info_request(lease_id, consistency))
        return lease_protocol.decode_lease(payload, lease_protocol.LeaseInfo)

    async def leases(self, consistency: str = "linearizable") -> lease_protocol.LeaseList:
        payload = await self._read(lease_protocol.list_request(consistency))
        return lease_protocol.decode_lease(payload, lease_protocol.LeaseList)

    def keep_lease_alive(
        self, lease_id: int, ttl: int, on_lost: Callable[[str], None] | None = None
    ) -> lease_protocol.AsyncLeaseKeeper:
        """Keep the lease alive from a task, every ttl/3, until the keeper is closed
        (`await keeper.close()` or `async with`); see `AsyncLeaseKeeper`."""
        return lease_protocol.AsyncLeaseKeeper(
            self.lease_keep_alive, lease_id, ttl, on_lost=on_lost
        )

    async def _read(self, request: Request) -> dict[str, Any]:
        """A read's answer, its committed index noted for the `after_index` of writes."""
        try:
            start = self._view.read_start(self.read_from, self._random)
            _, payload = await self._call(request, self._router(start))
        except errors.ClientError as error:
            self._committed.note_error(error)
            raise
        self._committed.note(payload)
        return payload

    # --- cluster -------------------------------------------------------------------------
    async def status(self, node_id: int) -> NodeStatus:
        payload = await self._ask(node_id, protocol.status_request(), self.timeout)
        self._committed.note(payload, "commit_index")
        return decode_result(payload, NodeStatus)

    async def statuses(self) -> list[StatusReport]:
        """Every node's status, asked at once; an unreachable node is reported with its error."""
        answers = await self._fan_out(list(self._view.addresses), self.status)
        reports = []
        for node_id, answer in answers.items():
            address = self._view.addresses[node_id]
            if isinstance(answer, NodeStatus):
                reports.append(StatusReport(node_id, address, answer))
            else:
                reports.append(StatusReport(node_id, address, None, answer))
        return reports

    async def hash_at(self, node_id: int, index: int) -> str:
        """The node's applied hash at `index`; NotFound once it no longer remembers it."""
        payload = await self._ask(node_id, protocol.hash_request(index), self.timeout)
        applied_hash = payload.get("applied_hash")
        if not isinstance(applied_hash, str):
            message = f"node {node_id} answered /v1/hash without applied_hash"
            raise BadResponse(message, {"node": node_id, "message": message})
        return applied_hash

    async def hashes_at(
        self, index: int, node_ids: list[int] | None = None
    ) -> dict[int, str | errors.ClientError]:
        """`hash_at` of several nodes (default: all), asked at once."""
        chosen = list(self._view.addresses) if node_ids is None else node_ids
        return await self._fan_out(chosen, lambda node_id: self.hash_at(node_id, index))

    async def health(self, node_id: int) -> NodeHealth:
        """Node `node_id`'s `/livez` and `/readyz` (SPEC §6); an unhealthy or unreachable
        node is a result, not an error."""
        address = self._view.addresses.get(node_id)
        if address is None:
            raise ValueError(f"node {node_id} is not in the cluster map")
        try:
            await self._ask(node_id, protocol.livez_request(), self.timeout)
        except errors.ClientError as error:
            return protocol.not_live(node_id, address, error)
        try:
            status, body = await self._exchange(node_id, protocol.readyz_request(), self.timeout)
            return protocol.read_readiness(node_id, address, status, body)
        except errors.ClientError as error:
            return NodeHealth(node_id, address, live=True, ready=False, error=error)

    async def healths(self) -> list[NodeHealth]:
        """`health` of every node, asked at once, in the cluster map's order."""
        answers = await self._fan_out(list(self._view.addresses), self.health)
        return [
            answer
            if isinstance(answer, NodeHealth)
            else protocol.not_live(node_id, self._view.addresses[node_id], answer)
            for node_id, answer in answers.items()
        ]

    async def members(self) -> Membership:
        _, payload = await self._call(protocol.members_request())
        return decode_result(payload, Membership)

    async def add_member(self, node_id: int, address: str) -> AdminResult:
        _, payload = await self._call(protocol.add_member_request(node_id, address))
        return decode_result(payload, AdminResult)

    async def remove_member(self, node_id: int) -> AdminResult:
        _, payload = await self._call(protocol.remove_member_request(node_id))
        return decode_result(payload, AdminResult)

    async def transfer_leader(self, node_id: int) -> AdminResult:
        _, payload = await self._call(protocol.transfer_leader_request(node_id))
        return decode_result(payload, AdminResult)

    # --- the retry loop ------------------------------------------------------------------
    # --- backups (an admin operation) -----------------------------------------------------
    async def snapshot(self) -> Backup:
        """A backup of the state machine from the leader (`GET /v1/snapshot`), holding every
        write acknowledged before the call; checked (`BadResponse` if damaged in transit)."""
        _, payload = await self._call(protocol.snapshot_request())
        return protocol.read_backup(payload)

    async def save_snapshot(self, destination: str | os.PathLike[str] | BinaryIO) -> Backup:
        """`snapshot()`, stored: to a path through `<path>.tmp`, fsynced and renamed once its
        checksum is verified (in a thread: the fsync blocks); or written to an open binary
        file."""
        _, payload = await self._call(protocol.snapshot_request())
        return await asyncio.to_thread(protocol.store_backup, payload, destination)

    async def _write(self, build: Callable[[PendingWrite], Request]) -> WriteResult:
        """One logical write on a session of its own from the pool: its attempts, and its
        resending under a new session when the cluster forgot the session and no attempt
        may have been applied (sessions.py). A forgotten session is not given back."""
        router = self._router()
        session = self._sessions.acquire()
        try:
            resends = 0
            while True:
                write = PendingWrite(session, self._committed.value)
                try:
                    node_id, payload = await self._call(build(write), router, write)
                except errors.ClientError as error:
                    self._committed.note_error(error)
                    if isinstance(error, SessionExpired):
                        session = Session(new_client_id())
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
        finally:
            self._sessions.release(session)

    def _router(self, start: int | None = None) -> Router:
        return Router(
            self._view,
            target=self.target,
            timeout_seconds=self.timeout,
            rng=self._random,
            start=start,
        )

    async def _call(
        self, request: Request, router: Router | None = None, write: PendingWrite | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Ask the leader (or the target) until an answer is final or the timeout expires."""
        if router is None:
            router = self._router()
        while True:
            node_id = router.node
            attempt_timeout = router.attempt_timeout_seconds()
            try:
                payload = await self._ask(node_id, request, attempt_timeout, write)
            except errors.ClientError as error:
                delay = router.failed(error)  # raises the error when it is final
                if write is not None:
                    write.attempt_failed(error)
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            router.succeeded(protocol.answered_leader(payload, node_id, request))
            return node_id, payload

    async def _ask(
        self,
        node_id: int,
        request: Request,
        timeout_seconds: float,
        write: PendingWrite | None = None,
    ) -> dict[str, Any]:
        status, body = await self._exchange(node_id, request, timeout_seconds, write)
        return protocol.read_answer(status, body, binary=request.binary)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # `ssl=True` is aiohttp's default verification, unused on http:// URLs.
            connector = aiohttp.TCPConnector(
                limit=ASYNC_CONNECTIONS_MAX,
                ssl=self.ssl_context if self.ssl_context is not None else True,
            )
            self._http = aiohttp.ClientSession(connector=connector)
            # aiohttp resends a PUT or DELETE once, silently, when a kept-alive connection
            # breaks. The retry loop below must see every attempt that may have reached a
            # node (sessions.PendingWrite), so it does that resend itself. No public switch:
            # this is the one aiohttp's own test client flips (aiohttp is pinned).
            self._http._retry_connection = False
        return self._http

    async def _exchange(
        self,
        node_id: int,
        request: Request,
        timeout_seconds: float,
        write: PendingWrite | None = None,
    ) -> tuple[int, bytes]:
        if node_id not in self._view.addresses:
            raise ValueError(f"node {node_id} is not in the cluster map")
        address = format_address(self._view.addresses[node_id])
        # `encoded=True`: the path is already escaped, and a key's "%2F" must stay escaped.
        url = yarl.URL(f"{self._scheme}://{address}{request.path}", encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=connect_timeout_for(timeout_seconds)
        )
        headers = protocol.headers_for(request, self._token)
        for first_try in (True, False):
            try:
                async with self._session().request(
                    request.method, url, data=request.body, headers=headers, timeout=timeout
                ) as response:
                    body = bytearray()
                    limit = request.response_bytes_max
                    while len(body) <= limit:
                        chunk = await response.content.read(limit + 1 - len(body))
                        if not chunk:
                            break
                        body += chunk
                    if len(body) > limit:
                        message = f"node {node_id} sent an answer over {limit} bytes"
                        raise BadResponse(message, {"node": node_id, "message": message})
                    return response.status, bytes(body)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                # The connection was never made: the node cannot have seen the request.
                raise _unreachable(node_id, address, error, request_sent=False) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                # The connection broke, most often an idle kept-alive one the node closed,
                # which says nothing about the node: one fresh connection is tried at once.
                # Safe for writes (they carry their seq), but the node may have read the
                # request, so a write no longer counts the attempt as refused.
                if first_try:
                    if write is not None:
                        write.attempt_lost()
                    continue
                raise _unreachable(node_id, address, error, request_sent=True) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                raise _unreachable(node_id, address, error, request_sent=True) from None
        raise AssertionError("unreachable: the loop returns or raises")

    async def _fan_out(
        self, node_ids: list[int], work: Callable[[int], Awaitable[_T]]
    ) -> dict[int, _T | errors.ClientError]:
        limit = asyncio.Semaphore(FAN_OUT_NODES_MAX)

        async def attempt(node_id: int) -> _T | errors.ClientError:
            async with limit:
                try:
                    return await work(node_id)
                except errors.ClientError as error:
                    return error

        answers = await asyncio.gather(*(attempt(node_id) for node_id in node_ids))
        return dict(zip(node_ids, answers, strict=True))


def _unreachable(
    node_id: int, address: str, error: BaseException, *, request_sent: bool
) -> Unreachable:
    message = f"node {node_id} at {address}: {error or type(error).__name__}"
    return Unreachable(message, {"node": node_id, "message": message}, request_sent=request_sent)
