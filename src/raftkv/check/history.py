"""Client histories: one `Operation` per client call, stored as JSON lines.

The format is documented in docs/history-format.md; this module is its reference reader and
writer. A history is what the checker judges (Wing & Gong 1993; Lowe 2017): each operation's
call and return times bound the moment it may take effect.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import msgspec

from raftkv.check.history_multi_key import (
    StepResult as StepResult,  # re-exported: records hold them
)
from raftkv.check.history_multi_key import (
    describe_range,
    describe_txn,
    format_count,
    format_kvs,
    format_step_result,
    has_multi_key_fields,
    validate_multi_key,
)
from raftkv.check.limits import HISTORY_LINE_BYTES_MAX
from raftkv.errors import RaftError
from raftkv.kv.txn import Compare, TxnOp

OperationKind = Literal["get", "put", "del", "cas", "range", "delrange", "txn"]
# Operations that may touch several keys (SPEC §6): checked by the map model (map_model.py).
MULTI_KEY_KINDS = frozenset(("range", "delrange", "txn"))
Status = Literal["ok", "fail", "unknown"]

# Errors that report what the client observed, not a failure to act: the operation completed,
# read the register, and left it unchanged.
NOT_FOUND = "not_found"
CAS_FAILED = "cas_failed"


class HistoryError(RaftError, ValueError):
    """A history that cannot be checked: malformed JSON, a missing field, or a contradiction
    such as a return before its call."""


class Operation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One client call and, once known, its outcome (docs/history-format.md)."""

    client: str
    op: OperationKind
    key: str = ""  # get, put, del, cas
    value: str | None = None  # put and cas: the value written
    if_value: str | None = None  # cas (or a conditional put): write only if current == if_value
    if_absent: bool = False  # cas (or a conditional put): write only if the key is absent
    call_time: float = msgspec.field(name="call")
    return_time: float | None = msgspec.field(default=None, name="return")
    status: Status = "ok"
    result: str | None = None  # get: the value read (None: absent)
    error: str | None = None
    # cas_failed: the value found. UNSET (field missing) means not reported; None means absent.
    current: str | msgspec.UnsetType | None = msgspec.UNSET
    # range and delrange: every key starting with `prefix`, or from `start` to `end` (exclusive;
    # None: no end). range: at most `limit` keys answered.
    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    limit: int | None = None
    kvs: tuple[tuple[str, str], ...] | None = None  # range: the keys and values answered
    count: int | None = None  # range: keys in the whole range (None: not reported)
    more: bool | None = None  # range: keys beyond `limit` left out (None: not reported)
    deleted: int | None = None  # delrange: how many keys it deleted
    # txn: the compares and both branches, as POST /v1/txn takes them (SPEC §6).
    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()
    succeeded: bool | None = None  # txn: whether the compares held
    results: tuple[StepResult, ...] | None = None  # txn: one per operation of the branch run

    @property
    def multi_key(self) -> bool:
        """A range, delete-range or transaction: it may touch many keys at once."""
        return self.op in MULTI_KEY_KINDS

    @property
    def conditional(self) -> bool:
        """A cas, or a put carrying a condition (SPEC §3 lets PUT carry if_value/if_absent)."""
        return self.op == "cas" or (
            self.op == "put" and (self.if_absent or self.if_value is not None)
        )

    @property
    def observation_error(self) -> bool:
        """The error reports an observation (not_found, cas_failed), so the call completed."""
        if self.error == NOT_FOUND:
            return self.op in ("get", "del")
        return self.error == CAS_FAILED and self.conditional


@dataclass(frozen=True, slots=True)
class IndexedOperation:
    """An operation with its position in the history (0-based), the name reports use."""

    index: int
    operation: Operation


class History(msgspec.Struct, frozen=True):
    """An ordered collection of operations; the order only names them (#index)."""

    operations: tuple[Operation, ...]

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    def keys(self) -> list[str]:
        return sorted({operation.key for operation in self.operations})


def validate_operation(operation: Operation) -> str | None:
    """Why `operation` is not a valid history record, or None when it is."""
    if operation.multi_key:
        return _validate_times(operation) or validate_multi_key(operation)
    if has_multi_key_fields(operation):
        return f"{operation.op} takes no range or transaction fields"
    problem = _validate_times(operation)
    if problem is not None:
        return problem
    return _validate_single_key(operation)


def _validate_times(operation: Operation) -> str | None:
    if not math.isfinite(operation.call_time):
        return "call time must be a finite number"
    if operation.return_time is not None:
        if not math.isfinite(operation.return_time):
            return "return time must be a finite number"
        if operation.return_time < operation.call_time:
            return "return time is before call time"
    return None


def _validate_single_key(operation: Operation) -> str | None:
    if operation.if_absent and operation.if_value is not None:
        return "if_value and if_absent exclude each other"
    if operation.op in ("get", "del"):
        if operation.value is not None or operation.if_value is not None or operation.if_absent:
            return f"{operation.op} takes no value, if_value or if_absent"
    elif operation.value is None:
        return f"{operation.op} needs a value"
    if operation.op == "cas" and operation.if_value is None and not operation.if_absent:
        return "cas needs if_value or if_absent"
    if operation.status == "unknown":
        return None  # outcome fields are ignored: the call may or may not have taken effect
    observation = operation.observation_error
    if operation.status == "ok" and operation.error is not None and not observation:
        return f"status ok with error {operation.error!r} (use status fail or unknown)"
    if operation.status == "fail" and not observation:
        return None  # a definite failure had no effect; its times and result do not matter
    if operation.return_time is None:
        return f"status {operation.status} needs a return time (null only for unknown)"
    if operation.result is not None and (operation.op != "get" or operation.error is not None):
        return "result is only for a get that found a value"
    if operation.current is not msgspec.UNSET and operation.error != CAS_FAILED:
        return "current is only for a cas_failed error"
    return None


def checked_history(operations: Iterable[Operation]) -> History:
    """`operations` as a History, raising HistoryError on the first invalid one."""
    history = operations if isinstance(operations, History) else History(tuple(operations))
    for index, operation in enumerate(history.operations):
        problem = validate_operation(operation)
        if problem is not None:
            raise HistoryError(f"operation #{index}: {problem}")
    return history


_decoder = msgspec.json.Decoder(Operation)
_encoder = msgspec.json.Encoder()


def load_history(source: str | os.PathLike[str] | Iterable[str | bytes]) -> History:
    """Read a JSON-lines history from a path, or from an iterable of lines (an open file).

    Blank lines are skipped; any other line that does not decode to a valid Operation raises
    HistoryError naming its line number, as does an unreadable file.
    """
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as file:
                return _load_lines(file)
        except OSError as error:
            raise HistoryError(f"cannot read {os.fspath(source)}: {error.strerror}") from error
    return _load_lines(source)


def _load_lines(lines: Iterable[str | bytes]) -> History:
    operations: list[Operation] = []
    for line_number, line in enumerate(lines, start=1):
        if len(line) > HISTORY_LINE_BYTES_MAX:
            raise HistoryError(f"line {line_number}: longer than {HISTORY_LINE_BYTES_MAX} bytes")
        if not line.strip():
            continue
        try:
            operation = _decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
            # Not UTF-8, nested past the recursion limit: not msgspec DecodeErrors.
            raise HistoryError(f"line {line_number}: {error}") from error
        problem = validate_operation(operation)
        if problem is not None:
            raise HistoryError(f"line {line_number}: {problem}")
        operations.append(operation)
    return History(tuple(operations))


def encode_operation(operation: Operation) -> bytes:
    return _encoder.encode(operation)


def dump_history(operations: Iterable[Operation], file: str | os.PathLike[str] | IO[str]) -> None:
    """Write `operations` as JSON lines to a path or an open text file."""
    lines = "".join(encode_operation(op).decode() + "\n" for op in operations)
    if isinstance(file, str | os.PathLike):
        Path(file).write_text(lines, encoding="utf-8")
    else:
        file.write(lines)


def _format_time(time: float) -> str:
    time = float(time)  # the API accepts ints too
    return str(int(time)) if time.is_integer() else repr(time)


def _format_value(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def describe_outcome(operation: Operation) -> str:
    """The outcome as a reader would say it: `-> 'v'`, `ok`, `-> cas_failed (current 'x')`."""
    if operation.status == "unknown":
        return "outcome unknown"
    if operation.error is not None:
        if operation.error == CAS_FAILED and operation.current is not msgspec.UNSET:
            return f"-> {CAS_FAILED} (current {_format_value(operation.current)})"
        if operation.observation_error:
            return f"-> {operation.error}"
        return f"failed ({operation.error}, no effect)"
    if operation.op == "get":
        return f"-> {_format_value(operation.result)}"
    if operation.status != "ok":
        return "failed (no effect)"
    if operation.op == "range":
        return f"-> {format_kvs(operation.kvs or ())}{format_count(operation)}"
    if operation.op == "delrange":
        return f"-> deleted {operation.deleted}"
    if operation.op == "txn":
        branch = "success" if operation.succeeded else "failure"
        steps = operation.success if operation.succeeded else operation.failure
        answers = ", ".join(
            format_step_result(step, result)
            for step, result in zip(steps, operation.results or (), strict=False)
        )
        return f"-> {branch} [{answers}]"
    return "ok"


def describe_operation(operation: Operation, index: int | None = None) -> str:
    """One readable line: `#12 c3 cas k 'a'->'b' [call 1.5, return 2] ok`."""
    if operation.op == "txn":
        action = describe_txn(operation)
    elif operation.multi_key:
        span = describe_range(operation.prefix, operation.start, operation.end, operation.limit)
        action = f"{operation.op} {span}"
    elif operation.op == "get" or operation.op == "del":
        action = f"{operation.op} {operation.key!r}"
    elif operation.conditional:
        expected = "absent" if operation.if_absent else _format_value(operation.if_value)
        action = f"{operation.op} {operation.key!r} {expected}->{_format_value(operation.value)}"
    else:
        action = f"{operation.op} {operation.key!r}={_format_value(operation.value)}"
    returned = (
        "no return"
        if operation.return_time is None
        else f"return {_format_time(operation.return_time)}"
    )
    interval = f"[call {_format_time(operation.call_time)}, {returned}]"
    name = "" if index is None else f"#{index} "
    return f"{name}{operation.client} {action} {interval} {describe_outcome(operation)}"
