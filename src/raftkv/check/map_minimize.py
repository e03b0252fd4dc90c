"""Shrinking a component that is not linearizable to a small sub-history that still fails.

The weakenings of minimize.py, on map_model's operations: an observation is dropped, and a
completed write (a put, a delete-range, a transaction that wrote) becomes one of unknown
outcome (it may still take effect, with the effect it had, or not at all). Either way every
linearization survives, so a weakened history that still has none proves the original has
none. First the history is cut at the return of the operation the search could not
linearize (minimize.truncate's argument: later calls dropped, unfinished ones weakened);
then chunks of what is left are weakened, halving the chunk when none can go (delta
debugging, Zeller & Hildebrandt 2002). A check whose search runs out of budget counts as
linearizable, so the result never claims more than was shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from raftkv.check.history import IndexedOperation
from raftkv.check.limits import MINIMIZE_STATES_PER_CHECK_MAX
from raftkv.check.map_model import MapOperation, Universe, to_map_model
from raftkv.check.map_search import search_map
from raftkv.check.minimize import Budget


@dataclass(frozen=True)
class MapMinimization:
    operations: tuple[IndexedOperation, ...]  # weakened ones with status "unknown"
    checks: int
    complete: bool  # no chunk of one operation can be weakened further


def _weakened(indexed: IndexedOperation) -> IndexedOperation:
    operation = indexed.operation
    if operation.status == "unknown":
        return indexed
    outcome = dict(result=None, error=None, current=msgspec.UNSET, kvs=None, count=None,
                   more=None, deleted=None, succeeded=None, results=None)  # fmt: skip
    unknown = msgspec.structs.replace(operation, status="unknown", **outcome)
    return IndexedOperation(indexed.index, unknown)


def _modelled(operations: Sequence[IndexedOperation], universe: Universe) -> list[MapOperation]:
    modelled = (to_map_model(op.operation, op.index, universe) for op in operations)
    return [model for model in modelled if model is not None]


def _fails(operations: Sequence[IndexedOperation], universe: Universe, budget: Budget) -> bool:
    budget.checks += 1
    states = min(budget.states_left, MINIMIZE_STATES_PER_CHECK_MAX)
    outcome = search_map(
        _modelled(operations, universe), universe.initial(), max_states=states,
        deadline=budget.deadline,
    )  # fmt: skip
    budget.states_left -= outcome.states_explored
    return outcome.ok is False


def _truncated(operations: Sequence[IndexedOperation], end_time: float) -> list[IndexedOperation]:
    kept = []
    for indexed in operations:
        operation = indexed.operation
        if operation.call_time > end_time:
            continue
        returned = operation.return_time is not None and operation.return_time <= end_time
        kept.append(indexed if returned else _weakened(indexed))
    return kept


def minimize_component(
    operations: Sequence[IndexedOperation],
    universe: Universe,
    budget: Budget,
    stuck_at: float | None,
) -> MapMinimization:
    """A small weakened sub-history of `operations` (one failing component) that still
    fails; `stuck_at`: the return time of the operation the search could not linearize."""
    current = [op for op in operations if to_map_model(op.operation, op.index, universe)]
    if stuck_at is not None and budget.left:
        truncated = _truncated(current, stuck_at)
        if len(truncated) < len(current) and _fails(truncated, universe, budget):
            current = truncated
    chunk = max(1, len(current) // 2)
    complete = False
    while budget.left:
        shrunk = False
        start = 0
        while start < len(current) and budget.left:
            # Weakening a write of unknown outcome changes nothing.
            part = [op for op in current[start : start + chunk] if op.operation.status != "unknown"]
            if not part:
                start += chunk
                continue
            chosen = {op.index for op in part}
            candidate = [
                weakened
                for op in current
                for weakened in [_weakened(op) if op.index in chosen else op]
                if weakened.operation.op not in ("get", "range")
                or weakened.operation.status != "unknown"
            ]
            if _fails(candidate, universe, budget):
                current, shrunk = candidate, True
            else:
                start += chunk
        if not shrunk:
            if chunk == 1:
                complete = budget.left
                break
            chunk = max(1, chunk // 2)
    # What is left: drop what the model ignores (observations of unknown outcome).
    kept = tuple(op for op in current if to_map_model(op.operation, op.index, universe) is not None)
    return MapMinimization(kept, budget.checks, complete)
