"""Synthetic histories for testing and benchmarking the checker.

Concurrent clients run operations against one atomic key-value map: each operation takes effect
at a random instant inside its [call, return] interval, so the recorded history is linearizable
by construction. Some operations time out (recorded as unknown: half of them took effect) and
some fail cleanly (no effect). `inject_stale_read` then breaks one read to make a history that
is certainly not linearizable.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import msgspec

from raftkv.check.history import CAS_FAILED, NOT_FOUND, Operation, OperationKind, Status

# Times are rounded to microseconds; rounding is monotonic, so it keeps the history linearizable.
TIME_DECIMALS = 6


@dataclass(frozen=True)
class Workload:
    operation_count: int
    client_count: int = 64
    key_count: int = 5
    get_fraction: float = 0.45
    put_fraction: float = 0.30
    cas_fraction: float = 0.15  # the rest are deletes
    indeterminate_fraction: float = 0.02
    failed_fraction: float = 0.01
    duration_mean: float = 1.0
    think_time_mean: float = 0.2
    # None: every write writes a value of its own (as real tests should, for sharper checks);
    # a number: values are drawn from that many, so writes repeat each other's values.
    value_count: int | None = None


@dataclass
class _Planned:
    client: str
    op: OperationKind
    key: str
    value: str | None
    if_value: str | None
    if_absent: bool
    call_time: float
    effect_time: float
    return_time: float
    outcome: Status
    applied: bool


def _plan(workload: Workload, rng: random.Random) -> list[_Planned]:
    keys = [f"k{number}" for number in range(workload.key_count)]
    last_written: dict[str, str] = {}
    free_at = [(0.0, number) for number in range(workload.client_count)]
    planned: list[_Planned] = []
    for number in range(workload.operation_count):
        free_time, client = heapq.heappop(free_at)
        call_time = round(free_time + rng.expovariate(1 / workload.think_time_mean), TIME_DECIMALS)
        duration = rng.expovariate(1 / workload.duration_mean)
        return_time = round(call_time + duration, TIME_DECIMALS)
        effect_time = call_time + rng.random() * (return_time - call_time)
        heapq.heappush(free_at, (return_time, client))
        key = rng.choice(keys)
        value: str | None = None
        if_value: str | None = None
        if_absent = False
        op: OperationKind
        outcome: Status
        draw = rng.random()
        if draw < workload.get_fraction:
            op = "get"
        elif draw < workload.get_fraction + workload.put_fraction:
            op, value = "put", _value(workload, number, rng)
        elif draw < workload.get_fraction + workload.put_fraction + workload.cas_fraction:
            op, value = "cas", _value(workload, number, rng)
            # Expect the latest value written in call order: often right, sometimes stale.
            if key in last_written and rng.random() < 0.8:
                if_value = last_written[key]
            else:
                if_absent = True
        else:
            op = "del"
        if value is not None:
            last_written[key] = value
        draw = rng.random()
        if draw < workload.indeterminate_fraction:
            outcome, applied = "unknown", rng.random() < 0.5
        elif draw < workload.indeterminate_fraction + workload.failed_fraction:
            outcome, applied = "fail", False
        else:
            outcome, applied = "ok", True
        planned.append(
            _Planned(
                f"c{client}", op, key, value, if_value, if_absent,
                call_time, effect_time, return_time, outcome, applied,
            )
        )  # fmt: skip
    return planned


def _value(workload: Workload, number: int, rng: random.Random) -> str:
    if workload.value_count is None:
        return f"v{number}"
    return f"v{rng.randrange(workload.value_count)}"


def generate_history(workload: Workload, seed: int) -> list[Operation]:
    """A linearizable history of `workload.operation_count` operations, in call order."""
    rng = random.Random(seed)
    planned = _plan(workload, rng)
    register: dict[str, str] = {}
    outcomes: dict[int, dict[str, object]] = {}
    # Apply the operations that took effect in effect order: this order linearizes them.
    for number in sorted(
        (n for n, plan in enumerate(planned) if plan.applied),
        key=lambda n: planned[n].effect_time,
    ):
        plan = planned[number]
        current = register.get(plan.key)
        fields: dict[str, object] = {}
        if plan.op == "get":
            fields = {"result": current} if current is not None else {"error": NOT_FOUND}
        elif plan.op == "put":
            assert plan.value is not None
            register[plan.key] = plan.value
        elif plan.op == "del":
            if current is None:
                fields = {"error": NOT_FOUND}
            else:
                del register[plan.key]
        elif (current is None) if plan.if_absent else (current == plan.if_value):
            assert plan.value is not None
            register[plan.key] = plan.value
        else:
            fields = {"error": CAS_FAILED, "current": current}
        outcomes[number] = fields
    history: list[Operation] = []
    for number, plan in enumerate(planned):
        operation = Operation(
            client=plan.client,
            op=plan.op,
            key=plan.key,
            value=plan.value,
            if_value=plan.if_value,
            if_absent=plan.if_absent,
            call_time=plan.call_time,
            return_time=plan.return_time,
            status=plan.outcome,
            error="not_leader" if plan.outcome == "fail" else None,
        )
        if plan.outcome == "ok":
            operation = msgspec.structs.replace(operation, **outcomes[number])
        elif plan.outcome == "unknown" and number % 2:
            operation = msgspec.structs.replace(operation, return_time=None)
        history.append(operation)
    return history


def inject_stale_read(history: list[Operation], seed: int) -> tuple[list[Operation], int]:
    """A copy of `history` where one read, near the middle, returns a value overwritten before
    it was called: written by W1, then W2 was called after W1 returned and returned before the
    read was called. Returns the copy and the read's index. Values must be unique per write,
    as generate_history makes them.
    """
    rng = random.Random(seed)
    writes = [
        op for op in history if op.status == "ok" and op.op in ("put", "cas") and op.error is None
    ]
    start = len(history) // 2 + rng.randrange(max(1, len(history) // 10))
    for index in list(range(start, len(history))) + list(range(start)):
        read = history[index]
        if read.op != "get" or read.status != "ok" or read.return_time is None:
            continue
        earlier = [w for w in writes if w.key == read.key and _returned_before(w, read)]
        if not earlier:
            continue
        newest = max(earlier, key=lambda w: w.return_time or 0.0)
        stale = [w for w in earlier if _returned_before(w, newest)]
        if not stale:
            continue
        copy = list(history)
        copy[index] = msgspec.structs.replace(read, result=rng.choice(stale).value, error=None)
        return copy, index
    raise ValueError("no read has a definitely overwritten value to return")


def _returned_before(first: Operation, second: Operation) -> bool:
    return first.return_time is not None and first.return_time < second.call_time


def inject_lost_update(history: list[Operation], seed: int) -> tuple[list[Operation], int]:
    """A copy of `history` with one more compare-and-set, concurrent with a successful one
    near the middle, that also succeeds from the same value: one of the two updates was lost.
    Returns the copy and the added operation's index (the last)."""
    rng = random.Random(seed)
    start = len(history) // 2 + rng.randrange(max(1, len(history) // 10))
    for index in list(range(start, len(history))) + list(range(start)):
        original = history[index]
        if (
            original.op == "cas"
            and original.if_value is not None
            and original.status == "ok"
            and original.error is None
        ):
            twin = msgspec.structs.replace(original, client="c-lost", value=f"lost{index}")
            return [*history, twin], len(history)
    raise ValueError("no successful compare-and-set to race with")
