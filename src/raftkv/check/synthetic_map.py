"""Synthetic histories with ranges, delete-ranges and transactions (beside synthetic.py's
single-key ones), for testing and benchmarking the map model.

Concurrent clients run operations on raftkv's own state machine (KVStore): each takes effect
at a random instant inside its [call, return] interval, in that order, and is recorded with
what the store answered, so the history is linearizable by construction and its answers are
exactly the service's (SPEC §6). Some operations time out (unknown: half of them took
effect) and some fail cleanly (no effect). `corrupt_answer` then changes one answer, which
may or may not leave it linearizable.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any

import msgspec

from raftkv.check.history import CAS_FAILED, NOT_FOUND, Operation, Status, StepResult
from raftkv.check.synthetic import TIME_DECIMALS
from raftkv.kv.commands import Command, Result, encode_command
from raftkv.kv.ranges import KeyRange
from raftkv.kv.store import TXN_RANGE_LIMIT_DEFAULT, KVStore
from raftkv.kv.txn import Compare, Txn, TxnOp


@dataclass(frozen=True)
class MapWorkload:
    operation_count: int
    client_count: int = 4
    keys: tuple[str, ...] = ("a/1", "a/2", "b/1", "b/2")
    range_fraction: float = 0.2
    delete_range_fraction: float = 0.05
    txn_fraction: float = 0.25  # the rest are single-key gets, puts, deletes and cas
    indeterminate_fraction: float = 0.05
    failed_fraction: float = 0.02
    duration_mean: float = 1.0
    think_time_mean: float = 0.3
    # mod_index compares are assumed to go either way by the checker (map_model.py).
    compare_targets: tuple[str, ...] = ("value", "version", "exists", "mod_index")


def _key_range(rng: random.Random, keys: tuple[str, ...]) -> dict[str, Any]:
    """A prefix or a [start, end) over the key space, now and then with a limit."""
    fields: dict[str, Any]
    if rng.random() < 0.5:
        fields = {"prefix": rng.choice(("", "a/", "b/", "a/1"))}
    else:
        start, end = sorted(rng.sample(keys, 2))
        fields = {"start": start, "end": end if rng.random() < 0.8 else None}
    if rng.random() < 0.3:
        fields["limit"] = rng.randint(1, 2)
    return fields


def _plan_txn(workload: MapWorkload, rng: random.Random, value: str) -> dict[str, Any]:
    keys = workload.keys
    compare = []
    for _ in range(rng.randint(0, 2)):
        key, target = rng.choice(keys), rng.choice(workload.compare_targets)
        compared: str | int | bool
        op = rng.choice(("==", "!="))
        if target == "value":
            compared, op = rng.choice(("", "v1", "v2", "v3")), rng.choice(("==", "!=", "<", ">"))
        elif target == "exists":
            compared = rng.random() < 0.5
        else:
            compared, op = rng.randint(0, 3), rng.choice(("==", "!=", "<", ">"))
        compare.append(Compare(key, target, op, compared))

    def branch() -> list[TxnOp]:
        steps = []
        for number in range(rng.randint(0, 3)):
            kind = rng.choice(("put", "put", "delete", "get", "range"))
            if kind == "range":
                steps.append(TxnOp("range", **_key_range(rng, keys)))
            elif kind == "put":
                steps.append(TxnOp("put", rng.choice(keys), f"{value}.{number}"))
            else:
                steps.append(TxnOp(kind, rng.choice(keys)))
        return steps

    return {"compare": tuple(compare), "success": tuple(branch()), "failure": tuple(branch())}


def _plan(workload: MapWorkload, rng: random.Random, number: int, client: str) -> Operation:
    keys = workload.keys
    value = f"v{number}"
    draw = rng.random()
    fields: dict[str, Any]
    if draw < workload.range_fraction:
        fields = {"op": "range", **_key_range(rng, keys)}
    elif draw < workload.range_fraction + workload.delete_range_fraction:
        fields = {"op": "delrange", **_key_range(rng, keys)}
        fields.pop("limit", None)
    elif draw < workload.range_fraction + workload.delete_range_fraction + workload.txn_fraction:
        fields = {"op": "txn", **_plan_txn(workload, rng, value)}
    else:
        kind = rng.choice(("get", "get", "put", "del", "cas"))
        fields = {"op": kind, "key": rng.choice(keys)}
        if kind in ("put", "cas"):
            fields["value"] = value
        if kind == "cas":
            if rng.random() < 0.3:
                fields["if_absent"] = True
            else:
                fields["if_value"] = f"v{rng.randrange(max(1, number))}"
    return Operation(client=client, call_time=0.0, **fields)


def answer(store: KVStore, index: int, operation: Operation) -> dict[str, Any]:
    """Apply `operation` to `store` at log `index`; the fields recording its answer."""
    kind = operation.op
    if kind == "get":
        found = store.get(operation.key)
        return {"result": found} if found is not None else {"error": NOT_FOUND}
    if kind == "range":
        key_range = (
            KeyRange.prefix(operation.prefix)
            if operation.prefix is not None
            else KeyRange(operation.start or "", operation.end)
        )
        page = store.range(key_range, None, operation.limit or TXN_RANGE_LIMIT_DEFAULT)
        kvs = tuple((key, record.value) for key, record in page.items)
        return {"kvs": kvs, "count": page.count, "more": page.more}
    command = Command(op=kind, key=operation.key, value=operation.value,
                      if_value=operation.if_value, if_absent=operation.if_absent)  # fmt: skip
    if kind == "delrange":
        start = operation.prefix if operation.prefix is not None else operation.start or ""
        end = (
            KeyRange.prefix(operation.prefix).end if operation.prefix is not None else operation.end
        )
        command = Command(op="delrange", key=start, end=end)
    elif kind == "txn":
        txn = Txn(list(operation.compare), list(operation.success), list(operation.failure))
        command = Command(op="txn", key="", txn=txn)
    result = store.apply(index, encode_command(command))
    assert isinstance(result, Result) and (result.ok or result.error in (NOT_FOUND, CAS_FAILED))
    if kind == "delrange":
        return {"deleted": result.deleted}
    if kind == "txn":
        assert result.txn is not None
        results = tuple(_step_result(step) for step in result.txn.results)
        return {"succeeded": result.txn.succeeded, "results": results}
    if result.error == CAS_FAILED:
        return {"error": CAS_FAILED, "current": result.current}
    return {"error": result.error} if result.error else {}


def _step_result(answer: dict[str, Any]) -> StepResult:
    if answer["op"] == "get":
        return StepResult(value=answer["kv"]["value"] if answer["kv"] else None)
    if answer["op"] == "delete":
        return StepResult(deleted=answer["deleted"])
    if answer["op"] == "range":
        kvs = tuple((kv["key"], kv.get("value")) for kv in answer["kvs"])
        return StepResult(kvs=kvs, count=answer["count"], more=answer["more"])
    return StepResult()


def generate_map_history(workload: MapWorkload, seed: int) -> list[Operation]:
    """A linearizable history of `workload.operation_count` operations, in call order."""
    rng = random.Random(seed)
    free_at = [(0.0, number) for number in range(workload.client_count)]
    planned: list[tuple[Operation, float, Status, bool]] = []
    for number in range(workload.operation_count):
        free_time, client = heapq.heappop(free_at)
        call = round(free_time + rng.expovariate(1 / workload.think_time_mean), TIME_DECIMALS)
        ret = round(call + rng.expovariate(1 / workload.duration_mean), TIME_DECIMALS)
        effect = call + rng.random() * (ret - call)
        heapq.heappush(free_at, (ret, client))
        operation = _plan(workload, rng, number, f"c{client}")
        operation = msgspec.structs.replace(operation, call_time=call, return_time=ret)
        draw = rng.random()
        outcome: Status
        if draw < workload.indeterminate_fraction:
            outcome, applied = "unknown", rng.random() < 0.5
        elif draw < workload.indeterminate_fraction + workload.failed_fraction:
            outcome, applied = "fail", False
        else:
            outcome, applied = "ok", True
        planned.append((operation, effect, outcome, applied))
    store = KVStore()
    answers: dict[int, dict[str, Any]] = {}
    effect_order = sorted((n for n, plan in enumerate(planned) if plan[3]),
                          key=lambda n: planned[n][1])  # fmt: skip
    for index, number in enumerate(effect_order, start=1):
        answers[number] = answer(store, index, planned[number][0])
    history = []
    for number, (operation, _, outcome, _) in enumerate(planned):
        if outcome == "ok":
            operation = msgspec.structs.replace(operation, **answers[number])
        elif outcome == "fail":
            operation = msgspec.structs.replace(operation, status="fail", error="not_leader")
        else:
            operation = msgspec.structs.replace(operation, status="unknown", return_time=None)
        history.append(operation)
    return history


def corrupt_answer(history: list[Operation], seed: int) -> list[Operation]:
    """A copy of `history` with one answer changed (a value read, a range's keys, a
    delete-range's count, a transaction's answer); it may still be linearizable."""
    rng = random.Random(seed)
    answered = [n for n, op in enumerate(history) if op.status == "ok"]
    if not answered:
        return list(history)
    number = rng.choice(answered)
    operation = history[number]
    copy = list(history)
    if operation.op == "range":
        kvs = operation.kvs or ()
        changed = kvs[:-1] if kvs and rng.random() < 0.5 else (*kvs, ("a/1", "v0"))
        copy[number] = msgspec.structs.replace(operation, kvs=tuple(sorted(set(changed))))
    elif operation.op == "delrange":
        copy[number] = msgspec.structs.replace(operation, deleted=(operation.deleted or 0) + 1)
    elif operation.op == "txn" and operation.results:
        branch = operation.success if operation.succeeded else operation.failure
        results = list(operation.results)
        position = rng.randrange(len(results))
        if branch[position].op == "get":
            results[position] = StepResult(value=f"v{rng.randrange(number + 1)}")
        elif branch[position].op == "range":
            results[position] = StepResult(kvs=(("a/1", "v0"),))
        elif branch[position].op == "delete":
            results[position] = StepResult(deleted=1 - (results[position].deleted or 0))
        copy[number] = msgspec.structs.replace(operation, results=tuple(results))
    elif operation.op == "get":
        copy[number] = msgspec.structs.replace(
            operation, result=f"v{rng.randrange(number + 1)}", error=None
        )
    return copy
