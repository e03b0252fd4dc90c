"""Client histories: one `Operation` per client call, stored as JSON lines.

The format is documented in docs/history-format.md; this module is its reference reader and
writer. A history is what the checker judges (Wing & Gong 1993; Lowe 2017): each operation's
call and return times bound the moment it may take effect.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec

from raftkv.check.history_multi_key import (
    describe_range,
    describe_txn,
    format_count,
    format_kvs,
    format_step_result,
    has_multi_key_fields,
    validate_multi_key,
)

# The records live in history_records.py (interpreted: see its docstring); re-exported here.
from raftkv.check.history_records import CAS_FAILED as CAS_FAILED
from raftkv.check.history_records import MULTI_KEY_KINDS as MULTI_KEY_KINDS
from raftkv.check.history_records import NOT_FOUND as NOT_FOUND
from raftkv.check.history_records import History as History
from raftkv.check.history_records import HistoryError as HistoryError
from raftkv.check.history_records import IndexedOperation as IndexedOperation
from raftkv.check.history_records import Operation as Operation
from raftkv.check.history_records import OperationKind as OperationKind
from raftkv.check.history_records import Status as Status
from raftkv.check.history_records import StepResult as StepResult
from raftkv.check.limits import HISTORY_LINE_BYTES_MAX


# Functions, not properties of the record: the record stays interpreted (history_records.py),
# and a property of it would cost compiled callers an interpreted call.
def is_multi_key(operation: Operation) -> bool:
    """A range, delete-range or transaction: it may touch many keys at once."""
    return operation.op in MULTI_KEY_KINDS


def is_conditional(operation: Operation) -> bool:
    """A cas, or a put carrying a condition (SPEC §3 lets PUT carry if_value/if_absent)."""
    return operation.op == "cas" or (
        operation.op == "put" and (operation.if_absent or operation.if_value is not None)
    )


def is_observation_error(operation: Operation) -> bool:
    """The error reports an observation (not_found, cas_failed), so the call completed."""
    if operation.error == NOT_FOUND:
        return operation.op in ("get", "del")
    return operation.error == CAS_FAILED and is_conditional(operation)


def validate_operation(operation: Operation) -> str | None:
    """Why `operation` is not a valid history record, or None when it is."""
    if is_multi_key(operation):
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
    observation = is_observation_error(operation)
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
        if is_observation_error(operation):
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
    elif is_multi_key(operation):
        span = describe_range(operation.prefix, operation.start, operation.end, operation.limit)
        action = f"{operation.op} {span}"
    elif operation.op == "get" or operation.op == "del":
        action = f"{operation.op} {operation.key!r}"
    elif is_conditional(operation):
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
