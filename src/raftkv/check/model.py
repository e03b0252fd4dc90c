"""The register model: each history operation reduced to a guard and an effect on one key.

Per key the state is a string or None (absent). Every operation becomes one of a few kinds, a
guard on the value it finds plus the value it leaves; the search (Lowe 2017, §3) then only
needs `kind`, `expected` and `new_value`. Two reductions keep the search small and are exact,
not heuristics (each is argued at its function):

- operations that cannot have had an effect are dropped (definite failures, reads that never
  answered);
- an indeterminate write whose value no other operation could observe is removed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final, NamedTuple

import msgspec

from raftkv.check.history import (
    CAS_FAILED,
    NOT_FOUND,
    Operation,
    is_conditional,
    is_observation_error,
)
from raftkv.check.limits import PRUNE_ROUNDS_MAX

# Kinds are small ints, not an Enum, because the search compares them in its inner loop.
READ: Final = 0  # guard: value == expected; no change
READ_OTHER: Final = 1  # guard: value != expected; no change (a cas_failed without `current`)
WRITE: Final = 2  # no guard; value := new_value
COMPARE_AND_SET: Final = 3  # guard: value == expected; value := new_value
DELETE_PRESENT: Final = 4  # guard: value is not None; value := None
IMPOSSIBLE: Final = 5  # no value satisfies it (a cas_failed reporting current == expected)

KIND_NAMES: Final = ("read", "read-other", "write", "compare-and-set", "delete", "impossible")


class ModelOperation(NamedTuple):
    """An operation as the search sees it; `return_time` None means indeterminate."""

    history_index: int  # position in the history, to name the operation in reports
    kind: int
    expected: str | None
    new_value: str | None
    call_time: float
    return_time: float | None

    @property
    def observes_only(self) -> bool:
        """It never changes the register, so dropping it can only make linearizing easier."""
        return self.kind in (READ, READ_OTHER, IMPOSSIBLE)


def to_model(operation: Operation, index: int) -> ModelOperation | None:
    """`operation` as a model operation, or None when it cannot have had any effect.

    Statuses (docs/history-format.md): "unknown" writes may take effect at any time after their
    call (return = +infinity), "unknown" reads are dropped; "fail" without an observation error
    had no effect; everything else completed between call and return.
    """
    call_time = operation.call_time
    expected = None if operation.if_absent else operation.if_value
    if operation.status == "unknown":
        if operation.op == "get":
            return None
        if is_conditional(operation):
            return ModelOperation(
                index, COMPARE_AND_SET, expected, operation.value, call_time, None
            )
        value = None if operation.op == "del" else operation.value
        return ModelOperation(index, WRITE, None, value, call_time, None)
    if operation.status == "fail" and not is_observation_error(operation):
        return None
    return_time = operation.return_time
    assert return_time is not None, "validate_operation lets no completed call lack a return"

    def model(kind: int, guard: str | None, new_value: str | None = None) -> ModelOperation:
        return ModelOperation(index, kind, guard, new_value, call_time, return_time)

    if operation.op == "get":
        return model(READ, None if operation.error == NOT_FOUND else operation.result)
    if operation.op == "del":
        return model(READ, None) if operation.error == NOT_FOUND else model(DELETE_PRESENT, None)
    if is_conditional(operation):
        if operation.error != CAS_FAILED:
            return model(COMPARE_AND_SET, expected, operation.value)
        if operation.current is msgspec.UNSET:
            return model(READ_OTHER, expected)
        if operation.current == expected:
            return model(IMPOSSIBLE, expected)
        return model(READ, operation.current)
    return model(WRITE, None, operation.value)


def step(operation: ModelOperation, value: str | None) -> tuple[bool, str | None]:
    """Whether `operation` can take effect on `value`, and the value it leaves.

    The reference semantics; the search inlines the same rules for speed.
    """
    kind = operation.kind
    if kind == READ:
        return value == operation.expected, value
    if kind == READ_OTHER:
        return value != operation.expected, value
    if kind == WRITE:
        return True, operation.new_value
    if kind == COMPARE_AND_SET:
        matches = value == operation.expected
        return matches, operation.new_value if matches else value
    if kind == DELETE_PRESENT:
        return value is not None, None
    return False, value


def weaken(operation: ModelOperation) -> ModelOperation | None:
    """A weaker version of `operation`: any linearization of a history stays one after this.

    An observation is dropped (it changes nothing); a completed write becomes indeterminate (it
    may still take effect where it did). Used to shrink a failing history soundly.
    """
    if operation.observes_only:
        return None
    if operation.return_time is None:
        return operation
    if operation.kind == DELETE_PRESENT:
        return operation._replace(kind=WRITE, expected=None, return_time=None)
    return operation._replace(return_time=None)


def remove_unobservable_writes(operations: Iterable[ModelOperation]) -> list[ModelOperation]:
    """`operations` without the indeterminate writes whose value nothing could observe.

    Exact: let W be indeterminate, writing X, and let no other operation whose guard accepts X
    return at or after W's call (so none can come after W). In a linearization that includes
    W, every operation between W and the next write finds X, so none of them is definite, and
    the indeterminate compare-and-sets among them changed nothing; dropping W and them leaves a
    linearization without W. Conversely W may simply not take effect. Removing W removes a
    guard, so other removals may follow: repeat, within a bound.
    """
    remaining = list(operations)
    for _ in range(PRUNE_ROUNDS_MAX):
        # For each kind of guard, the latest return (+infinity if indeterminate) among them.
        equal_latest: dict[str | None, float] = {}
        unequal_latest: dict[str | None, float] = {}
        present_latest = -math.inf
        for operation in remaining:
            latest = math.inf if operation.return_time is None else operation.return_time
            if operation.kind in (READ, COMPARE_AND_SET):
                guards, expected = equal_latest, operation.expected
            elif operation.kind == READ_OTHER:
                guards, expected = unequal_latest, operation.expected
            else:
                if operation.kind == DELETE_PRESENT:
                    present_latest = max(present_latest, latest)
                continue
            guards[expected] = max(guards.get(expected, -math.inf), latest)
        # "Some value other than X" needs only the two latest distinct expectations.
        unequal_top = sorted(unequal_latest.items(), key=lambda item: -item[1])[:2]

        kept = [
            operation
            for operation in remaining
            if operation.return_time is not None
            or operation.kind not in (WRITE, COMPARE_AND_SET)
            or (
                # A compare-and-set writing what it expects changes nothing at all.
                not (
                    operation.kind == COMPARE_AND_SET and operation.expected == operation.new_value
                )
                and _observable(
                    operation.new_value,
                    operation.call_time,
                    equal_latest,
                    present_latest,
                    unequal_top,
                )
            )
        ]
        if len(kept) == len(remaining):
            break
        remaining = kept
    return remaining


def _observable(
    value: str | None,
    since: float,
    equal_latest: dict[str | None, float],
    present_latest: float,
    unequal_top: list[tuple[str | None, float]],
) -> bool:
    """Whether an operation whose guard accepts `value` may return at or after `since`."""
    if equal_latest.get(value, -math.inf) >= since:
        return True
    if value is not None and present_latest >= since:
        return True
    return any(expected != value and latest >= since for expected, latest in unequal_top)


def find_unwritten_observation(operations: Iterable[ModelOperation]) -> ModelOperation | None:
    """The earliest-called definite operation that needs a value no operation writes before it
    returns (or an impossible one).

    Such an operation, with the writers of its value (all called after it returned), is not
    linearizable (every key starts absent), so the search need not exhaust everything before
    it to say so.
    """
    operations = list(operations)
    first_written: dict[str | None, float] = {}  # value -> earliest call of an op writing it
    for op in operations:
        if op.kind in (WRITE, COMPARE_AND_SET):
            first_written[op.new_value] = min(
                first_written.get(op.new_value, math.inf), op.call_time
            )
    offenders = [
        op
        for op in operations
        if op.kind == IMPOSSIBLE
        or (
            op.return_time is not None
            and op.kind in (READ, COMPARE_AND_SET)
            and op.expected is not None
            and first_written.get(op.expected, math.inf) > op.return_time
        )
    ]
    return min(offenders, key=lambda op: (op.call_time, op.history_index), default=None)
