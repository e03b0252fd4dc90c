"""Client sessions of a state machine (Raft thesis §6.3): a retried (client_id, seq) is
executed at most once. Shared by the KV store and the embedding API's object machine.

The table is bounded (`sessions_max`); past it the least recently active session is
forgotten, and `evicted_through` keeps the largest last-activity index of any session ever
forgotten. A request whose client id has no session is decided by `may_open`, the same on
every replica since it reads only the log's effects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

# The records live apart (see there why); imported from here too.
from raftkv.kv.session_records import Refusals as Refusals
from raftkv.kv.session_records import SessionRecord as SessionRecord

# The answers a table keeps (the KV store's Result, the embedding API's Outcome): never None,
# which `admit` returns to mean "execute it".
R = TypeVar("R")

# Client sessions remembered. The least recently active session is forgotten first; which
# one that is depends only on the log, so every replica forgets the same one.
SESSIONS_MAX = 10_000


class SessionTable(Generic[R]):
    def __init__(self, refusals: Refusals[R], sessions_max: int | None = None) -> None:
        self._refusals = refusals
        # client_id -> its last request, in order of last activity (oldest first).
        self.sessions: dict[str, SessionRecord[R]] = {}
        self.sessions_max = SESSIONS_MAX if sessions_max is None else sessions_max
        self.evicted_through = 0

    def apply(
        self,
        index: int,
        client_id: str,
        seq: int,
        after_index: int | None,
        execute: Callable[[], R],
    ) -> R:
        """Run `execute` for the request (client_id, seq) committed at `index`, at most
        once: a retry gets the first answer back."""
        answer = self.admit(index, client_id, seq, after_index)
        if answer is not None:
            return answer
        result = execute()
        self.record(index, client_id, seq, result)
        return result

    def admit(self, index: int, client_id: str, seq: int, after_index: int | None) -> R | None:
        """`apply` in two steps, for a caller with no closure to hand over (the KV store's
        apply runs on every replica for every entry): the answer the request gets without
        being executed (a retry's first answer, or a refusal), or None when the caller must
        execute it and then `record` the result, with nothing in between."""
        sessions = self.sessions
        session = sessions.pop(client_id, None)
        if session is not None:
            if seq <= session.seq:
                # Activity all the same: the session moves to the newest end, so the table
                # stays in order of last_index. A new object, not an update in place: a
                # snapshot being encoded off the loop may hold the old one.
                sessions[client_id] = SessionRecord(client_id, session.seq, session.result, index)
                if seq == session.seq:
                    return session.result  # a retry: answer as the first time, apply nothing
                return self._refusals.stale
        elif not self.may_open(seq, after_index):
            return self._refusals.expired
        return None

    def record(self, index: int, client_id: str, seq: int, result: R) -> None:
        """The executed request's answer, kept for its retries (after `admit`)."""
        sessions = self.sessions
        sessions[client_id] = SessionRecord(client_id, seq, result, index)
        if len(sessions) > self.sessions_max:
            evicted = sessions.pop(next(iter(sessions)))
            self.evicted_through = max(self.evicted_through, evicted.last_index)

    def may_open(self, seq: int, after_index: int | None) -> bool:
        """Whether a request whose client id has no session may be executed (and open one),
        or must be refused as expired because it may repeat a request this table saw
        executed and then forgot (thesis §6.3: an expired session's requests are refused).

        With `after_index` I (an index the client knew committed before it first sent the
        request): every attempt of the request lands after I (a leader appends after all
        committed entries; a stale leader's entry at or below I never commits). Had one been
        executed at i > I, its session's last activity would be at least i, and forgetting
        it would have raised `evicted_through` to at least i. So `evicted_through <= I`
        proves no attempt was executed before. Without `after_index` only a first request
        (seq 1) may open a session: a later seq means the session existed and was forgotten.
        """
        if after_index is None:
            return seq <= 1
        return self.evicted_through <= after_index

    def records(self) -> list[SessionRecord[R]]:
        """Every session, oldest activity first: what a snapshot keeps."""
        return list(self.sessions.values())

    def restore(self, records: Iterable[SessionRecord[R]], evicted_through: int) -> None:
        self.sessions = {record.client_id: record for record in records}
        self.evicted_through = evicted_through
