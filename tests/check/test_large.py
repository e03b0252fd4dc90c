"""Large histories from linearizable simulations check as OK, fast; broken ones do not."""

from __future__ import annotations

import random
import time

from raftkv.check import Operation, check_history
from raftkv.check.history import OperationKind
from raftkv.check.synthetic import (
    Workload,
    generate_history,
    inject_lost_update,
    inject_stale_read,
)

OPERATIONS = 10_000
CLIENTS = 64
# Generous: the checker takes well under a second on these; the bound only catches a blow-up.
SECONDS_MAX = 20.0
KINDS: list[OperationKind] = ["get", "get", "put", "cas"]


def atomic_register_history(seed: int) -> list[Operation]:
    """Concurrent clients against one atomic register: each operation takes effect at a random
    instant inside its random [call, return] interval, so the history is linearizable. One in
    fifty calls times out and is recorded as unknown, whether or not it took effect."""
    rng = random.Random(seed)
    free_at = [0.0] * CLIENTS
    planned: list[tuple[float, int, Operation, bool]] = []
    for number in range(OPERATIONS):
        client = rng.randrange(CLIENTS)
        call = free_at[client] + rng.random()
        ret = call + rng.random() * 3
        free_at[client] = ret
        kind = rng.choice(KINDS)
        operation = Operation(
            client=f"c{client}", op=kind, key="register", call_time=call, return_time=ret,
            value=None if kind == "get" else f"v{number}",
        )  # fmt: skip
        applied = True
        if rng.random() < 0.02:
            operation = Operation(
                client=operation.client, op=kind, key="register", call_time=call,
                value=operation.value, status="unknown",
            )  # fmt: skip
            applied = rng.random() < 0.5
        planned.append((rng.uniform(call, ret), number, operation, applied))
    register: str | None = None
    last_written: str | None = None
    history: list[Operation | None] = [None] * OPERATIONS
    for _, number, operation, applied in sorted(planned):
        if operation.op == "cas":
            # Expect the last value this generator wrote: sometimes current, sometimes not.
            expected = last_written
            operation = Operation(
                client=operation.client, op="cas", key="register", value=operation.value,
                if_value=expected, if_absent=expected is None, call_time=operation.call_time,
                return_time=operation.return_time, status=operation.status,
            )  # fmt: skip
        if applied:
            if operation.op == "get" and operation.status == "ok":
                operation = _with_result(operation, register)
            elif operation.op == "put":
                register = operation.value
            elif operation.op == "cas":
                if register == operation.if_value:
                    register = operation.value
                elif operation.status == "ok":
                    operation = _failed_cas(operation, register)
        if operation.value is not None:
            last_written = operation.value
        history[number] = operation
    return [operation for operation in history if operation is not None]


def _with_result(operation: Operation, value: str | None) -> Operation:
    return Operation(
        client=operation.client, op="get", key=operation.key, call_time=operation.call_time,
        return_time=operation.return_time, result=value,
    )  # fmt: skip


def _failed_cas(operation: Operation, current: str | None) -> Operation:
    return Operation(
        client=operation.client, op="cas", key=operation.key, value=operation.value,
        if_value=operation.if_value, if_absent=operation.if_absent,
        call_time=operation.call_time, return_time=operation.return_time,
        error="cas_failed", current=current,
    )  # fmt: skip


def timed_check(history: list[Operation]) -> tuple[bool | None, float]:
    started = time.perf_counter()
    result = check_history(history)
    return result.ok, time.perf_counter() - started


def test_atomic_register_history_of_ten_thousand_operations_is_linearizable() -> None:
    for seed in (1, 2):
        history = atomic_register_history(seed)
        assert len(history) == OPERATIONS
        ok, seconds = timed_check(history)
        assert ok is True
        assert seconds < SECONDS_MAX


def test_key_value_history_of_ten_thousand_operations_is_linearizable() -> None:
    history = generate_history(Workload(OPERATIONS, client_count=CLIENTS, key_count=5), seed=7)
    ok, seconds = timed_check(history)
    assert ok is True
    assert seconds < SECONDS_MAX


def test_stale_read_in_a_large_history_is_found_and_shrunk_to_three_operations() -> None:
    history = generate_history(Workload(OPERATIONS, client_count=CLIENTS, key_count=5), seed=8)
    broken, index = inject_stale_read(history, seed=8)
    result = check_history(broken)
    assert result.ok is False
    (key,) = result.failed_keys
    minimal = result.keys[key].minimal
    assert len(minimal) == 3
    assert minimal[-1].index == index


def test_lost_update_in_a_large_history_is_found() -> None:
    history = generate_history(Workload(OPERATIONS, client_count=CLIENTS, key_count=3), seed=9)
    broken, index = inject_lost_update(history, seed=9)
    result = check_history(broken)
    assert result.ok is False
    (key,) = result.failed_keys
    assert index in {op.index for op in result.keys[key].minimal}
