"""Client errors: SPEC §3 error codes as exceptions, each carrying the answer that caused it.

Every class derives from `raftkv.errors.ClientError`, and the ones the server core also knows
(`NotLeader`, `NoLeader`, `Timeout`) from the matching `raftkv.errors` class, so code that
catches the root kinds catches these too. `payload` is the JSON error object (`{"error":
CODE, ...}`) exactly as the server sent it, or as the client made it for failures of its own
(an unreachable node, the overall timeout); `status` is the HTTP status when a node answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raftkv import errors


class ErrorDetail:
    """The part every client error shares: its code, JSON payload and HTTP status."""

    code: str
    payload: dict[str, Any]
    status: int | None

    def _record(self, payload: dict[str, Any] | None, status: int | None) -> None:
        # The code goes first so the JSON line reads `{"error": CODE, ...}`; a payload that
        # names another code (one this client does not know) keeps it.
        merged: dict[str, Any] = {"error": self.code}
        merged.update(payload or {})
        self.code = str(merged["error"])
        self.payload = merged
        self.status = status


class RequestError(ErrorDetail, errors.ClientError):
    """A failed request; the class for codes without a class of their own."""

    def __init__(
        self, message: str, payload: dict[str, Any] | None = None, status: int | None = None
    ) -> None:
        errors.ClientError.__init__(self, message)
        self._record(payload, status)


class NotLeader(ErrorDetail, errors.NotLeader):
    """The node asked is not the leader; `leader_id` is its hint (None when it knows none)."""

    def __init__(
        self,
        leader_id: int | None,
        payload: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        errors.NotLeader.__init__(self, leader_id)
        self._record(payload, status)

    @property
    def leader_name(self) -> str | None:
        """The leader as SPEC §1 prints it: `"node1"`, or None when unknown."""
        name = self.payload.get("leader")
        if isinstance(name, str):
            return name
        return None if self.leader_id is None else f"node{self.leader_id}"

    @property
    def leader_url(self) -> str | None:
        url = self.payload.get("leader_url")
        return url if isinstance(url, str) else None


class NoLeader(RequestError, errors.NoLeader):
    code = "no_leader"


class Timeout(RequestError, errors.Timeout):
    """No answer in time: the server's 504, or the client's overall timeout expiring."""

    code = "timeout"


class Unreachable(Timeout):
    """The connection failed (refused, reset, timed out) before a whole answer arrived.

    `request_sent` is False only when the connection was never made, so the node cannot
    have seen the request.
    """

    code = "unreachable"

    def __init__(
        self,
        message: str,
        payload: dict[str, Any] | None = None,
        status: int | None = None,
        *,
        request_sent: bool = True,
    ) -> None:
        super().__init__(message, payload, status)
        self.request_sent = request_sent


class OutcomeUnknown(Timeout):
    """A write ended without a known outcome: an attempt of it got no answer and it may have
    been applied (or may still be). `payload["last_error"]` is the last failure. A `Timeout`,
    so code that treats a timed-out write as possibly applied treats this alike."""

    code = "outcome_unknown"


class SessionExpired(RequestError):
    """The cluster no longer remembers the client's session (SPEC §6): this attempt was not
    applied, but an earlier one of the same write may have been. The clients never raise it
    to their caller: they start a new session, and resend the write when no attempt of it
    may have been applied, else raise `OutcomeUnknown`."""

    code = "session_expired"


class NotFound(RequestError):
    code = "not_found"


class LeaseNotFound(NotFound):
    """No such lease (SPEC §6, "Leases"): it expired, was revoked, or never was."""

    code = "lease_not_found"


class CasFailed(RequestError):
    code = "cas_failed"

    @property
    def current(self) -> str | None:
        """The value found instead of the expected one (None: the key was absent)."""
        current = self.payload.get("current")
        return current if isinstance(current, str) else None


class BadRequest(RequestError):
    code = "bad_request"


class TooLarge(RequestError):
    code = "too_large"


class StorageFailed(RequestError):
    code = "storage_failed"


class Overloaded(RequestError):
    """The node refused the connection: it serves as many clients as it allows."""

    code = "overloaded"


class Unauthenticated(RequestError):
    """401: the node asks for a bearer token and got none, or one it does not know. Never
    retried: another node or a later attempt would refuse it alike."""

    code = "unauthenticated"


class Forbidden(RequestError):
    """403: the token is valid but its role may not do this; `role` is the one needed."""

    code = "forbidden"

    @property
    def role(self) -> str | None:
        role = self.payload.get("role")
        return role if isinstance(role, str) else None


class WatchCompacted(RequestError):
    """410: the node no longer holds the changes after the index a watch asked for (a
    snapshot or its history's bound dropped them); `oldest_index` is the oldest index a
    watch may start from there."""

    code = "compacted"

    @property
    def oldest_index(self) -> int | None:
        oldest = self.payload.get("oldest_index")
        return oldest if isinstance(oldest, int) and not isinstance(oldest, bool) else None


class BadResponse(RequestError):
    """The answer was not the JSON object SPEC §3 promises (wrong server, proxy page...)."""

    code = "bad_response"


class CorruptLog(RequestError):
    """A node reports a damaged log (exit 4)."""

    code = "corrupt_log"


class Inconsistent(RequestError):
    """`check` found nodes whose applied state differs at the same index (exit 4)."""

    code = "inconsistent"


class CheckIncomplete(RequestError):
    """`check` could not get every reachable node's hash at one common index."""

    code = "check_incomplete"


_CLASSES_BY_CODE: dict[str, type[RequestError]] = {
    cls.code: cls
    for cls in (
        NoLeader,
        Timeout,
        NotFound,
        LeaseNotFound,
        CasFailed,
        BadRequest,
        TooLarge,
        StorageFailed,
        Overloaded,
        CorruptLog,
        SessionExpired,
        Unauthenticated,
        Forbidden,
        WatchCompacted,
    )
}
# Other spellings a node may use for a damaged log.
_CLASSES_BY_CODE["corruption"] = CorruptLog
_CLASSES_BY_CODE["corrupt"] = CorruptLog
# A node that requires client certificates refuses a connection without one (401), as it
# refuses a request without a token: never retried, raft-client's exit 5.
_CLASSES_BY_CODE["client_certificate_required"] = Unauthenticated

# Failures after which another node (or the same one, later) may well succeed. Retrying a
# write after any of them is safe because it carries the same (client_id, seq).
RETRYABLE = (NoLeader, Timeout, StorageFailed, Overloaded)

# Answers a node gives only for a write it did not append: another node leads or none is
# known (the proposal was refused, or its entry was overwritten), its disk failed before it
# proposed, it has no room for the connection. A raftkv node marks the exceptions (a failure
# after proposing) with `"outcome": "unknown"`.
# A refused credential is checked before anything is proposed.
_REFUSALS = (NotLeader, NoLeader, StorageFailed, Overloaded, Unauthenticated, Forbidden)


def may_have_applied(error: errors.ClientError) -> bool:
    """Whether the write attempt that failed with `error` may have been applied, or may still
    be: anything but a refusal above, or a connection that was never made."""
    if isinstance(error, Unreachable):
        return error.request_sent
    if isinstance(error, ErrorDetail) and error.payload.get("outcome") == "unknown":
        return True
    return not isinstance(error, _REFUSALS)


def refusal_among(
    found: Iterable[errors.ClientError | None],
) -> Unauthenticated | Forbidden | None:
    """The first refused credential among the errors of a fan-out (status, health, check):
    reported as such, not as nodes that did not answer."""
    for error in found:
        if isinstance(error, Unauthenticated | Forbidden):
            return error
    return None


def _leader_id_from(payload: dict[str, Any]) -> int | None:
    leader_id = payload.get("leader_id")
    if isinstance(leader_id, int) and not isinstance(leader_id, bool):
        return leader_id
    name = payload.get("leader")
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    digits = name[4:] if isinstance(name, str) and name.startswith("node") else ""
    # ASCII and short: str.isdigit() takes "²", which int() refuses, as it does 5,000 digits.
    if digits.isascii() and digits.isdigit() and len(digits) <= 19:
        return int(digits)
    return None


def error_from_answer(status: int, payload: dict[str, Any]) -> errors.ClientError:
    """The exception for an error answer `{"error": CODE, ...}` with HTTP `status`."""
    code = str(payload.get("error", f"http_{status}"))
    message = str(payload.get("message", code))
    if code == "not_leader":
        return NotLeader(_leader_id_from(payload), payload, status)
    cls = _CLASSES_BY_CODE.get(code, RequestError)
    return cls(message, payload, status)


def describe(error: errors.ClientError) -> dict[str, Any]:
    """The JSON object for an error line: the payload, or code and message."""
    if isinstance(error, ErrorDetail):
        return dict(error.payload)
    return {"error": error.code, "message": str(error)}
