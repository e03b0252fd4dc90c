"""At-most-once sessions (Raft thesis §6.3): a client id and the sequence number of its writes.

Each logical write takes the next sequence number once, before its first attempt; every retry
of it (after a timeout, a dropped connection, a new leader) sends the same (client_id, seq),
so the cluster applies it at most once and answers a retry as it answered the first attempt.
The state machine remembers one answer per client id and refuses numbers below the last it
applied, so a session must have at most one write outstanding: concurrent writers each take
a session of their own from a `SessionPool`.

The cluster remembers a bounded number of sessions (docs/client.md). So that a forgotten
session's retry is refused rather than applied twice, every attempt of a write also carries
`after_index`: the highest committed index the client had seen in an answer before the
write's first attempt. A write refused `session_expired` was not applied by that attempt; if
no attempt of it may have been applied (every other one was refused, or never reached a
node) it is sent again under a new session, otherwise its outcome is unknown.
"""

from __future__ import annotations

import uuid
from typing import Any

from raftkv import errors
from raftkv.client.errors import (
    BadRequest,
    CasFailed,
    ErrorDetail,
    NotFound,
    OutcomeUnknown,
    SessionExpired,
    TooLarge,
    describe,
    may_have_applied,
)

# Final answers that tell what became of the write itself (it was applied and refused by its
# condition, or it is invalid): its outcome is known whatever happened to earlier attempts.
_KNOWN_OUTCOMES = (CasFailed, NotFound, BadRequest, TooLarge)


def new_client_id() -> str:
    return uuid.uuid4().hex


class Session:
    __slots__ = ("client_id", "seq")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.seq = 0

    def next_write(self) -> tuple[str, int]:
        """The (client_id, seq) of a new logical write; its retries reuse the pair."""
        self.seq += 1
        return self.client_id, self.seq


class SessionPool:
    """Sessions for concurrent writers: an idle one is reused, else a new one is opened.

    The pool never holds more sessions than writes were ever outstanding at once, which the
    caller's own concurrency bounds. A session the cluster forgot is not given back.
    """

    def __init__(self, first_client_id: str) -> None:
        self._idle = [Session(first_client_id)]

    def acquire(self) -> Session:
        return self._idle.pop() if self._idle else Session(new_client_id())

    def release(self, session: Session) -> None:
        self._idle.append(session)


class CommittedIndex:
    """The highest log index this client has seen committed in an answer: a write's index, a
    read's index (the reading node had applied it), a status's commit_index."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def note(self, payload: dict[str, Any], field: str = "index") -> None:
        index = payload.get(field)
        if isinstance(index, int) and not isinstance(index, bool) and index > self.value:
            self.value = index

    def note_error(self, error: errors.ClientError) -> None:
        """A node's error answer to a KV request carries the index it was decided at."""
        if isinstance(error, ErrorDetail) and error.status is not None:
            self.note(error.payload)


class PendingWrite:
    """One logical write across its attempts: its (client_id, seq), the committed index its
    first attempt was sent after, and whether some attempt may have been applied."""

    __slots__ = ("after_index", "client_id", "maybe_applied", "seq")

    def __init__(self, session: Session, after_index: int) -> None:
        self.client_id, self.seq = session.next_write()
        self.after_index = after_index
        self.maybe_applied = False

    def attempt_failed(self, error: errors.ClientError) -> None:
        """An attempt failed and the write will be tried again."""
        if may_have_applied(error):
            self.maybe_applied = True

    def attempt_lost(self) -> None:
        """An attempt was sent and will be sent again without its answer."""
        self.maybe_applied = True

    def conclude(self, error: errors.ClientError) -> errors.ClientError | None:
        """The error to raise for the write that ended with `error`; None when the cluster
        refused it `session_expired` and no attempt may have been applied, so it may be sent
        again, under a new session."""
        if isinstance(error, SessionExpired) and not self.maybe_applied:
            return None
        if not self.maybe_applied or isinstance(error, _KNOWN_OUTCOMES):
            return error
        return outcome_unknown(error)


def outcome_unknown(error: errors.ClientError) -> OutcomeUnknown:
    """`error` ended a write one of whose attempts got no answer: say that it may have been
    applied. The last failure goes to `last_error` (the overall timeout's own one, if any)."""
    if isinstance(error, SessionExpired):
        reason = (
            "the cluster no longer remembers this client's session, and an earlier attempt"
            " got no answer"
        )
    else:
        reason = str(error)
    message = f"{reason}; the write's outcome is unknown: it may have been applied"
    payload: dict[str, Any] = {"message": message}
    if isinstance(error, ErrorDetail) and "last_error" in error.payload:
        payload["last_error"] = error.payload["last_error"]
    else:
        payload["last_error"] = describe(error)
    return OutcomeUnknown(message, payload)
