"""Terse constructors for hand-written histories in tests."""

from __future__ import annotations

import msgspec

from raftkv.check import Operation


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
