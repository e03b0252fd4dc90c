"""At-most-once sessions (Raft thesis §6.3): a client id and the sequence number of its writes.

Each logical write takes the next sequence number once, before its first attempt; every retry
of it (after a timeout, a dropped connection, a new leader) sends the same (client_id, seq),
so the cluster applies it at most once and answers a retry as it answered the first attempt.
The state machine remembers one answer per client id and refuses numbers below the last it
applied, so a session must have at most one write outstanding: concurrent writers each take
a session of their own from a `SessionPool`.
"""

from __future__ import annotations

import uuid


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
    caller's own concurrency bounds.
    """

    def __init__(self, first_client_id: str) -> None:
        self._idle = [Session(first_client_id)]

    def acquire(self) -> Session:
        return self._idle.pop() if self._idle else Session(new_client_id())

    def release(self, session: Session) -> None:
        self._idle.append(session)
