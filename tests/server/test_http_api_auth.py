"""Bearer-token authentication of the client API (SPEC §6, `--auth-tokens`): every route
against every role, the public health and metrics switch, refusals that cost nothing (no
body parsed, nothing proposed or read), and tokens that never reach a log or an answer."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from unittest import mock
from urllib.parse import parse_qsl

import pytest

from raftkv.kv import KVStore, Result
from raftkv.server import auth
from raftkv.server.auth import AccessPolicy, Identity, Role, TokenTable
from raftkv.server.health import HealthFacts
from raftkv.server.http_api import READ, ClientApi, Endpoint
from raftkv.server.http_server import HttpServer, Request

READ_TOKEN = "read-token-0123456789"
WRITE_TOKEN = "write-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
TOKENS = {Role.READ: READ_TOKEN, Role.WRITE: WRITE_TOKEN, Role.ADMIN: ADMIN_TOKEN}

T = TypeVar("T")


class RecordingServer:
    """The node as the API sees it (http_api.ApiBackend), answering every route at once and
    recording what reached the node: proposals, reads and membership work."""

    def __init__(self) -> None:
        self.id = 1
        self.storage_failure: str | None = None
        self.store = KVStore()
        self.work: list[str] = []
        self.requests = self
        self.members = self
        self.metrics = self
        self.report = self

    # Proposer
    async def propose(self, data: bytes) -> tuple[Any, int]:
        self.work.append("propose")
        index = len(self.work)
        result: Result = self.store.apply(index, data)
        return result, index

    # ClusterOperations
    def describe(self) -> dict[str, Any]:
        self.work.append("describe")
        return {"members": []}

    async def add(self, member: int, address: str) -> dict[str, Any]:
        self.work.append("add")
        return {"ok": True}

    async def remove(self, member: int) -> dict[str, Any]:
        self.work.append("remove")
        return {"ok": True}

    async def transfer_leadership(self, target: int, timeout_seconds: float | None = None) -> int:
        self.work.append("transfer")
        return target

    # MetricsPage
    def render(self) -> bytes:
        return b"raft_term 1\n"

    def leader_client_address(self, leader_id: int | None) -> str | None:
        return None

    async def read_query(
        self, consistency: str, query: Callable[[Any], T], *, leader_only: bool = False
    ) -> tuple[T, int]:
        self.work.append("read")
        return query(self.store), 1

    def status(self) -> dict[str, Any]:
        self.work.append("status")
        return {"id": 1}

    @property
    def applied_hashes(self) -> dict[int, str]:
        self.work.append("hash")
        return {5: "abc"}

    def health_facts(self) -> HealthFacts:
        return HealthFacts(1, None, True, False, 1, 1)

    async def backup(self) -> bytes:
        self.work.append("backup")
        return b"a backup"


def token_table() -> TokenTable:
    return TokenTable(
        (Identity(role.label, role), hashlib.sha256(token.encode()).digest())
        for role, token in TOKENS.items()
    )


def make_api(public: frozenset[str] = frozenset({auth.PUBLIC_HEALTH})) -> ClientApi:
    policy = AccessPolicy(token_table(), public)
    return ClientApi(RecordingServer(), value_bytes_max=1 << 20, access=policy)


def backend(api: ClientApi) -> RecordingServer:
    server = api.server
    assert isinstance(server, RecordingServer)
    return server


def call(
    api: ClientApi, method: str, path: str, authorization: str = "", body: object = None
) -> tuple[int, dict[str, Any], tuple[str, ...]]:
    raw = b"" if body is None else json.dumps(body).encode()
    path, _, query = path.partition("?")
    request = Request(method, path, dict(parse_qsl(query)), raw, True, authorization=authorization)
    response = asyncio.run(api.handle(request))
    payload = json.loads(response.body) if response.content_type == "application/json" else {}
    return response.status, payload, response.headers


def bearer(role: Role) -> str:
    return f"Bearer {TOKENS[role]}"


WRITE_BODY = {"value": "v", "client_id": "c", "seq": 1}
# (method, path, body, role needed), one of each route.
ROUTES = [
    ("GET", "/v1/kv/k", None, Role.READ),
    ("HEAD", "/v1/kv/k", None, Role.READ),
    ("GET", "/v1/status", None, Role.READ),
    ("GET", "/v1/hash?index=5", None, Role.READ),
    ("GET", "/v1/members", None, Role.READ),
    ("PUT", "/v1/kv/k", WRITE_BODY, Role.WRITE),
    ("PUT", "/v1/kv/k", {**WRITE_BODY, "if_value": "v"}, Role.WRITE),  # cas
    ("DELETE", "/v1/kv/k", None, Role.WRITE),
    ("GET", "/v1/kv?prefix=k", None, Role.READ),  # a range
    ("DELETE", "/v1/kv?prefix=k&client_id=c&seq=1", None, Role.WRITE),
    (
        "POST",
        "/v1/txn",
        {"success": [{"op": "get", "key": "k"}], "client_id": "c", "seq": 1},
        Role.WRITE,
    ),
    ("POST", "/v1/members", {"id": 4, "address": "127.0.0.1:9004"}, Role.ADMIN),
    ("DELETE", "/v1/members/4", None, Role.ADMIN),
    ("POST", "/v1/transfer-leader", {"to": 2}, Role.ADMIN),
    ("GET", "/v1/snapshot", None, Role.ADMIN),
]


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
@pytest.mark.parametrize("role", list(Role))
def test_each_role_against_each_route(
    method: str, path: str, body: object, needed: Role, role: Role
) -> None:
    api = make_api()
    status, answer, _ = call(api, method, path, bearer(role), body)
    if role >= needed:
        assert status not in (401, 403), answer
        assert backend(api).work  # served: it reached the node
        return
    assert (status, answer["error"], answer["role"]) == (403, "forbidden", needed.label)
    assert needed.label in answer["message"] and repr(role.label) in answer["message"]
    assert backend(api).work == []  # nothing proposed, read or changed


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [
        "",  # no header
        "Bearer not-a-configured-token",
        "Bearer",  # no token
        "Bearer ",
        f"Basic {ADMIN_TOKEN}",  # another scheme, however good the secret
        f"Bearer {ADMIN_TOKEN} extra",
        f"Bearer {ADMIN_TOKEN}, Bearer {ADMIN_TOKEN}",  # the header twice, as joined
        f"Bearer {ADMIN_TOKEN[:-1]}",  # a prefix
        f"Bearer {ADMIN_TOKEN}x",
    ],
)
def test_without_a_valid_bearer_token_every_route_is_401(
    method: str, path: str, body: object, needed: Role, authorization: str
) -> None:
    api = make_api()
    status, answer, headers = call(api, method, path, authorization, body)
    assert (status, answer["error"]) == (401, "unauthenticated"), answer
    assert any(line.startswith("WWW-Authenticate: Bearer") for line in headers)
    assert ADMIN_TOKEN not in json.dumps(answer)
    assert backend(api).work == []


def test_the_scheme_is_case_insensitive() -> None:
    api = make_api()
    assert call(api, "GET", "/v1/status", f"bearer {READ_TOKEN}")[0] == 200
    assert call(api, "GET", "/v1/status", f"BEARER  {READ_TOKEN} ")[0] == 200


def test_a_refused_write_parses_no_body() -> None:
    api = make_api()
    # A body-less PUT would be a 400 had the body been looked at.
    assert call(api, "PUT", "/v1/kv/k", bearer(Role.READ), body=None)[0] == 403
    assert call(api, "PUT", "/v1/kv/k", "", body=None)[0] == 401


@pytest.mark.parametrize(
    ("public", "health_open", "metrics_open"),
    [
        (frozenset({auth.PUBLIC_HEALTH}), True, False),  # the default
        (frozenset({auth.PUBLIC_HEALTH, auth.PUBLIC_METRICS}), True, True),
        (frozenset({auth.PUBLIC_METRICS}), False, True),
        (frozenset(), False, False),
    ],
)
def test_health_and_metrics_are_public_as_configured(
    public: frozenset[str], health_open: bool, metrics_open: bool
) -> None:
    api = make_api(public)
    for path, is_open in (("/livez", health_open), ("/readyz", health_open)):
        assert call(api, "GET", path)[0] == (200 if is_open else 401), path
        assert call(api, "GET", path, bearer(Role.READ))[0] == 200
    status, _, _ = call(api, "GET", "/metrics")
    assert status == (200 if metrics_open else 401)
    assert call(api, "GET", "/metrics", bearer(Role.READ))[0] == 200


def test_without_tokens_everything_is_served_as_before() -> None:
    api = ClientApi(RecordingServer(), value_bytes_max=1 << 20)
    assert not api.access.enabled
    for method, path, body, _ in ROUTES:
        status, answer, _ = call(api, method, path, "", body)
        assert status not in (401, 403), (method, path, answer)
    assert call(api, "GET", "/metrics")[0] == 200


def test_refusals_are_counted_by_reason() -> None:
    api = make_api()
    call(api, "GET", "/v1/status")
    call(api, "GET", "/v1/status", "Basic x")
    call(api, "GET", "/v1/status", "Bearer wrong-token-0123456789")
    call(api, "GET", "/v1/status", "Bearer wrong-token-0123456789")
    call(api, "POST", "/v1/transfer-leader", bearer(Role.WRITE), {"to": 2})
    call(api, "GET", "/v1/status", bearer(Role.READ))  # served: not counted
    assert api.access.failures == {"missing": 1, "malformed": 1, "invalid": 2, "forbidden": 1}


def test_a_route_without_a_declared_access_is_refused_to_everyone() -> None:
    policy = AccessPolicy(token_table())
    refusal = policy.check(None, bearer(Role.ADMIN))
    assert refusal is not None and refusal.status == 403
    assert AccessPolicy().check(None, "") is None  # auth off: nothing is checked


def test_tokens_are_compared_with_compare_digest_against_every_entry() -> None:
    table = token_table()
    with mock.patch.object(auth.hmac, "compare_digest", wraps=hmac.compare_digest) as compare:
        assert table.identify(READ_TOKEN) == Identity("read", Role.READ)  # the first entry
    assert compare.call_count == len(TOKENS)  # no early exit on a match
    with mock.patch.object(auth.hmac, "compare_digest", wraps=hmac.compare_digest) as compare:
        assert table.identify("nope-nope-nope-nope") is None
    assert compare.call_count == len(TOKENS)


def test_the_token_is_never_logged_nor_in_the_request_repr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over a real HttpServer: a handler that fails logs the request, never its header."""

    async def main() -> list[bytes]:
        api = make_api()

        async def failing(request: Request) -> Any:
            logging.getLogger("raftkv.test").info("serving %r", request)
            raise RuntimeError("boom")

        api._exact["/v1/status"]["GET"] = Endpoint(failing, READ)
        server = HttpServer(api.handle, body_bytes_max=api.body_bytes_max)
        await server.start("127.0.0.1", 0)
        answers = []
        try:
            for authorization in (bearer(Role.READ), "Bearer secret-guess-0123456789"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(
                    b"GET /v1/status HTTP/1.1\r\nHost: t\r\nAuthorization: %s\r\n"
                    b"Connection: close\r\n\r\n" % authorization.encode()
                )
                answers.append(await asyncio.wait_for(reader.read(), 10))
                writer.close()
        finally:
            await server.close(grace_seconds=1.0)
        return answers

    with caplog.at_level(logging.DEBUG):
        answers = asyncio.run(main())
    assert answers[0].startswith(b"HTTP/1.1 500")  # served, and failed: logged
    assert answers[1].startswith(b"HTTP/1.1 401")
    assert b"WWW-Authenticate: Bearer" in answers[1]
    text = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "serving Request(GET /v1/status" in text
    for secret in (READ_TOKEN, "secret-guess-0123456789"):
        assert secret not in text
        assert all(secret.encode() not in answer for answer in answers)
