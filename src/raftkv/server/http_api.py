"""The client HTTP API (SPEC §3): routing, validation and errors. Every request is
validated; every error is a JSON body `{"error": CODE, ...}` with a fitting
status. The HTTP protocol itself is `http_server.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Protocol, TypeVar

from raftkv.errors import CommandFailed, NoLeader, NotLeader, ProposalDropped, Timeout
from raftkv.kv import Command, Result, encode_command
from raftkv.kv.ranges import KeyRange
from raftkv.kv.records import KeyRecord
from raftkv.kv.store import RangePage
from raftkv.server.api_errors import BadRequest, NoRoute, TooLarge, WrongMethod
from raftkv.server.api_requests import (
    KV_PREFIX,
    NUMBER_MAX,
    after_of,
    body_of,
    consistency_of,
    key_of,
    key_range_of,
    lease_of,
    number_of,
    optional_flag,
    optional_string,
    query_flag,
    range_answer,
    range_limit_of,
    session_of,
    transaction_of,
    watch_request_of,
)
from raftkv.server.auth import PUBLIC_HEALTH, PUBLIC_METRICS, Access, AccessPolicy, Refusal, Role
from raftkv.server.backup import BackupBusy
from raftkv.server.health import HealthFacts, readiness
from raftkv.server.http_server import Request, Response, StreamOutput, StreamResponse
from raftkv.server.lease_api import LEASE_PATH, LEASE_PREFIX, LEASES_PATH, LeaseApi, LeaseBackend
from raftkv.server.options import READY_LAG_ENTRIES_DEFAULT
from raftkv.server.requests import RequestFailed
from raftkv.server.watches import Compacted, TooManyWatchers, WatchHub, WatchHubClosed
from raftkv.storage.backup_file import BACKUP_CONTENT_TYPE

# The body allowance: a value and an `if_value` within the value limit are accepted however
# they are encoded. JSON may write any character as `\uXXXX`, six bytes for one (a control
# character must be), so each takes at most six times its length; plus room for the rest
# of the object (keys, client id, numbers). 12 MiB + 64 KiB for the default 1 MiB limit.
JSON_ESCAPE_FACTOR_MAX = 6
BODY_OVERHEAD_BYTES = 64 << 10


def body_bytes_max(value_bytes_max: int) -> int:
    """The largest request body the client port reads for a value limit."""
    return 2 * JSON_ESCAPE_FACTOR_MAX * value_bytes_max + BODY_OVERHEAD_BYTES


KV_RANGE_PATH = "/v1/kv"
TXN_PATH = "/v1/txn"
WATCH_PATH = "/v1/watch"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
MEMBERS_PREFIX = "/v1/members/"
NOT_KEY_VALUE_MESSAGE = (
    "this node's state machine is not the key-value store; the /v1/kv routes serve only"
    " raftkv's KVStore (propose a custom state machine's commands through its own API)"
)
SESSION_EXPIRED_MESSAGE = (
    "the cluster no longer remembers this client's session (or this write's after_index is"
    " older than the sessions it forgot): the write was not applied now, but if this is a"
    " retry an earlier attempt may have been, so its outcome is unknown; use a new client_id"
    " for further writes"
)

Route = Callable[[Request], Awaitable[Response | StreamResponse]]
UI_PATH = "/ui"
UI_EVENTS_PATH = "/v1/ui/events"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A route's handler and who may call it (`--auth-tokens`): every route states its
    access, so a new one cannot be added open by accident. `token_in_query`: the token may
    also come as `?token=` (the dashboard's two routes only: a browser's EventSource cannot
    send an Authorization header)."""

    handler: Route
    access: Access
    token_in_query: bool = False


# Each route's role (SPEC §6): reads of state, writes of keys, and the cluster's
# administration; health and metrics may be opened with `--auth-public`.
READ = Access(Role.READ)
WRITE = Access(Role.WRITE)
ADMIN = Access(Role.ADMIN)
HEALTH = Access(Role.READ, public_group=PUBLIC_HEALTH)
METRICS = Access(Role.READ, public_group=PUBLIC_METRICS)
AUTHENTICATE_HEADER = 'WWW-Authenticate: Bearer realm="raftkv"'

# Health probes (SPEC §6): `/livez` answers while the event loop serves; `/readyz` says
# whether this node can serve, each check "ok" or why it fails.
LIVEZ_PATH = "/livez"
READYZ_PATH = "/readyz"
LIVE_BODY = b'{"ok":true}'


class Proposer(Protocol):
    """Proposes a command and waits for it to apply (`RequestTracker`)."""

    async def propose(self, data: bytes) -> tuple[Any, int]:
        """The command's result and its log index, once applied."""


class ClusterOperations(Protocol):
    """The membership and leadership routes' work (`MembershipOperations`)."""

    def describe(self) -> dict[str, Any]: ...

    async def add(self, member: int, address: str) -> dict[str, Any]: ...

    async def remove(self, member: int) -> dict[str, Any]: ...

    async def transfer_leadership(
        self, target: int, timeout_seconds: float | None = None
    ) -> int: ...


class MetricsPage(Protocol):
    """`GET /metrics` (`NodeMetrics`)."""

    def render(self) -> bytes: ...


class DashboardStreams(Protocol):
    """The dashboard's live snapshots (`Dashboard`)."""

    def open_stream(self) -> AsyncIterator[bytes] | None:
        """A viewer's stream of Server-Sent Events, or None when too many watch."""


class StatusReport(Protocol):
    """What the node says of itself (server/node_report.py)."""

    def status(self) -> dict[str, Any]: ...

    def health_facts(self) -> HealthFacts: ...


class ApiBackend(LeaseBackend, Protocol):
    """What the API answers from (`RaftServer`). Properties: `storage_failure` and the
    remembered hashes change as the node runs."""

    @property
    def id(self) -> int: ...

    @property
    def storage_failure(self) -> str | None: ...

    @property
    def applied_hashes(self) -> Mapping[int, str]:
        """The state machine's hash after each recently applied index."""

    @property
    def requests(self) -> Proposer: ...

    @property
    def members(self) -> ClusterOperations: ...

    @property
    def metrics(self) -> MetricsPage: ...

    @property
    def dashboard(self) -> DashboardStreams: ...

    @property
    def watches(self) -> WatchHub: ...

    def leader_client_address(self, leader_id: int | None) -> str | None: ...

    async def read_query(
        self, consistency: str, query: Callable[[Any], T], *, leader_only: bool = False
    ) -> tuple[T, int]:
        """`query` run on the state machine at the consistency asked for, and the applied
        index it answered at (`leader_only`: never on a follower but for a stale read)."""

    @property
    def report(self) -> StatusReport: ...

    async def backup(self) -> bytes:
        """A backup file of the state machine, consistent with every acknowledged write
        (server/backup.py); `NotLeader` on a follower."""


def _refused(refusal: Refusal) -> Response:
    if refusal.status == 401:
        response = Response.error(401, "unauthenticated", refusal.message)
        return response.with_headers(AUTHENTICATE_HEADER)
    needed = refusal.role_needed.label if refusal.role_needed is not None else None
    return Response.error(403, "forbidden", refusal.message, role=needed)


class ClientApi:
    """Routes a request to its handler and turns every failure into a JSON error."""

    def __init__(
        self,
        server: ApiBackend,
        value_bytes_max: int,
        *,
        key_value_routes: bool = True,
        ready_lag_entries_max: int = READY_LAG_ENTRIES_DEFAULT,
        access: AccessPolicy | None = None,
        url_scheme: str = "http",
    ) -> None:
        """`key_value_routes`: whether the node's state machine is the KV store. Without
        it, /v1/kv/... answers `not_found` and proposes nothing: another state machine
        cannot decode the KV commands. `ready_lag_entries_max`: `/readyz` fails beyond
        this many committed entries not yet applied. `access`: who may call what (default:
        everyone everything). `url_scheme`: what leader URLs start with, "https" when the
        cluster's client ports serve HTTPS (a cluster is configured alike, so this node's
        scheme is the leader's)."""
        self.server = server
        self.access = access if access is not None else AccessPolicy()
        self.url_scheme = url_scheme
        self.value_bytes_max = value_bytes_max
        self.ready_lag_entries_max = ready_lag_entries_max
        self.body_bytes_max = body_bytes_max(value_bytes_max)
        # method -> endpoint (handler and access), for each exact path and for each prefix
        # ("/v1/kv/{key}").
        self._exact: dict[str, dict[str, Endpoint]] = {
            "/v1/status": {"GET": Endpoint(self.get_status, READ)},
            "/v1/hash": {"GET": Endpoint(self.get_hash, READ)},
            "/v1/members": {
                "GET": Endpoint(self.get_members, READ),
                "POST": Endpoint(self.post_member, ADMIN),
            },
            "/v1/transfer-leader": {"POST": Endpoint(self.post_transfer_leader, ADMIN)},
            "/v1/snapshot": {"GET": Endpoint(self.get_snapshot, ADMIN)},
            "/metrics": {"GET": Endpoint(self.get_metrics, METRICS)},
            LIVEZ_PATH: {"GET": Endpoint(self.get_livez, HEALTH)},
            READYZ_PATH: {"GET": Endpoint(self.get_readyz, HEALTH)},
            UI_PATH: {"GET": Endpoint(self.get_ui, READ, token_in_query=True)},
            UI_EVENTS_PATH: {"GET": Endpoint(self.get_ui_events, READ, token_in_query=True)},
        }
        self._prefixed: list[tuple[str, dict[str, Endpoint]]] = [
            (MEMBERS_PREFIX, {"DELETE": Endpoint(self.delete_member, ADMIN)}),
        ]
        if key_value_routes:
            self._exact[KV_RANGE_PATH] = {
                "GET": Endpoint(self.get_range, READ),
                "DELETE": Endpoint(self.delete_range, WRITE),
            }
            self._exact[TXN_PATH] = {"POST": Endpoint(self.post_txn, WRITE)}
            self._exact[WATCH_PATH] = {"GET": Endpoint(self.get_watch, READ)}
            kv_routes = {
                "PUT": Endpoint(self.put_key, WRITE),
                "GET": Endpoint(self.get_key, READ),
                "DELETE": Endpoint(self.delete_key, WRITE),
            }
            self._prefixed.insert(0, (KV_PREFIX, kv_routes))  # first: the hot path
            leases = LeaseApi(server, self._propose_write)
            self._exact[LEASE_PATH] = {"POST": Endpoint(leases.post_lease, WRITE)}
            self._exact[LEASES_PATH] = {"GET": Endpoint(leases.get_leases, READ)}
            lease_routes = {
                # A keepalive is not logged, but it keeps keys alive: a write's role.
                "POST": Endpoint(leases.post_keepalive, WRITE),
                "GET": Endpoint(leases.get_lease, READ),
                "DELETE": Endpoint(leases.delete_lease, WRITE),
            }
            self._prefixed.append((LEASE_PREFIX, lease_routes))
        self._key_value_routes = key_value_routes

    def _route(self, request: Request) -> Endpoint:
        path = request.path
        methods = self._exact.get(path)
        if methods is None:
            for prefix, candidates in self._prefixed:
                if path.startswith(prefix):
                    methods = candidates
                    break
            else:
                if not self._key_value_routes and (
                    path in (KV_RANGE_PATH, TXN_PATH, WATCH_PATH) or path.startswith(KV_PREFIX)
                ):
                    raise NoRoute(NOT_KEY_VALUE_MESSAGE)
                raise NoRoute(f"no such path: {path}")
        method = "GET" if request.method == "HEAD" else request.method
        route = methods.get(method)
        if route is None:
            raise WrongMethod(f"{request.method} is not allowed here; use {', '.join(methods)}")
        return route

    async def handle(self, request: Request) -> Response | StreamResponse:
        server = self.server
        try:
            endpoint = self._route(request)
            authorization = request.authorization
            if endpoint.token_in_query and not authorization and "token" in request.query:
                authorization = f"Bearer {request.query['token']}"
            # Before the handler: a refused request parses no body and proposes nothing.
            refusal = self.access.check(endpoint.access, authorization)
            if refusal is not None:
                return _refused(refusal)
            return await endpoint.handler(request)
        except NotLeader as error:
            return self._not_leader(error.leader_id)
        except Timeout as error:
            return Response.error(504, "timeout", str(error))
        except CommandFailed as error:
            # Applied, and failed the same way on every replica: retrying cannot help.
            return Response.error(422, "command_failed", str(error), index=error.index)
        except RequestFailed as error:
            code = "storage_failed" if server.storage_failure else "no_leader"
            return Response.error(503, code, str(error))
        except NoLeader as error:  # (a follower's read the leader put off: retry)
            return Response.error(503, "no_leader", str(error))
        except BadRequest as error:
            return Response.error(400, "bad_request", str(error))
        except TooLarge as error:
            return Response.error(413, "too_large", str(error))
        except NoRoute as error:
            return Response.error(404, "not_found", str(error))
        except WrongMethod as error:
            return Response.error(405, "bad_request", str(error))
        except ProposalDropped as error:
            status = 400 if error.code == "bad_request" else 503
            return Response.error(status, error.code, str(error))

    def _not_leader(self, leader_id: int | None) -> Response:
        server = self.server
        if leader_id is None or leader_id == server.id:
            return Response.error(503, "no_leader", "no leader known; try again")
        address = server.leader_client_address(leader_id)
        return Response.error(
            421,
            "not_leader",
            leader=f"node{leader_id}",
            leader_id=leader_id,
            leader_url=f"{self.url_scheme}://{address}" if address else None,
        )

    async def _propose_write(self, command: Command) -> Response:
        """Propose a write and answer with its result. A failure after the entry entered the
        log says `"outcome": "unknown"`: the entry may still commit, so a client must not
        count that attempt as refused (docs/client.md)."""
        server = self.server
        # requests.propose() refuses at once, before proposing, only when storage has
        # failed; past that check every RequestFailed comes after the entry was appended.
        refused_before_proposing = server.storage_failure is not None
        try:
            result, index = await server.requests.propose(encode_command(command))
        except Timeout as error:
            return Response.error(504, "timeout", str(error), outcome="unknown")
        except RequestFailed as error:
            if refused_before_proposing:
                raise
            code = "storage_failed" if server.storage_failure else "no_leader"
            return Response.error(503, code, str(error), outcome="unknown")
        return self._write_response(result, index)

    def _write_response(self, result: Result, index: int) -> Response:
        if result.ok:
            answer: dict[str, Any] = {"ok": True, "leader": self.server.id, "index": index}
            if result.deleted is not None:
                answer["deleted"] = result.deleted
            if result.txn is not None:
                answer["succeeded"] = result.txn.succeeded
                answer["results"] = result.txn.results
            if result.lease is not None:
                answer["id"] = result.lease
                answer["ttl"] = result.ttl
            return Response.json(answer)
        if result.error == "lease_not_found":
            return Response.error(404, "lease_not_found", "no such lease", index=index)
        if result.error in ("lease_exists", "too_many_leases"):
            return Response.error(409, result.error, index=index)
        if result.error == "cas_failed":
            return Response.error(409, "cas_failed", current=result.current, index=index)
        if result.error == "not_found":
            return Response.error(404, "not_found", index=index)
        if result.error == "session_expired":
            # 409, not 410: the request conflicts with the cluster's state (its session
            # table) and the client resolves it by opening a new session; 410 would say the
            # key's URL is gone for good.
            return Response.error(409, "session_expired", SESSION_EXPIRED_MESSAGE, index=index)
        return Response.error(400, result.error or "bad_request", index=index)

    # --- handlers --------------------------------------------------------------------------
    async def put_key(self, request: Request) -> Response:
        key = key_of(request)
        body = body_of(request)
        value = body.get("value")
        if not isinstance(value, str):
            raise BadRequest("'value' must be a string")
        if len(value.encode("utf-8", errors="surrogatepass")) > self.value_bytes_max:
            raise TooLarge(f"values are at most {self.value_bytes_max} bytes")
        if_value = optional_string(body, "if_value")
        if_absent = optional_flag(body, "if_absent")
        lease = lease_of(body)
        client_id, seq, after_index = session_of(body)
        operation = "cas" if if_value is not None or if_absent else "put"
        command = Command(
            op=operation,
            key=key,
            value=value,
            if_value=if_value,
            if_absent=if_absent,
            lease=lease,
            client_id=client_id,
            seq=seq,
            after_index=after_index,
        )
        return await self._propose_write(command)

    async def delete_key(self, request: Request) -> Response:
        key = key_of(request)
        body = body_of(request, required=False)
        client_id, seq, after_index = session_of({**request.query, **body})
        command = Command(op="del", key=key, client_id=client_id, seq=seq, after_index=after_index)
        return await self._propose_write(command)

    async def get_key(self, request: Request) -> Response:
        key = key_of(request)
        consistency = consistency_of(request)
        record: KeyRecord | None
        record, index = await self.server.read_query(consistency, lambda store: store.record(key))
        if record is None:
            return Response.error(404, "not_found", key=key, index=index)
        return Response.json({**record.to_json(key), "index": index})

    async def get_range(self, request: Request) -> Response:
        query = request.query
        key_range = key_range_of(query) or KeyRange()
        limit = range_limit_of(query)
        keys_only = query_flag(query, "keys_only")
        after = after_of(query)
        consistency = consistency_of(request)
        page: RangePage
        page, index = await self.server.read_query(
            consistency, lambda store: store.range(key_range, after, limit, keys_only=keys_only)
        )
        return Response.json(range_answer(page, index, keys_only))

    async def delete_range(self, request: Request) -> Response:
        key_range = key_range_of(request.query)
        if key_range is None:
            # Deleting every key is never a default: a range must be named.
            raise BadRequest("name the range to delete: 'prefix', or 'start' and/or 'end'")
        body = body_of(request, required=False)
        client_id, seq, after_index = session_of({**request.query, **body})
        command = Command(
            op="delrange",
            key=key_range.start,
            end=key_range.end,
            client_id=client_id,
            seq=seq,
            after_index=after_index,
        )
        return await self._propose_write(command)

    async def post_txn(self, request: Request) -> Response:
        body = body_of(request)
        txn = transaction_of(body, self.value_bytes_max)
        client_id, seq, after_index = session_of(body)
        command = Command(
            op="txn", key="", txn=txn, client_id=client_id, seq=seq, after_index=after_index
        )
        return await self._propose_write(command)

    async def get_watch(self, request: Request) -> Response | StreamResponse:
        """The changes of a range after `from_index`, streamed from this node's applied
        state (any node: every replica applies the same changes in the same order)."""
        key_range, from_index, prev = watch_request_of(request.query)
        hub = self.server.watches
        output = StreamOutput()
        try:
            stream = hub.open(key_range, from_index, prev=prev, output=output)
        except Compacted as error:
            return Response.error(410, "compacted", str(error), oldest_index=error.oldest_index)
        except TooManyWatchers as error:
            return Response.error(503, "overloaded", f"{error}; try another node or later")
        except WatchHubClosed as error:
            return Response.error(503, "no_leader", f"{error}; watch on another node")
        return StreamResponse(
            stream,
            NDJSON_CONTENT_TYPE,
            output=output,
            unsent_bytes_max=hub.limits.buffer_bytes_max,
        )

    async def get_status(self, request: Request) -> Response:
        return Response.json(self.server.report.status())

    async def get_livez(self, request: Request) -> Response:
        # Nothing more than "the event loop serves": a liveness probe that failed for
        # cluster reasons (no leader, a lagging node) would restart healthy processes.
        return Response(200, LIVE_BODY)

    async def get_readyz(self, request: Request) -> Response:
        facts = self.server.report.health_facts()
        body = readiness(self.server.id, facts, self.ready_lag_entries_max)
        return Response.json(body, 200 if body["ok"] else 503)

    async def get_hash(self, request: Request) -> Response:
        index = number_of(request.query.get("index", ""))
        if index is None:
            raise BadRequest(f"'index' must be an integer from 0 to {NUMBER_MAX}")
        applied_hash = self.server.applied_hashes.get(index)
        if applied_hash is None:
            return Response.error(404, "not_found", index=index, message="hash not remembered")
        return Response.json({"index": index, "applied_hash": applied_hash})

    async def get_metrics(self, request: Request) -> Response:
        body = self.server.metrics.render()
        return Response(200, body, "text/plain; version=0.0.4; charset=utf-8")

    async def get_members(self, request: Request) -> Response:
        return Response.json(self.server.members.describe())

    async def post_member(self, request: Request) -> Response:
        body = body_of(request)
        member = body.get("id")
        address = body.get("address")
        if not isinstance(member, int) or number_of(member) is None or member == 0:
            raise BadRequest(f"'id' must be an integer from 1 to {NUMBER_MAX}")
        if not isinstance(address, str):
            raise BadRequest("'address' must be 'host:port'")
        return Response.json(await self.server.members.add(member, address))

    async def delete_member(self, request: Request) -> Response:
        member = number_of(request.path[len(MEMBERS_PREFIX) :])
        if not member:
            raise BadRequest(f"member ids are integers from 1 to {NUMBER_MAX}")
        return Response.json(await self.server.members.remove(member))

    async def post_transfer_leader(self, request: Request) -> Response:
        body = body_of(request)
        target = body.get("to")
        if not isinstance(target, int) or number_of(target) is None:
            raise BadRequest("'to' must be a node id")
        leader = await self.server.members.transfer_leadership(target)
        return Response.json({"ok": True, "leader": leader})

    async def get_snapshot(self, request: Request) -> Response:
        """A backup of the whole state machine (storage/backup_file.py), made by the leader
        after a read barrier; a follower answers `not_leader` like a write. An admin
        operation: once the client port has roles, it needs `admin`. The answer is one body
        (the server holds it in memory while it is sent), not a stream: the state machine
        lives in memory anyway, and a body of known length keeps the HTTP layer simple."""
        try:
            return Response(200, await self.server.backup(), BACKUP_CONTENT_TYPE)
        except BackupBusy as error:
            return Response.error(503, error.code, str(error))

    # --- the dashboard (server/dashboard.py) -------------------------------------------
    async def get_ui(self, request: Request) -> Response:
        return Response(
            200,
            _dashboard_page(),
            "text/html; charset=utf-8",
            ("Cache-Control: no-store", "Content-Security-Policy: " + _PAGE_POLICY),
        )

    async def get_ui_events(self, request: Request) -> Response | StreamResponse:
        stream = self.server.dashboard.open_stream()
        if stream is None:
            return Response.error(503, "overloaded", "too many dashboard viewers; try later")
        return StreamResponse(stream)


# The page may load nothing but itself and talk only to the node that served it.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
    " connect-src 'self'; img-src data:"
)
_page: bytes | None = None


def _dashboard_page() -> bytes:
    """The dashboard's HTML (package data), read once."""
    global _page
    if _page is None:
        _page = files("raftkv.server").joinpath("dashboard_page.html").read_bytes()
    return _page
