"""Leases in the clients (SPEC §6, "Leases"): the requests, the answers, and the keepers that
keep a lease alive in the background (a thread for `RaftClient`, a task for
`AsyncRaftClient`) until closed, noticing when it is lost."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import msgspec

from raftkv import errors
from raftkv.client.errors import BadResponse, LeaseNotFound
from raftkv.client.protocol import Request, WriteSession, checked_consistency
from raftkv.client.protocol import json_body as _json

# Keepalives per TTL: one lost or slow keepalive leaves two more chances.
KEEPALIVES_PER_TTL = 3
# The shortest timeout a keeper's keepalive gets (a TTL/3 shorter than this is unlikely).
KEEPALIVE_TIMEOUT_MIN_SECONDS = 0.5


# --- requests ---------------------------------------------------------------------------
def _lease_path(lease_id: int) -> str:
    if isinstance(lease_id, bool) or not isinstance(lease_id, int) or lease_id < 1:
        raise ValueError("a lease id is a positive integer")
    return f"/v1/lease/{lease_id}"


def grant_request(ttl: int, write: WriteSession, lease_id: int | None = None) -> Request:
    body: dict[str, Any] = {"ttl": ttl}
    if lease_id is not None:
        _lease_path(lease_id)
        body["id"] = lease_id
    body["client_id"] = write.client_id
    body["seq"] = write.seq
    body["after_index"] = write.after_index
    return Request("POST", "/v1/lease", _json(body))


def keep_alive_request(lease_id: int) -> Request:
    # Not a logged write: repeating it is harmless, so it carries no session.
    return Request("POST", _lease_path(lease_id) + "/keepalive", b"")


def revoke_request(lease_id: int, write: WriteSession) -> Request:
    query = {"client_id": write.client_id, "seq": write.seq, "after_index": write.after_index}
    return Request("DELETE", f"{_lease_path(lease_id)}?{urlencode(query)}")


def info_request(lease_id: int, consistency: str) -> Request:
    checked_consistency(consistency)
    path = f"{_lease_path(lease_id)}?consistency={consistency}"
    return Request("GET", path, leader_only=consistency != "stale")


def list_request(consistency: str) -> Request:
    checked_consistency(consistency)
    # Any member answers it (as a key read): an answer says nothing of who leads.
    return Request("GET", f"/v1/leases?consistency={consistency}", leader_only=False)


# --- answers ------------------------------------------------------------------------------
class LeaseGrant(msgspec.Struct, frozen=True, kw_only=True):
    """A granted lease: its id and TTL (seconds), and the write's leader and index."""

    id: int
    ttl: int
    leader: int
    index: int
    raw: dict[str, Any] = {}


class LeaseKeepAlive(msgspec.Struct, frozen=True, kw_only=True):
    """A renewed lease: it runs `ttl` seconds from when the leader answered."""

    id: int
    ttl: int
    raw: dict[str, Any] = {}


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A lease: `remaining` is the leader's count (None from a follower's stale read);
    `keys` its first keys in order (at most 1000), `key_count` how many it has."""

    id: int
    ttl: int
    remaining: float | None = None
    keys: list[str]
    key_count: int
    index: int
    raw: dict[str, Any] = {}


class LeaseSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    ttl: int


class LeaseList(msgspec.Struct, frozen=True, kw_only=True):
    leases: list[LeaseSummary]
    count: int
    index: int
    raw: dict[str, Any] = {}


LeaseAnswer = TypeVar("LeaseAnswer", LeaseGrant, LeaseKeepAlive, LeaseInfo, LeaseList)


def decode_lease(payload: dict[str, Any], answer_type: type[LeaseAnswer]) -> LeaseAnswer:
    try:
        result = msgspec.convert(payload, answer_type)
    except msgspec.ValidationError as error:
        message = f"unexpected answer: {error}"
        raise BadResponse(message, {"message": message}) from None
    return msgspec.structs.replace(result, raw=payload)


# --- keeping a lease alive ----------------------------------------------------------------
class _Watch:
    """When a lease counts as lost, from the keeper's side: the leader renews it for its
    TTL from when it answers, which is after the keepalive was sent; so a keeper that has
    had no keepalive answered in the TTL since sending its last answered one cannot know
    the lease is still there."""

    def __init__(self, ttl: int, now: float) -> None:
        self.ttl = ttl
        self.safe_until = now + ttl
        self.reason: str | None = None

    def answered(self, sent_at: float) -> None:
        self.safe_until = sent_at + self.ttl

    def failed(self, error: Exception, now: float) -> bool:
        """A keepalive failed; whether the lease is now taken as lost."""
        if isinstance(error, LeaseNotFound):
            self.reason = "the lease expired or was revoked"
        elif now >= self.safe_until:
            self.reason = f"no keepalive answered within the lease's TTL ({self.ttl} s): {error}"
        return self.reason is not None


class _Closeable(Protocol):
    def close(self) -> None: ...


class LeaseKeeper:
    """Keeps a lease alive from a thread of its own, every TTL/3, until `close()` (or the
    end of a `with` block). `lost` is set, and `reason` says why, once the lease expired or
    was revoked, or no keepalive was answered for a TTL; the keeper stops then.
    `on_lost(reason)` is called from its thread. `keep_alive` is usually a `RaftClient`'s
    `lease_keep_alive`; give the keeper a client of its own if another thread keeps the
    first one busy (a `RaftClient` runs one operation at a time)."""

    def __init__(
        self,
        keep_alive: Callable[[int], LeaseKeepAlive],
        lease_id: int,
        ttl: int,
        *,
        on_lost: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        closing: _Closeable | None = None,
    ) -> None:
        self.lease_id = lease_id
        self._keep_alive = keep_alive
        self._clock = clock
        self._watch = _Watch(ttl, clock())
        self._on_lost = on_lost
        self._closing = closing  # closed with the keeper: the client it keeps alive with
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease_id}", daemon=True)
        self._thread.start()

    @property
    def reason(self) -> str | None:
        return self._watch.reason

    def _run(self) -> None:
        interval = self._watch.ttl / KEEPALIVES_PER_TTL
        while not self._stop.wait(interval):
            sent_at = self._clock()
            try:
                answer = self._keep_alive(self.lease_id)
            except errors.ClientError as error:
                if self._watch.failed(error, self._clock()):
                    self.lost.set()
                    if self._on_lost is not None and not self._stop.is_set():
                        self._on_lost(self._watch.reason or "lost")
                    return
                continue
            self._watch.ttl = answer.ttl
            self._watch.answered(sent_at)

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
            if self._closing is not None:
                self._closing.close()

    def __enter__(self) -> LeaseKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLeaseKeeper:
    """`LeaseKeeper` as an asyncio task (`AsyncRaftClient.keep_lease_alive`); `lost` is an
    `asyncio.Event`. Close it with `await keeper.close()` or `async with`."""

    def __init__(
        self,
        keep_alive: Callable[[int], Awaitable[LeaseKeepAlive]],
        lease_id: int,
        ttl: int,
        *,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.lease_id = lease_id
        self._keep_alive = keep_alive
        self._loop = asyncio.get_running_loop()
        self._watch = _Watch(ttl, self._loop.time())
        self._on_lost = on_lost
        self.lost = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"lease-{lease_id}")

    @property
    def reason(self) -> str | None:
        return self._watch.reason

    async def _run(self) -> None:
        loop = self._loop
        while True:
            await asyncio.sleep(self._watch.ttl / KEEPALIVES_PER_TTL)
            sent_at = loop.time()
            try:
                # No longer than until the next one is due: a keepalive that hangs must not
                # keep the keeper from noticing that the TTL ran out.
                async with asyncio.timeout(self._watch.ttl / KEEPALIVES_PER_TTL):
                    answer = await self._keep_alive(self.lease_id)
            except (errors.ClientError, TimeoutError) as error:
                if self._watch.failed(error, loop.time()):
                    self.lost.set()
                    if self._on_lost is not None:
                        self._on_lost(self._watch.reason or "lost")
                    return
                continue
            self._watch.ttl = answer.ttl
            self._watch.answered(sent_at)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aenter__(self) -> AsyncLeaseKeeper:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
