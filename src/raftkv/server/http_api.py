"""The client HTTP API (SPEC §3) on aiohttp: every request validated, every error a JSON body
`{"error": CODE, ...}` with a fitting status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from raftkv.errors import ClientError, NotLeader, ProposalDropped, Timeout
from raftkv.kv import Command, Result, encode_command
from raftkv.server.options import KEY_BYTES_MAX
from raftkv.server.requests import RequestFailed

if TYPE_CHECKING:
    from raftkv.server.runtime import RaftServer

logger = logging.getLogger("raftkv.http")

# Room for the JSON around a maximal value (quotes, escapes, the other fields).
BODY_OVERHEAD_BYTES = 64 << 10
CONSISTENCY_LEVELS = ("linearizable", "lease", "stale")
SERVER_KEY: web.AppKey[RaftServer] = web.AppKey("server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ClientError):
    code = "bad_request"


class TooLarge(ClientError):
    code = "too_large"


_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def json_response(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=_json_encode(payload), status=status, content_type="application/json")


def error_response(code: str, status: int, **extra: Any) -> web.Response:
    return json_response({"error": code, **extra}, status)


def _not_leader_response(server: RaftServer, leader_id: int | None) -> web.Response:
    if leader_id is None or leader_id == server.id:
        return error_response("no_leader", 503, message="no leader known; try again")
    address = server.leader_client_address(leader_id)
    return error_response(
        "not_leader",
        421,
        leader=f"node{leader_id}",
        leader_id=leader_id,
        leader_url=f"http://{address}" if address else None,
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    try:
        return await handler(request)
    except NotLeader as error:
        return _not_leader_response(server, error.leader_id)
    except Timeout as error:
        return error_response("timeout", 504, message=str(error))
    except RequestFailed as error:
        code = "storage_failed" if server.storage_failure else "no_leader"
        return error_response(code, 503, message=str(error))
    except BadRequest as error:
        return error_response("bad_request", 400, message=str(error))
    except TooLarge as error:
        return error_response("too_large", 413, message=str(error))
    except ProposalDropped as error:
        status = 400 if error.code == "bad_request" else 503
        return error_response(error.code, status, message=str(error))
    except web.HTTPRequestEntityTooLarge:
        return error_response("too_large", 413, message="request body too large")
    except web.HTTPException as error:
        code = "not_found" if error.status == 404 else "bad_request"
        return error_response(code, error.status, message=error.reason)
    except Exception:
        logger.exception("internal error serving %s %s", request.method, request.path)
        return error_response("internal", 500, message="internal error; see the node's log")


# --- validation ---------------------------------------------------------------------------
def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    size = len(key.encode("utf-8", errors="surrogatepass"))
    if not key or size > KEY_BYTES_MAX:
        raise BadRequest(f"keys are 1 to {KEY_BYTES_MAX} bytes of UTF-8")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("keys are UTF-8") from None
    return key


async def _body(request: web.Request, required: bool = True) -> dict[str, Any]:
    raw = await request.read()
    if not raw and not required:
        return {}
    try:
        body = _json_decode(raw)
    except msgspec.DecodeError as error:
        raise BadRequest(f"malformed JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    return value


def _optional_flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name!r} must be true or false")
    return value


def _session(source: dict[str, Any]) -> tuple[str, int]:
    client_id = source.get("client_id") or ""
    seq = source.get("seq", 0)
    if isinstance(seq, str) and seq.isdigit():
        seq = int(seq)
    if not isinstance(client_id, str) or len(client_id) > 128:
        raise BadRequest("'client_id' must be a string of at most 128 characters")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadRequest("'seq' must be a non-negative integer")
    if client_id and seq == 0:
        raise BadRequest("a 'client_id' needs a 'seq' of 1 or more")
    return client_id, seq


def _write_response(server: RaftServer, result: Result, index: int) -> web.Response:
    if result.ok:
        return json_response({"ok": True, "leader": server.id, "index": index})
    if result.error == "cas_failed":
        return error_response("cas_failed", 409, current=result.current, index=index)
    if result.error == "not_found":
        return error_response("not_found", 404, index=index)
    return error_response(result.error or "bad_request", 400, index=index)


# --- handlers ------------------------------------------------------------------------------
async def put_key(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    key = _key(request)
    body = await _body(request)
    value = body.get("value")
    if not isinstance(value, str):
        raise BadRequest("'value' must be a string")
    if len(value.encode("utf-8", errors="surrogatepass")) > server.options.value_bytes_max:
        raise TooLarge(f"values are at most {server.options.value_bytes_max} bytes")
    if_value = _optional_string(body, "if_value")
    if_absent = _optional_flag(body, "if_absent")
    client_id, seq = _session(body)
    operation = "cas" if if_value is not None or if_absent else "put"
    command = Command(
        op=operation,
        key=key,
        value=value,
        if_value=if_value,
        if_absent=if_absent,
        client_id=client_id,
        seq=seq,
    )
    result, index = await server.requests.propose(encode_command(command))
    return _write_response(server, result, index)


async def delete_key(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    key = _key(request)
    body = await _body(request, required=False)
    client_id, seq = _session({**request.query, **body})
    command = Command(op="del", key=key, client_id=client_id, seq=seq)
    result, index = await server.requests.propose(encode_command(command))
    return _write_response(server, result, index)


async def get_key(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    key = _key(request)
    consistency = request.query.get("consistency", "linearizable")
    if consistency not in CONSISTENCY_LEVELS:
        raise BadRequest(f"consistency is one of {', '.join(CONSISTENCY_LEVELS)}")
    value, index = await server.read(key, consistency)
    if value is None:
        return error_response("not_found", 404, key=key, index=index)
    return json_response({"key": key, "value": value, "index": index})


async def get_status(request: web.Request) -> web.Response:
    return json_response(request.app[SERVER_KEY].status())


async def get_hash(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    text = request.query.get("index", "")
    if not text.isdigit():
        raise BadRequest("'index' must be a non-negative integer")
    index = int(text)
    applied_hash = server.applied_hashes.get(index)
    if applied_hash is None:
        return error_response("not_found", 404, index=index, message="hash not remembered")
    return json_response({"index": index, "applied_hash": applied_hash})


async def get_metrics(request: web.Request) -> web.Response:
    body = request.app[SERVER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def get_members(request: web.Request) -> web.Response:
    return json_response(request.app[SERVER_KEY].members.describe())


async def post_member(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    body = await _body(request)
    member = body.get("id")
    address = body.get("address")
    if not isinstance(member, int) or isinstance(member, bool) or member <= 0:
        raise BadRequest("'id' must be a positive integer")
    if not isinstance(address, str):
        raise BadRequest("'address' must be 'host:port'")
    return json_response(await server.members.add(member, address))


async def delete_member(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    text = request.match_info["member"]
    if not text.isdigit():
        raise BadRequest("member ids are positive integers")
    return json_response(await server.members.remove(int(text)))


async def post_transfer_leader(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    body = await _body(request)
    target = body.get("to")
    if not isinstance(target, int) or isinstance(target, bool):
        raise BadRequest("'to' must be a node id")
    leader = await server.members.transfer_leadership(target)
    return json_response({"ok": True, "leader": leader})


def build_app(server: RaftServer) -> web.Application:
    app = web.Application(
        client_max_size=server.options.value_bytes_max + BODY_OVERHEAD_BYTES,
        middlewares=[errors_as_json],
    )
    app[SERVER_KEY] = server
    app.router.add_put("/v1/kv/{key:.+}", put_key)
    app.router.add_get("/v1/kv/{key:.+}", get_key)
    app.router.add_delete("/v1/kv/{key:.+}", delete_key)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/hash", get_hash)
    app.router.add_get("/v1/members", get_members)
    app.router.add_post("/v1/members", post_member)
    app.router.add_delete("/v1/members/{member}", delete_member)
    app.router.add_post("/v1/transfer-leader", post_transfer_leader)
    app.router.add_get("/metrics", get_metrics)
    return app
