"""A brute-force reference for histories with ranges, delete-ranges and transactions.

It replays every order of the operations that respects real time (with every subset of the
indeterminate ones) on raftkv's own state machine, KVStore, and compares each answer the
store gives with the recorded one: independent of the checker's map model. Only for a
handful of operations, and only without mod_index/create_index compares (their log indexes
are not in a history; the checker assumes them either way).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import msgspec

from raftkv.check.history import Operation, StepResult, is_observation_error
from raftkv.check.synthetic_map import answer
from raftkv.kv.store import KVStore

_ANSWER_FIELDS = ("result", "error", "current", "kvs", "count", "more", "deleted",
                  "succeeded", "results")  # fmt: skip


def _definite(operation: Operation) -> bool:
    return operation.status == "ok" or is_observation_error(operation)


def _matches(operation: Operation, fields: dict[str, object]) -> bool:
    """Whether the recorded answer is what the store answered (fields not recorded match)."""
    for name in _ANSWER_FIELDS:
        recorded = getattr(operation, name)
        if name == "current" and recorded is msgspec.UNSET:
            continue
        if name in ("count", "more") and recorded is None:
            continue
        answered = fields.get(name, msgspec.UNSET if name == "current" else None)
        if name == "results" and recorded is not None and answered is not None:
            answered = _as_recorded(recorded, answered)  # type: ignore[arg-type]
        if recorded != answered:
            return False
    return True


def _as_recorded(recorded: tuple[StepResult, ...], answered: tuple[StepResult, ...]) -> object:
    """A transaction's step answers with the `count` and `more` its recorded steps leave
    out left out too, as for a whole operation (the checker's convention: not recorded,
    not compared)."""
    if len(recorded) != len(answered):
        return answered
    return tuple(
        msgspec.structs.replace(
            step,
            count=step.count if mine.count is not None else None,
            more=step.more if mine.more is not None else None,
        )
        for mine, step in zip(recorded, answered, strict=True)
    )


def brute_force_map_linearizable(history: Sequence[Operation]) -> bool:
    relevant = [
        op
        for op in history
        if _definite(op) or (op.status == "unknown" and op.op not in ("get", "range"))
    ]
    definite = [op for op in relevant if _definite(op)]
    maybe = [op for op in relevant if not _definite(op)]

    def ends(op: Operation) -> float:
        return op.return_time if _definite(op) and op.return_time is not None else math.inf

    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(definite + list(chosen)):
                if any(
                    ends(later) < earlier.call_time
                    for position, earlier in enumerate(order)
                    for later in order[position + 1 :]
                ):
                    continue
                store = KVStore()
                if all(
                    not _definite(op) or _matches(op, fields)
                    for index, op in enumerate(order, start=1)
                    for fields in [answer(store, index, op)]
                ):
                    return True
    return False
