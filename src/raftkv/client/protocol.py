"""The HTTP requests of SPEC §3 and the reading of their answers, shared by both clients."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NoReturn, Protocol
from urllib.parse import quote, urlencode

import msgspec

from raftkv import errors
from raftkv.client.errors import BadRequest, BadResponse, NoLeader, Timeout, error_from_answer
from raftkv.client.limits import BACKUP_BYTES_MAX, RESPONSE_BYTES_MAX
from raftkv.storage.backup_file import Backup, BadBackup, decode_backup, write_backup_file

CONSISTENCY_LEVELS = ("linearizable", "lease", "stale")
# Where `read_answer` puts the body of a binary success answer.
BINARY_BODY = "body"
JSON_CONTENT_TYPE = "application/json"

_HTTP_SERVICE_UNAVAILABLE = 503
_HTTP_GATEWAY_TIMEOUT = 504


class WriteSession(Protocol):
    """What a write request carries of its session (sessions.PendingWrite)."""

    @property
    def client_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def after_index(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # percent-encoded, with its query string
    body: bytes | None = None
    # Whether a success means the node that answered leads (or names the leader): stale reads
    # and node-local queries are answered by any node and teach nothing about the leader.
    leader_only: bool = True
    # A success answer is raw bytes, not JSON (a backup); errors are still JSON objects.
    binary: bool = False
    response_bytes_max: int = RESPONSE_BYTES_MAX


def checked_token(token: str | None) -> str | None:
    """A bearer token as the clients take it: None (send none) or printable ASCII without
    spaces, as an HTTP header carries it. The error never quotes the token."""
    if token is None:
        return None
    if not token or not all("!" <= character <= "~" for character in token):
        raise ValueError("a token is a non-empty string of printable ASCII without spaces")
    return token


def headers_for(request: Request, token: str | None) -> dict[str, str]:
    """The headers of `request`: JSON, and the bearer token when the client has one."""
    headers = {"Accept": JSON_CONTENT_TYPE}
    if request.body is not None:
        headers["Content-Type"] = JSON_CONTENT_TYPE
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _kv_path(key: str) -> str:
    if not key:
        raise BadRequest("the key is empty", {"message": "the key is empty"})
    # Keys may hold "/", "?", "%" and any UTF-8: the whole key is one escaped path segment.
    return "/v1/kv/" + quote(key, safe="")


def _json(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body)


json_body = _json  # for the requests of other modules (leases.py)


def put_request(
    key: str,
    value: str,
    write: WriteSession,
    *,
    if_value: str | None = None,
    if_absent: bool = False,
    lease: int | None = None,
) -> Request:
    body: dict[str, Any] = {"value": value}
    if if_value is not None:
        body["if_value"] = if_value
    if if_absent:
        body["if_absent"] = True
    if lease is not None:
        body["lease"] = lease  # attach the key to the lease (SPEC §6, "Leases")
    body["client_id"] = write.client_id
    body["seq"] = write.seq
    body["after_index"] = write.after_index
    return Request("PUT", _kv_path(key), _json(body))


def get_request(key: str, consistency: str) -> Request:
    _checked_consistency(consistency)
    path = _kv_path(key) + "?" + urlencode({"consistency": consistency})
    # Any member answers a read at every consistency (followers with the leader's read
    # index, SPEC §6 "Reads on followers"): an answer says nothing of who leads.
    return Request("GET", path, leader_only=False)


@dataclass(frozen=True)
class KeyRangeQuery:
    """Which keys a range names (SPEC §6, "Ranges"): `prefix`, or `start` (inclusive) and/or
    `end` (exclusive); neither: every key (reads only)."""

    prefix: str | None = None
    start: str | None = None
    end: str | None = None

    def parameters(self) -> dict[str, str]:
        if self.prefix is not None and (self.start is not None or self.end is not None):
            _refuse("give prefix or start/end, not both")
        named = {"prefix": self.prefix, "start": self.start, "end": self.end}
        for name, bound in named.items():
            if bound == "":
                _refuse(f"{name} is a key: it cannot be empty")
        return {name: bound for name, bound in named.items() if bound is not None}


def _refuse(message: str) -> NoReturn:
    raise BadRequest(message, {"message": message})


def _checked_consistency(consistency: str) -> None:
    if consistency not in CONSISTENCY_LEVELS:
        _refuse(f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}")


checked_consistency = _checked_consistency  # for the requests of other modules (leases.py)


def range_request(
    keys: KeyRangeQuery,
    consistency: str,
    *,
    limit: int | None = None,
    keys_only: bool = False,
    after: str | None = None,
) -> Request:
    _checked_consistency(consistency)
    query = {**keys.parameters(), "consistency": consistency}
    if limit is not None:
        query["limit"] = str(limit)
    if keys_only:
        query["keys_only"] = "true"
    if after is not None:
        query["after"] = after
    return Request("GET", "/v1/kv?" + urlencode(query), leader_only=False)  # (as get_request)


def delete_range_request(keys: KeyRangeQuery, write: WriteSession) -> Request:
    selection = keys.parameters()
    if not selection:
        _refuse("name the range to delete: prefix, or start and/or end")
    query = {
        **selection,
        "client_id": write.client_id,
        "seq": str(write.seq),
        "after_index": str(write.after_index),
    }
    return Request("DELETE", "/v1/kv?" + urlencode(query))


def txn_request(
    compare: Sequence[Mapping[str, Any]],
    success: Sequence[Mapping[str, Any]],
    failure: Sequence[Mapping[str, Any]],
    write: WriteSession,
) -> Request:
    """`POST /v1/txn`: the parts as SPEC §6 writes them (the node checks them)."""
    body = {
        "compare": list(compare),
        "success": list(success),
        "failure": list(failure),
        "client_id": write.client_id,
        "seq": write.seq,
        "after_index": write.after_index,
    }
    return Request("POST", "/v1/txn", _json(body))


def delete_request(key: str, write: WriteSession) -> Request:
    query = {"client_id": write.client_id, "seq": write.seq, "after_index": write.after_index}
    return Request("DELETE", _kv_path(key) + "?" + urlencode(query))


def status_request() -> Request:
    return Request("GET", "/v1/status", leader_only=False)


def hash_request(index: int) -> Request:
    return Request("GET", "/v1/hash?" + urlencode({"index": index}), leader_only=False)


def livez_request() -> Request:
    return Request("GET", "/livez", leader_only=False)


def readyz_request() -> Request:
    return Request("GET", "/readyz", leader_only=False)


def members_request() -> Request:
    return Request("GET", "/v1/members")


def add_member_request(node_id: int, address: str) -> Request:
    return Request("POST", "/v1/members", _json({"id": node_id, "address": address}))


def remove_member_request(node_id: int) -> Request:
    return Request("DELETE", f"/v1/members/{node_id}")


def transfer_leader_request(node_id: int) -> Request:
    return Request("POST", "/v1/transfer-leader", _json({"to": node_id}))


def snapshot_request() -> Request:
    """`GET /v1/snapshot`: a backup file, from the leader only (followers redirect)."""
    return Request("GET", "/v1/snapshot", binary=True, response_bytes_max=BACKUP_BYTES_MAX)


# What msgspec raises for a body that is not JSON: a string that is not UTF-8 and nesting
# past the recursion limit are not DecodeErrors.
_NOT_JSON = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def read_answer(status: int, body: bytes, *, binary: bool = False) -> dict[str, Any]:
    """The JSON object of a 2xx answer (`{BINARY_BODY: body}` for a `binary` request); any
    other answer raises its client error."""
    if binary and 200 <= status < 300:
        return {BINARY_BODY: body}
    try:
        payload = msgspec.json.decode(body)
    except _NOT_JSON:
        payload = None
    if not isinstance(payload, dict):
        # Not our server's JSON: perhaps a proxy in front of a restarting node. Its 503 and
        # 504 still mean "try again"; anything else is an answer this client cannot read.
        # Nor can it say whether a write went through: its outcome is unknown.
        message = f"HTTP {status} without a JSON object"
        if status == _HTTP_SERVICE_UNAVAILABLE:
            raise NoLeader(message, {"message": message, "outcome": "unknown"}, status)
        if status == _HTTP_GATEWAY_TIMEOUT:
            raise Timeout(message, {"message": message, "outcome": "unknown"}, status)
        raise BadResponse(message, {"message": message, "status": status}, status)
    if 200 <= status < 300:
        return payload
    raise error_from_answer(status, payload)


def read_backup(payload: dict[str, Any]) -> Backup:
    """The checked backup of a `snapshot_request` answer; `BadResponse` if it is damaged."""
    try:
        return decode_backup(payload[BINARY_BODY])
    except BadBackup as error:
        message = f"the backup the node sent is unusable: {error}"
        raise BadResponse(message, {"message": message}) from None


def store_backup(payload: dict[str, Any], destination: str | os.PathLike[str] | BinaryIO) -> Backup:
    """Check a `snapshot_request` answer and store it (`write_backup_file`): nothing is
    written, and a path is left as it was, when it is damaged (`BadResponse`)."""
    try:
        return write_backup_file(destination, payload[BINARY_BODY])
    except BadBackup as error:
        message = f"the backup the node sent is unusable: {error}"
        raise BadResponse(message, {"message": message}) from None


def answered_leader(payload: dict[str, Any], node_id: int, request: Request) -> int | None:
    """The leader an answer reveals: the one it names, else the node that answered."""
    leader = payload.get("leader")
    if isinstance(leader, int) and not isinstance(leader, bool):
        return leader
    return node_id if request.leader_only else None


# --- health (SPEC §6: /livez and /readyz) -----------------------------------------------------
_CHECK_PASSED = "ok"


@dataclass(frozen=True)
class NodeHealth:
    """One node's `GET /livez` and `GET /readyz`: `live` when /livez answered 200, `ready`
    when /readyz did. `checks`: each readiness check, "ok" or why it fails, as the node
    said (empty when /readyz could not be read); `readiness`: the /readyz body as sent;
    `error`: why /livez or /readyz could not be asked or read (an unreachable node is
    neither live nor ready)."""

    node_id: int
    address: tuple[str, int]
    live: bool
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)
    readiness: dict[str, Any] | None = None
    error: errors.ClientError | None = None

    @property
    def problems(self) -> list[str]:
        """Why the node is not ready: each failing check in the node's words, or the
        error that kept it from answering. Empty when it is ready."""
        if self.ready:
            return []
        failing = [reason for reason in self.checks.values() if reason != _CHECK_PASSED]
        if self.error is not None:
            failing.append(str(self.error))
        return failing or ["not ready"]

    def summary(self) -> str:
        """`live, ready`, `live, not ready: leader unknown, 120 entries behind` or
        `not live: <why>`."""
        if not self.live:
            return f"not live: {'; '.join(self.problems)}"
        if self.ready:
            return "live, ready"
        return f"live, not ready: {', '.join(self.problems)}"


def not_live(node_id: int, address: tuple[str, int], error: errors.ClientError) -> NodeHealth:
    """A node whose /livez did not answer 200."""
    return NodeHealth(node_id, address, live=False, ready=False, error=error)


def read_readiness(node_id: int, address: tuple[str, int], status: int, body: bytes) -> NodeHealth:
    """A live node's health from its /readyz answer: 200 ready, 503 not ready, each with
    `{"ok": bool, "checks": {name: "ok" | why}}`. Any other answer raises its error."""
    payload: Any = None
    if status == _HTTP_SERVICE_UNAVAILABLE:
        try:
            payload = msgspec.json.decode(body)
        except _NOT_JSON:
            payload = None
    if not (isinstance(payload, dict) and "checks" in payload):
        payload = read_answer(status, body)  # a 2xx object, or its error raised
    checks = payload.get("checks")
    ok = payload.get("ok")
    if (
        not isinstance(ok, bool)
        or not isinstance(checks, dict)
        or not all(isinstance(reason, str) for reason in checks.values())
    ):
        message = f"node {node_id} answered /readyz without ok and checks"
        raise BadResponse(message, {"node": node_id, "message": message})
    ready = ok and 200 <= status < 300
    return NodeHealth(node_id, address, live=True, ready=ready, checks=checks, readiness=payload)
