"""The state machine of the embedding API: named objects whose `@replicated` methods are the
commands. Every rule of applying lives here, the same on every replica:

- A command names an object, one of its replicated methods and the arguments. A command
  that does not decode, names no such object or method, or whose method raises, is that
  command's error — never the node's: the next command applies as usual, and a replay after
  a restart decides the same way.
- Commands carry a client session (kv/sessions.py): a retry of (client_id, seq), after a
  leader change or a lost answer, is answered from the session, not applied again.
- The result of a call is kept briefly by (client_id, seq), for the caller on this replica
  to collect once its entry is applied here (`take_result`).
- Snapshots hold each object's state as `values.py` encodes it (never pickle).
"""

from __future__ import annotations

import builtins
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from raftkv.embed import values
from raftkv.embed.replicated import LOCAL_PREFIX, replicated_method
from raftkv.errors import InvariantViolation
from raftkv.kv.sessions import Refusals, SessionRecord, SessionTable

# Results kept for callers on this replica to collect (a caller collects at once; this only
# bounds what callers that gave up leave behind).
RECENT_RESULTS_MAX = 4096


class Call(msgspec.Struct, array_like=True, omit_defaults=True, frozen=True):
    """A command in the log: `arguments` is values.encode([args, kwargs])."""

    object: str
    method: str
    arguments: bytes
    client_id: str = ""
    seq: int = 0
    after_index: int | None = None


class Outcome(msgspec.Struct, array_like=True, omit_defaults=True, frozen=True):
    """What a call left, as sessions and snapshots keep it: the encoded return value, or
    the type and message of what it raised (`error_type` non-empty)."""

    value: bytes = b""
    error_type: str = ""
    error_message: str = ""


class ReplicatedCallError(Exception):
    """The replicated method raised an exception that cannot be rebuilt here (not a built-in
    type, or answered from a session): its type name and message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class SessionExpired(ReplicatedCallError):
    """The cluster forgot this caller's session; the call was not applied now, but an
    earlier attempt may have been (its outcome is unknown)."""


@dataclass(frozen=True)
class CallResult:
    """What applying one call returned on this replica."""

    outcome: Outcome
    # The exception the method raised here, when it ran here (a retry answered from the
    # session has only the outcome).
    raised: BaseException | None = None

    def unwrap(self) -> Any:
        """The call's return value, or raise what it raised."""
        outcome = self.outcome
        if not outcome.error_type:
            return values.decode(outcome.value)
        if self.raised is not None:
            raise self.raised
        raise _rebuilt(outcome)


def _rebuilt(outcome: Outcome) -> BaseException:
    if outcome.error_type == "SessionExpired":
        return SessionExpired(outcome.error_type, outcome.error_message)
    # Only built-in exception types are rebuilt by name: a name from the log never imports
    # or instantiates anything else.
    kind = getattr(builtins, outcome.error_type, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(outcome.error_message)
        except Exception:  # an exception type with a different constructor
            pass
    return ReplicatedCallError(outcome.error_type, outcome.error_message)


def _error(kind: str, message: str) -> Outcome:
    return Outcome(error_type=kind, error_message=message)


_REFUSALS: Refusals[Outcome] = Refusals(
    stale=_error("StaleRequest", "an older request of this session: its answer is gone"),
    expired=_error(
        "SessionExpired",
        "the cluster no longer remembers this caller's session; this attempt was not"
        " applied, an earlier one may have been",
    ),
)


class _Snapshot(msgspec.Struct):
    objects: dict[str, bytes]
    applied_index: int
    applied_hash: bytes
    sessions: list[SessionRecord[Outcome]] = []
    evicted_through: int = 0


_call_decoder = msgspec.msgpack.Decoder(Call)
_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)


def encode_call(call: Call) -> bytes:
    return _encoder.encode(call)


def _replicated_attribute(name: str) -> bool:
    # `_raftkv_*` attributes are this replica's own (the node binding, a leader's timers):
    # never in a snapshot, kept across a restore.
    return not name.startswith(LOCAL_PREFIX)


def state_of(target: object) -> Any:
    """An object's replicated state: `__raft_state__()` if it defines one, else its
    attributes but the local `_raftkv_*` ones."""
    custom: Callable[[], Any] | None = getattr(target, "__raft_state__", None)
    if custom is not None:
        return custom()
    return {key: value for key, value in vars(target).items() if _replicated_attribute(key)}


def restore_state(target: object, state: Any) -> None:
    custom: Callable[[Any], None] | None = getattr(target, "__raft_restore__", None)
    if custom is not None:
        custom(state)
        return
    if not isinstance(state, dict):
        raise ValueError(f"the state of {type(target).__qualname__} is not its attributes")
    for key in [key for key in vars(target) if _replicated_attribute(key)]:
        delattr(target, key)
    for key, value in state.items():
        # A snapshot comes from a peer: it sets plain attributes only, never this
        # replica's own `_raftkv_*` ones or a `__dunder__`.
        if isinstance(key, str) and _replicated_attribute(key) and not key.startswith("__"):
            setattr(target, key, value)


class ObjectStateMachine:
    # What its snapshots are snapshots of (server/backup.py): a backup of a KV store's state
    # restored here would be objects' states it cannot decode, and the reverse.
    snapshot_kind: ClassVar[str] = "objects"

    def __init__(self, objects: Mapping[str, object], sessions_max: int | None = None) -> None:
        self.objects = dict(objects)
        self.applied_index = 0
        self._hash = b"\x00" * 16
        self._sessions: SessionTable[Outcome] = SessionTable(_REFUSALS, sessions_max)
        self._recent: OrderedDict[tuple[str, int], CallResult] = OrderedDict()

    def apply(self, index: int, command: bytes) -> CallResult:
        if index <= self.applied_index:
            raise InvariantViolation(f"apply {index} after {self.applied_index}")
        self.applied_index = index
        self._hash = hashlib.blake2b(
            self._hash + index.to_bytes(8, "big") + command, digest_size=16
        ).digest()
        try:
            call = _call_decoder.decode(command)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
            return CallResult(_error("BadCommand", f"not a call of the embedding API: {error}"))
        raised: list[BaseException] = []

        def execute() -> Outcome:
            outcome, exception = self._invoke(call)
            if exception is not None:
                raised.append(exception)
            return outcome

        if not call.client_id:
            result = CallResult(execute(), raised[0] if raised else None)
            return result
        outcome = self._sessions.apply(index, call.client_id, call.seq, call.after_index, execute)
        result = CallResult(outcome, raised[0] if raised else None)
        recent = self._recent
        recent[(call.client_id, call.seq)] = result
        while len(recent) > RECENT_RESULTS_MAX:
            recent.popitem(last=False)
        return result

    def _invoke(self, call: Call) -> tuple[Outcome, BaseException | None]:
        target = self.objects.get(call.object)
        if target is None:
            return _error("LookupError", f"no replicated object named {call.object!r}"), None
        method = replicated_method(type(target), call.method)
        if method is None:
            return _error(
                "AttributeError", f"{call.object!r} has no replicated method {call.method!r}"
            ), None
        try:
            args, kwargs = values.decode(call.arguments)
            result = method.function(target, *args, **kwargs)
            return Outcome(value=values.encode(result)), None
        except (Exception, SystemExit) as error:
            # The command's error, decided alike on every replica (a method calling
            # sys.exit() too: it would stop every replica, and each again on replay).
            return _error(type(error).__qualname__, str(error)), error

    def take_result(self, client_id: str, seq: int) -> CallResult | None:
        """The result of (client_id, seq) if it was applied here lately (once)."""
        return self._recent.pop((client_id, seq), None)

    # --- snapshots ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return self.prepare_snapshot()()

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """Copy the state now (every object's state made plain: a deep copy) and return the
        encoding, to run off the event loop while the objects keep changing."""
        objects = {name: values.to_plain(state_of(target)) for name, target in self.objects.items()}
        sessions = self._sessions.records()
        evicted_through = self._sessions.evicted_through
        applied_index, applied_hash = self.applied_index, self._hash

        def encode() -> bytes:
            encoded = {name: _encoder.encode(state) for name, state in objects.items()}
            return _encoder.encode(
                _Snapshot(encoded, applied_index, applied_hash, sessions, evicted_through)
            )

        return encode

    def restore(self, data: bytes) -> None:
        """Raises ValueError for bytes that are not a snapshot (or an object's own
        `__raft_restore__` raises what it raises)."""
        try:
            state = _snapshot_decoder.decode(data)
        except RecursionError:
            raise ValueError("a snapshot nested deeper than the recursion limit") from None
        for name, target in self.objects.items():
            encoded = state.objects.get(name)
            if encoded is not None:
                restore_state(target, values.decode(encoded))
        self.applied_index, self._hash = state.applied_index, state.applied_hash
        self._sessions.restore(state.sessions, state.evicted_through)
        self._recent.clear()

    @property
    def applied_hash(self) -> str:
        return self._hash.hex()
