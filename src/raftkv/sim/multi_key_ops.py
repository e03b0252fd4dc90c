"""Ranges, delete-ranges and transactions for the simulators' clients (SPEC §6).

Both simulators' clients keep drawing their operations as before, from their own random
streams; then, from a stream of its own (`multi_key_rng`), a `MultiKeyMix` turns some of
them into multi-key operations of the same class: a get into a range read (served as a read),
a write into a delete-range or a transaction (proposed as a write). So the clients' streams
advance as they did, and the operations take the paths they took; what changes is what the
commands do. The checker then judges them with its map model (raftkv.check.map_model).

The key space is the clients' own (x, y, z): prefixes and [start, end) ranges over it, some
with a limit; transactions compare values the client saw, versions, existence and the
mod_index of the client's last write of a key, and run puts, deletes, gets and ranges.
"""

from __future__ import annotations

import random
from typing import Any, Final

from raftkv.check.history import OperationKind, StepResult
from raftkv.kv.commands import Command, Result
from raftkv.kv.ranges import KeyRange
from raftkv.kv.store import KVStore
from raftkv.kv.txn import Compare, Txn, TxnOp
from raftkv.sim import draws

# Of the gets, how many become range reads; of the writes, how many become multi-key ones
# (and of those, how many delete a range rather than run a transaction).
RANGE_SHARE = 0.25
MULTI_KEY_WRITE_SHARE = 0.3
DELETE_RANGE_SHARE = 0.2
# Ranges over x, y, z: prefixes (one naming no key: it must read nothing) and intervals,
# one of them all three. No empty bound: the HTTP API takes keys of 1 byte or more. None
# reaches below "w": the whole-node simulator's load writers write "load-N" keys, outside
# the checked history.
PREFIXES = ("x", "y", "z", "w")
BOUNDS = (("x", "y"), ("x", "z"), ("y", None), ("w", "y"), ("y", "z"), ("w", None))
LIMIT_SHARE = 0.3

# The KeyRange of each range named so far (immutable, so shared): the workload names only
# the handful above, and building one is an interpreted call.
_KEY_RANGES: dict[tuple[str | None, str | None, str | None], KeyRange] = {}


class RangeSpec:
    """A range as history records and commands name it. (Plain classes here, not
    dataclasses: mypyc leaves a dataclass's __init__ interpreted.)"""

    def __init__(
        self,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.prefix: Final = prefix
        self.start: Final = start
        self.end: Final = end
        self.limit: Final = limit

    @property
    def key_range(self) -> KeyRange:
        named = (self.prefix, self.start, self.end)
        found = _KEY_RANGES.get(named)
        if found is None:
            if self.prefix is not None:
                found = KeyRange.prefix(self.prefix)
            else:
                found = KeyRange(self.start or "", self.end)
            _KEY_RANGES[named] = found
        return found

    def fields(self) -> dict[str, Any]:
        """The history fields naming it (docs/history-format.md)."""
        named: dict[str, Any] = {"prefix": self.prefix, "start": self.start, "end": self.end}
        named["limit"] = self.limit
        return {name: value for name, value in named.items() if value is not None}


class MultiKeyPlan:
    """A multi-key operation: its kind, its history fields, and for a write its command
    (the session fields are set per attempt)."""

    def __init__(
        self,
        kind: OperationKind,  # "range" | "delrange" | "txn"
        fields: dict[str, Any],
        spec: RangeSpec | None = None,  # range
        command: Command | None = None,  # delrange, txn
    ) -> None:
        self.kind = kind
        self.fields = fields
        self.spec = spec
        self.command = command


class MultiKeyMix:
    """Decides which operations become multi-key ones, from its own random stream."""

    def __init__(self, rng: random.Random, keys: tuple[str, ...]) -> None:
        self._rng = rng
        self._keys = keys

    def _range(self) -> RangeSpec:
        rng = self._rng
        limit = draws.choice(rng, (1, 2)) if rng.random() < LIMIT_SHARE else None
        if rng.random() < 0.5:
            return RangeSpec(prefix=draws.choice(rng, PREFIXES), limit=limit)
        start, end = draws.choice(rng, BOUNDS)
        return RangeSpec(start=start, end=end, limit=limit)

    def read(self) -> MultiKeyPlan | None:
        """Maybe a range read instead of a get."""
        if self._rng.random() >= RANGE_SHARE:
            return None
        spec = self._range()
        return MultiKeyPlan("range", spec.fields(), spec=spec)

    def write(
        self, seen: dict[str, str], mod_index: dict[str, int], new_value: Any
    ) -> MultiKeyPlan | None:
        """Maybe a delete-range or a transaction instead of a write. `seen`: values the
        client saw per key; `mod_index`: where its own last write of a key landed;
        `new_value()` gives a fresh value."""
        rng = self._rng
        if rng.random() >= MULTI_KEY_WRITE_SHARE:
            return None
        if rng.random() < DELETE_RANGE_SHARE:
            drawn = self._range()  # its limit drawn all the same, then dropped
            spec = RangeSpec(drawn.prefix, drawn.start, drawn.end)
            key_range = spec.key_range
            command = Command(op="delrange", key=key_range.start, end=key_range.end)
            return MultiKeyPlan("delrange", spec.fields(), command=command)
        compares = [self._compare(seen, mod_index) for _ in range(draws.randint(rng, 1, 2))]
        success = self._branch(new_value, writes=True)
        failure = self._branch(new_value, writes=rng.random() < 0.5)
        txn = Txn(compares, success, failure)
        fields = {"compare": tuple(compares), "success": tuple(success),
                  "failure": tuple(failure)}  # fmt: skip
        return MultiKeyPlan("txn", fields, command=Command(op="txn", key="", txn=txn))

    def _compare(self, seen: dict[str, str], mod_index: dict[str, int]) -> Compare:
        rng = self._rng
        key = draws.choice(rng, self._keys)
        draw = rng.random()
        if draw < 0.4:
            return Compare(key, "value", draws.choice(rng, ("==", "!=")), seen.get(key, ""))
        if draw < 0.6:
            return Compare(key, "exists", "==", rng.random() < 0.5)
        if draw < 0.8:
            return Compare(
                key, "version", draws.choice(rng, ("==", "<", ">")), draws.randint(rng, 0, 3)
            )
        return Compare(key, "mod_index", draws.choice(rng, ("==", ">")), mod_index.get(key, 0))

    def _branch(self, new_value: Any, *, writes: bool) -> list[TxnOp]:
        rng = self._rng
        steps: list[TxnOp] = []
        for _ in range(draws.randint(rng, 1, 3)):
            draw = rng.random()
            key = draws.choice(rng, self._keys)
            if writes and draw < 0.45:
                steps.append(TxnOp("put", key, new_value()))
            elif writes and draw < 0.6:
                steps.append(TxnOp("delete", key))
            elif draw < 0.8:
                steps.append(TxnOp("get", key))
            else:
                spec = self._range()
                steps.append(TxnOp("range", prefix=spec.prefix, start=spec.start,
                                   end=spec.end, limit=spec.limit))  # fmt: skip
        return steps


def range_answer(store: KVStore, spec: RangeSpec) -> dict[str, Any]:
    """What a range read of `store` answers, as history fields."""
    page = store.range(spec.key_range, None, spec.limit or 1000)
    kvs = tuple((key, record.value) for key, record in page.items)
    return {"kvs": kvs, "count": page.count, "more": page.more}


def write_answer(result: Result) -> dict[str, Any]:
    """The history fields of a delete-range's or transaction's applied result."""
    if result.deleted is not None:
        return {"deleted": result.deleted}
    if result.txn is None:
        return {}
    return {"succeeded": result.txn.succeeded,
            "results": tuple(step_result(answer) for answer in result.txn.results)}  # fmt: skip


def step_result(answer: dict[str, Any]) -> StepResult:
    """One transaction answer (as the store and the HTTP API give it) as a history record."""
    if answer.get("op") == "get":
        found = answer.get("kv")
        return StepResult(value=found["value"] if found else None)
    if answer.get("op") == "delete":
        return StepResult(deleted=int(answer["deleted"]))
    if answer.get("op") == "range":
        kvs = tuple((kv["key"], kv.get("value")) for kv in answer["kvs"])
        return StepResult(kvs=kvs, count=answer.get("count"), more=answer.get("more"))
    return StepResult()
