"""History records of operations on many keys: ranges, delete-ranges and transactions
(SPEC §6; docs/history-format.md): what their fields must be, and how reports show them."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

# StepResult is in history_records.py (interpreted: see its docstring); re-exported here.
from raftkv.check.history_records import Operation
from raftkv.check.history_records import StepResult as StepResult
from raftkv.kv.txn import BRANCH_OPS, TxnOp, well_typed


def has_multi_key_fields(operation: Operation) -> bool:
    return (
        operation.prefix is not None
        or operation.start is not None
        or operation.end is not None
        or operation.limit is not None
        or operation.kvs is not None
        or operation.count is not None
        or operation.more is not None
        or operation.deleted is not None
        or bool(operation.compare or operation.success or operation.failure)
        or operation.succeeded is not None
        or operation.results is not None
    )


def _validate_range_fields(
    prefix: str | None, start: str | None, end: str | None, limit: int | None
) -> str | None:
    if (prefix is None) == (start is None):
        return "a range needs exactly one of prefix and start"
    if end is not None and start is None:
        return "end goes with start"
    if limit is not None and limit < 1:
        return "limit must be at least 1"
    return None


def validate_multi_key(operation: Operation) -> str | None:
    """range, delrange, txn: their fields, and an outcome whenever one is claimed."""
    if operation.key or operation.value is not None or operation.if_value is not None:
        return f"{operation.op} takes no key, value or if_value"
    unset = operation.current is msgspec.UNSET
    if operation.if_absent or operation.result is not None or not unset:
        return f"{operation.op} takes no if_absent, result or current"
    if operation.op == "txn":
        problem = _validate_txn(operation)
    else:
        if operation.compare or operation.success or operation.failure:
            return f"{operation.op} takes no transaction fields"
        if operation.succeeded is not None or operation.results is not None:
            return f"{operation.op} takes no transaction fields"
        if operation.op == "delrange" and operation.limit is not None:
            return "delrange takes no limit"
        problem = _validate_range_fields(
            operation.prefix, operation.start, operation.end, operation.limit
        )
    if problem is not None or operation.status == "unknown":
        return problem
    if operation.status == "fail":
        return None  # a definite failure had no effect (no error of these is an observation)
    if operation.error is not None:
        return f"status ok with error {operation.error!r} (use status fail or unknown)"
    if operation.return_time is None:
        return "status ok needs a return time"
    if operation.op == "range":
        if operation.kvs is None or operation.deleted is not None:
            return "an ok range needs kvs (and has no deleted)"
    elif operation.op == "delrange":
        if operation.deleted is None or operation.deleted < 0 or operation.kvs is not None:
            return "an ok delrange needs deleted >= 0 (and has no kvs)"
    else:
        branch = operation.success if operation.succeeded else operation.failure
        if operation.succeeded is None or operation.results is None:
            return "an ok txn needs succeeded and results"
        if len(operation.results) != len(branch):
            return "an ok txn needs one result per operation of the branch it ran"
        for step, result in zip(branch, operation.results, strict=True):
            if not _fits(step, result):
                return f"a result of a transaction {step.op} has fields of another operation"
    return None


def _fits(step: TxnOp, result: StepResult) -> bool:
    """Whether `result` has only the fields a `step` answers (SPEC §6)."""
    ranged = result.kvs is not None or result.count is not None or result.more is not None
    if step.op == "range":
        return result.value is None and result.deleted is None
    if step.op == "delete":
        return result.value is None and not ranged
    if step.op == "get":
        return result.deleted is None and not ranged
    return result == StepResult()


def _validate_txn(operation: Operation) -> str | None:
    if operation.prefix is not None or operation.start is not None or operation.end is not None:
        return "txn takes no prefix, start or end (its range operations do)"
    if operation.limit is not None or operation.kvs is not None or operation.deleted is not None:
        return "txn takes no limit, kvs or deleted"
    if operation.count is not None or operation.more is not None:
        return "txn takes no count or more"
    for compare in operation.compare:
        if not well_typed(compare):
            return f"compare {compare.target} {compare.op} {compare.value!r} is not well typed"
    for step in (*operation.success, *operation.failure):
        if step.op not in BRANCH_OPS:
            return f"unknown transaction operation {step.op!r}"
        if step.op == "range":
            problem = _validate_range_fields(step.prefix, step.start, step.end, step.limit)
            if problem is not None:
                return problem
        elif step.key is None or (step.op == "put") != (step.value is not None):
            return f"transaction {step.op} needs a key (and a value only for put)"
    return None


def _format_value(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def format_kvs(kvs: Iterable[tuple[str, str | None]]) -> str:
    return "{" + ", ".join(f"{key!r}: {_format_value(value)}" for key, value in kvs) + "}"


def format_count(operation: Operation | StepResult) -> str:
    shown = [] if operation.count is None else [f"count {operation.count}"]
    shown += ["more"] if operation.more else []
    return f" ({', '.join(shown)})" if shown else ""


def format_step_result(step: TxnOp, result: StepResult) -> str:
    if step.op == "put":
        return "ok"
    if result.kvs is not None:
        return format_kvs(result.kvs) + format_count(result)
    if result.deleted is not None:
        return f"deleted {result.deleted}"
    return _format_value(result.value)


def describe_range(
    prefix: str | None, start: str | None, end: str | None, limit: int | None = None
) -> str:
    """`prefix 'a'` or `['a', 'b')` (`...)` without an end), and its limit."""
    shown = f"prefix {prefix!r}" if prefix is not None else f"[{start!r}, {end!r})"
    if prefix is None and end is None:
        shown = f"[{start!r}, ...)"
    return shown if limit is None else f"{shown} limit {limit}"


def _describe_step(step: TxnOp) -> str:
    if step.op == "range":
        return "range " + describe_range(step.prefix, step.start, step.end, step.limit)
    if step.op == "put":
        return f"put {step.key!r}={_format_value(step.value)}"
    return f"{step.op} {step.key!r}"


def describe_txn(operation: Operation) -> str:
    compares = " and ".join(
        f"{compare.key!r}.{compare.target} {compare.op} {compare.value!r}"
        for compare in operation.compare
    )
    success = ", ".join(_describe_step(step) for step in operation.success)
    failure = ", ".join(_describe_step(step) for step in operation.failure)
    return f"txn if {compares or 'true'} then [{success}] else [{failure}]"
