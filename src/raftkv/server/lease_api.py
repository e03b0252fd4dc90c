"""The lease routes of the client API (SPEC §6, "Leases"). Grants and revokes are writes
through the log like any other; a keepalive is answered by the leader's lessor alone; the
reads answer the replicated leases at the consistency asked for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from raftkv.kv import Command
from raftkv.kv.leases import LEASE_TTL_MAX_SECONDS
from raftkv.server.api_errors import BadRequest, NoRoute
from raftkv.server.api_requests import (
    NUMBER_MAX,
    body_of,
    consistency_of,
    number_of,
    session_of,
)
from raftkv.server.http_server import Request, Response

LEASE_PATH = "/v1/lease"
LEASE_PREFIX = "/v1/lease/"
LEASES_PATH = "/v1/leases"
KEEPALIVE_SUFFIX = "/keepalive"
# Keys `GET /v1/lease/{id}` lists (in key order; `key_count` says how many it has).
LEASE_KEYS_LISTED_MAX = 1000
T = TypeVar("T")


class LeaseBackend(Protocol):
    """What the lease routes need of the node (`RaftServer`)."""

    @property
    def lease_ttl_min_seconds(self) -> int: ...

    async def lease_keep_alive(self, lease_id: int) -> int | None: ...

    def lease_remaining(self, lease_id: int) -> float | None: ...

    async def read_query(
        self, consistency: str, query: Callable[[Any], T], *, leader_only: bool = False
    ) -> tuple[T, int]: ...


def lease_not_found(lease_id: int, **fields: Any) -> Response:
    return Response.error(404, "lease_not_found", f"no lease {lease_id}", id=lease_id, **fields)


def _integer(
    body: dict[str, Any], name: str, low: int, high: int, unit: str, default: int | None = None
) -> int:
    value = body.get(name, default)
    if value == default and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{name!r} must be an integer from {low} to {high} {unit}")
    return value


def lease_id_of(text: str) -> int:
    lease_id = number_of(text)
    if not lease_id:
        raise BadRequest(f"lease ids are integers from 1 to {NUMBER_MAX}")
    return lease_id


class LeaseApi:
    def __init__(
        self, server: LeaseBackend, propose_write: Callable[[Command], Awaitable[Response]]
    ) -> None:
        self.server = server
        self._propose_write = propose_write

    async def post_lease(self, request: Request) -> Response:
        """`POST /v1/lease {"ttl": S, "id"?: ID}`: grant."""
        body = body_of(request)
        low = self.server.lease_ttl_min_seconds
        ttl = _integer(body, "ttl", low, LEASE_TTL_MAX_SECONDS, "seconds")
        wanted = _integer(body, "id", 1, NUMBER_MAX, "(leave it out for the entry's index)", 0)
        client_id, seq, after_index = session_of(body)
        command = Command(
            op="lease_grant",
            key="",
            ttl=ttl,
            lease=wanted,
            client_id=client_id,
            seq=seq,
            after_index=after_index,
        )
        return await self._propose_write(command)

    def _route(self, request: Request) -> tuple[int, bool]:
        """The lease id of `/v1/lease/{id}[/keepalive]`, and whether it is a keepalive."""
        rest = request.path[len(LEASE_PREFIX) :]
        keepalive = rest.endswith(KEEPALIVE_SUFFIX)
        if keepalive:
            rest = rest[: -len(KEEPALIVE_SUFFIX)]
        return lease_id_of(rest), keepalive

    def _lease_path(self, request: Request) -> int:
        """The id of `/v1/lease/{id}`, which is not a keepalive's path."""
        lease_id, keepalive = self._route(request)
        if keepalive:
            raise NoRoute("a keepalive is POST")
        return lease_id

    async def post_keepalive(self, request: Request) -> Response:
        lease_id, keepalive = self._route(request)
        if not keepalive:
            raise NoRoute(
                f"no such path: {request.path} (a keepalive is POST {LEASE_PREFIX}ID/keepalive)"
            )
        ttl = await self.server.lease_keep_alive(lease_id)
        if ttl is None:
            return lease_not_found(lease_id)
        return Response.json({"id": lease_id, "ttl": ttl})

    async def delete_lease(self, request: Request) -> Response:
        lease_id = self._lease_path(request)
        body = body_of(request, required=False)
        client_id, seq, after_index = session_of({**request.query, **body})
        command = Command(
            op="lease_revoke",
            key="",
            lease=lease_id,
            client_id=client_id,
            seq=seq,
            after_index=after_index,
        )
        return await self._propose_write(command)

    async def get_lease(self, request: Request) -> Response:
        lease_id = self._lease_path(request)
        consistency = consistency_of(request)
        # On the leader only (but for a stale read): `remaining` is its lessor's clock.
        found, index = await self.server.read_query(
            consistency, lambda store: store.lease(lease_id), leader_only=True
        )
        if found is None:
            return lease_not_found(lease_id, index=index)
        ttl, keys = found
        remaining = self.server.lease_remaining(lease_id)
        return Response.json(
            {
                "id": lease_id,
                "ttl": ttl,
                "remaining": None if remaining is None else round(remaining, 3),
                "keys": keys[:LEASE_KEYS_LISTED_MAX],
                "key_count": len(keys),
                "index": index,
            }
        )

    async def get_leases(self, request: Request) -> Response:
        consistency = consistency_of(request)
        ttls, index = await self.server.read_query(consistency, lambda store: store.lease_ttls())
        leases = [{"id": lease_id, "ttl": ttls[lease_id]} for lease_id in sorted(ttls)]
        return Response.json({"leases": leases, "count": len(leases), "index": index})
