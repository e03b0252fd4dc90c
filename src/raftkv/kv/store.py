"""The deterministic key-value store applied by every replica."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec

from raftkv.errors import InvariantViolation
from raftkv.kv.commands import Command, Result, decode_command

_OK = Result(ok=True)
_STALE_REQUEST = Result(ok=False, error="stale_request")
_BAD_REQUEST = Result(ok=False, error="bad_request")
_SESSION_EXPIRED = Result(ok=False, error="session_expired")
# Client sessions remembered (thesis §6.3). The least recently active session is forgotten
# first; which one that is depends only on the log, so every replica forgets the same one.
SESSIONS_MAX = 10_000


class _Session(msgspec.Struct, array_like=True):
    client_id: str
    seq: int
    result: Result
    last_index: int  # the index of the session's latest request (its last activity)


class _Snapshot(msgspec.Struct):
    data: dict[str, str]
    applied_index: int
    applied_hash: bytes
    sessions: list[_Session] = []
    # Absent from snapshots written before sessions were refused once forgotten: 0.
    evicted_through: int = 0


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)


class KVStore:
    """Keys and values, plus a session per client id so that a retried write is applied at
    most once (thesis §6.3).

    The session table is bounded (`sessions_max`); past it the least recently active session
    is forgotten, and `evicted_through` keeps the largest last-activity index of any session
    ever forgotten. A request whose client id has no session is decided by the rule in
    `_may_open_session`, the same on every replica since it reads only the log's effects.
    """

    def __init__(self, sessions_max: int | None = None) -> None:
        self.data: dict[str, str] = {}
        self.applied_index = 0
        self._hash = b"\x00" * 16
        # client_id -> its last request, in order of last activity (oldest first).
        self.sessions: dict[str, _Session] = {}
        self.sessions_max = SESSIONS_MAX if sessions_max is None else sessions_max
        self.evicted_through = 0

    def apply(self, index: int, command: bytes) -> Result:
        if index <= self.applied_index:
            raise InvariantViolation(f"apply {index} after {self.applied_index}")
        self.applied_index = index
        # The running hash chains every applied command with its index, so two replicas agree
        # on it at an index exactly when they applied the same commands up to there.
        self._hash = hashlib.blake2b(
            self._hash + index.to_bytes(8, "big") + command, digest_size=16
        ).digest()
        try:
            parsed = decode_command(command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return _BAD_REQUEST
        if not parsed.client_id:
            return self.execute(parsed)
        return self._apply_in_session(index, parsed)

    def _apply_in_session(self, index: int, command: Command) -> Result:
        sessions = self.sessions
        client_id = command.client_id
        session = sessions.pop(client_id, None)
        if session is not None:
            if command.seq <= session.seq:
                # Activity all the same: the session moves to the newest end, so the table
                # stays in order of last_index. A new object, not an update in place: a
                # snapshot being encoded off the loop may hold the old one.
                sessions[client_id] = _Session(client_id, session.seq, session.result, index)
                if command.seq == session.seq:
                    return session.result  # a retry: answer as the first time, apply nothing
                return _STALE_REQUEST
        elif not self._may_open_session(command):
            return _SESSION_EXPIRED
        result = self.execute(command)
        sessions[client_id] = _Session(client_id, command.seq, result, index)
        if len(sessions) > self.sessions_max:
            evicted = sessions.pop(next(iter(sessions)))
            self.evicted_through = max(self.evicted_through, evicted.last_index)
        return result

    def _may_open_session(self, command: Command) -> bool:
        """Whether a request whose client id has no session may be executed (and open one),
        or must be refused `session_expired` because it may repeat a request this store
        executed and then forgot (thesis §6.3: an expired session's requests are refused).

        With `after_index` I (an index the client knew committed before it first sent the
        request): every attempt of the request lands after I (a leader appends after all
        committed entries; a stale leader's entry at or below I never commits). Had one been
        executed at i > I, its session's last activity would be at least i, and forgetting
        it would have raised `evicted_through` to at least i. So `evicted_through <= I`
        proves no attempt was executed before. Without `after_index` only a first request
        (seq 1) may open a session: a later seq means the session existed and was forgotten.
        """
        if command.after_index is None:
            return command.seq <= 1
        return self.evicted_through <= command.after_index

    def execute(self, command: Command) -> Result:
        if command.op == "put":
            if command.if_absent and command.key in self.data:
                return Result(ok=False, error="cas_failed", current=self.data[command.key])
            if command.value is None:
                return _BAD_REQUEST  # decided alike on every replica; never a crash
            self.data[command.key] = command.value
            return _OK
        if command.op == "del":
            if self.data.pop(command.key, None) is None:
                return Result(ok=False, error="not_found")
            return _OK
        if command.op == "cas":
            current = self.data.get(command.key)
            matches = current is None if command.if_absent else current == command.if_value
            if not matches:
                return Result(ok=False, error="cas_failed", current=current)
            if command.value is None:
                return _BAD_REQUEST  # decided alike on every replica; never a crash
            self.data[command.key] = command.value
            return _OK
        return _BAD_REQUEST

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return _snapshot_encoder.encode(self._state(self.data))

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """Copy the state now (a C-speed dict copy) and return the slow part, the encoding,
        to run off the event loop while the store keeps applying."""
        state = self._state(dict(self.data))
        return lambda: _snapshot_encoder.encode(state)

    def _state(self, data: dict[str, str]) -> _Snapshot:
        sessions = list(self.sessions.values())
        return _Snapshot(data, self.applied_index, self._hash, sessions, self.evicted_through)

    def restore(self, data: bytes) -> None:
        state = _snapshot_decoder.decode(data)
        self.data, self.applied_index, self._hash = (
            state.data,
            state.applied_index,
            state.applied_hash,
        )
        self.sessions = {session.client_id: session for session in state.sessions}
        self.evicted_through = state.evicted_through

    @property
    def applied_hash(self) -> str:
        return self._hash.hex()
