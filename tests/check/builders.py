"""Terse constructors for hand-written histories in tests."""

from __future__ import annotations

import msgspec

from raftkv.check import Operation
from raftkv.check.history import StepResult
from raftkv.kv.txn import Compare, TxnOp


def get(client: str, call: float, ret: float, result: str | None, *, key: str = "k") -> Operation:
    """A completed get; `result` None means it found the key absent."""
    return Operation(
        client=client, op="get", key=key, call_time=call, return_time=ret, result=result
    )


def put(client: str, call: float, ret: float | None, value: str, *, key: str = "k") -> Operation:
    """A put; `ret` None means its outcome is unknown (it may or may not have taken effect)."""
    return Operation(
        client=client,
        op="put",
        key=key,
        value=value,
        call_time=call,
        return_time=ret,
        status="ok" if ret is not None else "unknown",
    )


def delete(
    client: str, call: float, ret: float | None, *, found: bool = True, key: str = "k"
) -> Operation:
    return Operation(
        client=client,
        op="del",
        key=key,
        call_time=call,
        return_time=ret,
        status="ok" if ret is not None else "unknown",
        error=None if found else "not_found",
    )


def cas(
    client: str,
    call: float,
    ret: float | None,
    expected: str | None,
    new: str,
    *,
    failed: bool = False,
    current: str | msgspec.UnsetType | None = msgspec.UNSET,
    key: str = "k",
) -> Operation:
    """A compare-and-set from `expected` (None: if absent) to `new`."""
    return Operation(
        client=client,
        op="cas",
        key=key,
        value=new,
        if_value=expected,
        if_absent=expected is None,
        call_time=call,
        return_time=ret,
        status="ok" if ret is not None else "unknown",
        error="cas_failed" if failed else None,
        current=current,
    )


def range_read(
    client: str,
    call: float,
    ret: float | None,
    kvs: dict[str, str] | None,
    *,
    prefix: str | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
    count: int | None = None,
    more: bool | None = None,
) -> Operation:
    """A range read answering `kvs` (in key order); `ret` None: outcome unknown."""
    return Operation(
        client=client,
        op="range",
        prefix=prefix,
        start=start if prefix is not None or start is not None else "",
        end=end,
        limit=limit,
        call_time=call,
        return_time=ret,
        status="ok" if ret is not None else "unknown",
        kvs=None if kvs is None else tuple(sorted(kvs.items())),
        count=count,
        more=more,
    )


def delete_range(
    client: str,
    call: float,
    ret: float | None,
    deleted: int | None,
    *,
    prefix: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Operation:
    return Operation(
        client=client,
        op="delrange",
        prefix=prefix,
        start=start if prefix is not None or start is not None else "",
        end=end,
        call_time=call,
        return_time=ret,
        status="ok" if ret is not None else "unknown",
        deleted=deleted,
    )


def txn(
    client: str,
    call: float,
    ret: float | None,
    compare: list[Compare],
    success: list[TxnOp],
    failure: list[TxnOp] | None = None,
    *,
    succeeded: bool | None = None,
    results: list[StepResult] | None = None,
) -> Operation:
    """A transaction; with `ret` None its outcome is unknown (succeeded and results unused)."""
    return Operation(
        client=client,
        op="txn",
        compare=tuple(compare),
        success=tuple(success),
        failure=tuple(failure or ()),
        call_time=call,
        return_time=ret,
        status="ok" if ret is not None else "unknown",
        succeeded=succeeded if ret is not None else None,
        results=tuple(results) if results is not None and ret is not None else None,
    )
