"""What the client returns: small typed views of the server's SPEC §3 answers.

Each keeps the answer it was decoded from in `raw`, so `raft-client --json` can print the
server's own JSON (with any fields this client does not know) rather than a re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from raftkv import errors
from raftkv.client.errors import BadResponse


class WriteResult(msgspec.Struct, frozen=True, kw_only=True):
    """A write the leader committed: who led and the log index it took."""

    leader: int
    index: int
    deleted: int | None = None  # a delete range: how many keys it deleted
    raw: dict[str, Any] = {}


class ReadResult(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    value: str
    index: int
    # The key's revisions (SPEC §6); None from a server older than them.
    create_index: int | None = None
    mod_index: int | None = None
    version: int | None = None
    lease: int | None = None  # the key's lease (SPEC §6, "Leases"); None: none
    raw: dict[str, Any] = {}


class KeyValue(msgspec.Struct, frozen=True, kw_only=True):
    """A key of a range; `value` is None when the range was asked `keys_only`."""

    key: str
    value: str | None = None
    create_index: int
    mod_index: int
    version: int
    lease: int | None = None  # the key's lease; None: none


class RangeResult(msgspec.Struct, frozen=True, kw_only=True):
    """A page of a range (SPEC §6, "Ranges"): `count` is the whole range's size; when
    `more`, `next` is the token the following page continues after."""

    kvs: list[KeyValue]
    count: int
    more: bool
    next: str | None = None
    index: int
    raw: dict[str, Any] = {}


class TxnResult(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction the leader committed (SPEC §6, "Transactions"): whether its compares
    held (the success branch ran) and each operation's answer, in order."""

    succeeded: bool
    results: list[dict[str, Any]]
    leader: int
    index: int
    raw: dict[str, Any] = {}


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One node's `GET /v1/status`; fields a node may leave out default to None."""

    id: int
    role: str
    term: int
    leader: int | None = None
    commit_index: int
    last_applied: int
    last_log_index: int
    last_log_term: int | None = None
    snapshot_index: int | None = None
    log_entries: int | None = None
    applied_hash: str | None = None
    cluster_id: str | int | None = None
    members: Any = None
    raw: dict[str, Any] = {}


@dataclass(frozen=True)
class StatusReport:
    """A node of the cluster map and what it said: its status, or why it could not."""

    node_id: int
    address: tuple[str, int]
    status: NodeStatus | None
    error: errors.ClientError | None = None

    @property
    def reachable(self) -> bool:
        return self.status is not None


class Member(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    role: str  # "voter" | "learner"
    address: str
    client_address: str | None = None


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    members: list[Member]
    leader: int | None = None
    raw: dict[str, Any] = {}


class AdminResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a membership change or leadership transfer."""

    leader: int | None = None
    index: int | None = None
    raw: dict[str, Any] = {}


ResultT = TypeVar(
    "ResultT",
    WriteResult,
    ReadResult,
    RangeResult,
    TxnResult,
    NodeStatus,
    Membership,
    AdminResult,
)


def decode_result(payload: dict[str, Any], result_type: type[ResultT]) -> ResultT:
    """Validate an answer against its type; a malformed one raises BadResponse."""
    try:
        result = msgspec.convert(payload, result_type)
    except msgspec.ValidationError as error:
        raise BadResponse(
            f"unexpected answer: {error}", {"message": f"unexpected answer: {error}"}
        ) from None
    return msgspec.structs.replace(result, raw=payload)
