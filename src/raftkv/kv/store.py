"""The deterministic key-value store applied by every replica."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec

from raftkv.kv.commands import Command, Result, decode_command

_OK = Result(ok=True)
# Client sessions remembered (thesis §6.3). The least recently active session is forgotten
# first; which one that is depends only on the log, so every replica forgets the same one.
SESSIONS_MAX = 10_000


class _Session(msgspec.Struct, array_like=True):
    client_id: str
    seq: int
    result: Result
    last_index: int


class _Snapshot(msgspec.Struct):
    data: dict[str, str]
    applied_index: int
    applied_hash: bytes
    sessions: list[_Session] = []


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)


class KVStore:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied_index = 0
        self._hash = b"\x00" * 16
        # client_id -> its last request, in order of last activity (oldest first).
        self.sessions: dict[str, _Session] = {}

    def apply(self, index: int, command: bytes) -> Result:
        assert index > self.applied_index, f"apply {index} after {self.applied_index}"
        self.applied_index = index
        # The running hash chains every applied command with its index, so two replicas agree
        # on it at an index exactly when they applied the same commands up to there.
        self._hash = hashlib.blake2b(
            self._hash + index.to_bytes(8, "big") + command, digest_size=16
        ).digest()
        try:
            parsed = decode_command(command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Result(ok=False, error="bad_request")
        if not parsed.client_id:
            return self.execute(parsed)
        session = self.sessions.pop(parsed.client_id, None)
        if session is not None and parsed.seq <= session.seq:
            self.sessions[parsed.client_id] = session
            if parsed.seq == session.seq:
                return session.result  # a retry: answer as the first time, apply nothing
            return Result(ok=False, error="stale_request")
        result = self.execute(parsed)
        self.sessions[parsed.client_id] = _Session(parsed.client_id, parsed.seq, result, index)
        if len(self.sessions) > SESSIONS_MAX:
            del self.sessions[next(iter(self.sessions))]
        return result

    def execute(self, command: Command) -> Result:
        if command.op == "put":
            if command.if_absent and command.key in self.data:
                return Result(ok=False, error="cas_failed", current=self.data[command.key])
            assert command.value is not None
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
            assert command.value is not None
            self.data[command.key] = command.value
            return _OK
        return Result(ok=False, error="bad_request")

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return _snapshot_encoder.encode(
            _Snapshot(self.data, self.applied_index, self._hash, list(self.sessions.values()))
        )

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """Copy the state now (a C-speed dict copy) and return the slow part, the encoding,
        to run off the event loop while the store keeps applying."""
        state = _Snapshot(
            dict(self.data), self.applied_index, self._hash, list(self.sessions.values())
        )
        return lambda: _snapshot_encoder.encode(state)

    def restore(self, data: bytes) -> None:
        state = _snapshot_decoder.decode(data)
        self.data, self.applied_index, self._hash = (
            state.data,
            state.applied_index,
            state.applied_hash,
        )
        self.sessions = {session.client_id: session for session in state.sessions}

    @property
    def applied_hash(self) -> str:
        return self._hash.hex()
