"""`check_history`: is a key-value history linearizable?

Linearizability is local (Herlihy & Wing 1990, §3.3): a history is linearizable exactly when
its restriction to each object is, so each key is checked on its own. With ranges,
delete-ranges and transactions the objects are components of keys instead (components.py):
one that holds such an operation is checked as a whole map (map_model.py, map_search.py);
the others are single keys, checked exactly as before. Per key: first the
short proofs of witness.py (stale read, lost update, read of a value never or not yet
written), then the search of Wing & Gong 1993 as refined by Lowe 2017 (search.py). A key that
fails is then explained: the deepest partial linearization reached, the operation that could
not follow it, and a minimised sub-history that still fails (minimize.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

import msgspec

# The results are in checker_records.py (interpreted: see its docstring); re-exported here.
from raftkv.check.checker_records import CheckResult as CheckResult
from raftkv.check.checker_records import KeyResult as KeyResult
from raftkv.check.components import Component, split_components
from raftkv.check.history import (
    History,
    IndexedOperation,
    Operation,
    checked_history,
    is_multi_key,
)
from raftkv.check.limits import (
    LOCALIZE_EARLY_STATES_MAX,
    MINIMIZE_CHECKS_MAX,
    MINIMIZE_STATES_MAX,
    SEARCH_FIRST_ATTEMPT_STATES,
    SEARCH_STATES_MAX,
)
from raftkv.check.map_minimize import minimize_component
from raftkv.check.map_model import Universe, to_map_model
from raftkv.check.map_search import search_map
from raftkv.check.minimize import Budget, localize, minimize_failure
from raftkv.check.model import ModelOperation, remove_unobservable_writes, step, to_model
from raftkv.check.search import SearchOutcome, search_linearization
from raftkv.check.witness import find_witness


def check_history(
    operations: Iterable[Operation],
    *,
    max_states: int = SEARCH_STATES_MAX,
    time_budget_seconds: float | None = None,
    minimize: bool = True,
    minimize_checks_max: int = MINIMIZE_CHECKS_MAX,
    minimize_states_max: int = MINIMIZE_STATES_MAX,
    validated: bool = False,
) -> CheckResult:
    """Check a key-value history for linearizability (every key starts absent).

    `max_states` bounds the configurations the search explores per key; the minimize_ limits
    bound, per key, the searches that shrink a failure (or localise one the search could not
    finish); `time_budget_seconds`, if given, bounds the whole call. Without a time budget
    the result depends on the history alone, so a simulator seed replays it exactly. Raises
    HistoryError if an operation is invalid, unless `validated`: every operation was
    validated already (a HistoryRecorder validates each one it records), so the check does
    not do it again.
    """
    history: History
    if not validated:
        history = checked_history(operations)
    elif isinstance(operations, History):
        history = operations
    else:
        history = History(tuple(operations))
    deadline = None if time_budget_seconds is None else time.monotonic() + time_budget_seconds
    if any(is_multi_key(operation) for operation in history.operations):
        return _check_components(
            history, max_states, deadline, minimize_checks_max if minimize else 0,
            minimize_states_max,
        )  # fmt: skip
    by_key: dict[str, list[IndexedOperation]] = {}
    for index, operation in enumerate(history.operations):
        by_key.setdefault(operation.key, []).append(IndexedOperation(index, operation))
    results: dict[str, KeyResult] = {}
    for key in sorted(by_key):
        budget = Budget(minimize_checks_max if minimize else 0, minimize_states_max, deadline)
        results[key] = _check_key(key, by_key[key], max_states, deadline, budget)
    verdicts = [result.ok for result in results.values()]
    ok = False if False in verdicts else (None if None in verdicts else True)
    return CheckResult(ok, len(history), results)


def _check_components(
    history: History,
    max_states: int,
    deadline: float | None,
    minimize_checks_max: int,
    minimize_states_max: int,
) -> CheckResult:
    """Check each component: single keys as `_check_key` does, the rest as whole maps."""
    operations = history.operations
    results: dict[str, KeyResult] = {}
    components = split_components(operations)
    for component in sorted(components, key=lambda c: (c.label, c.indices[0])):
        budget = Budget(minimize_checks_max, minimize_states_max, deadline)
        if component.multi_key:
            result = _check_component(component, operations, max_states, deadline, budget)
        else:
            indexed = [IndexedOperation(index, operations[index]) for index in component.indices]
            result = _check_key(component.keys[0], indexed, max_states, deadline, budget)
        label = result.key
        if label in results:  # two ranges naming no key at all: keep both
            label = f"{label} #{component.indices[0]}"
            result = replace(result, key=label)
        results[label] = result
    verdicts = [result.ok for result in results.values()]
    ok = False if False in verdicts else (None if None in verdicts else True)
    return CheckResult(ok, len(history), results)


def _check_component(
    component: Component,
    history: Sequence[Operation],
    max_states: int,
    deadline: float | None,
    budget: Budget,
) -> KeyResult:
    """Search a component of multi-key operations (its history positions index `history`)
    as one map (map_search.py). No witness shortcuts (those are the register's); a failure
    is reported with the deepest prefix, the map after it, the operation that could not
    follow it, and a minimised sub-history (map_minimize.py)."""
    indices = component.indices
    versions = any(
        compare.target == "version" for index in indices for compare in history[index].compare
    )
    universe = Universe(component.keys, versions)
    modelled = [
        model
        for index in indices
        if (model := to_map_model(history[index], index, universe)) is not None
    ]
    outcome = search_map(modelled, universe.initial(), max_states=max_states, deadline=deadline)
    counts = (len(indices), len(modelled))
    if outcome.ok:
        return KeyResult(component.label, True, *counts, outcome.states_explored,
                         component_keys=component.keys)  # fmt: skip
    # Indexed records only for the report (a passing component needs none).
    operations = [IndexedOperation(index, history[index]) for index in indices]
    by_index = {indexed.index: indexed for indexed in operations}
    prefix = [modelled[position] for position in outcome.longest_prefix]
    linearized = {op.history_index for op in prefix}
    rest = [op for op in modelled if op.history_index not in linearized]
    blocking = min(
        (op for op in rest if op.return_time is not None),
        key=lambda op: (op.return_time or 0.0, op.history_index),
        default=None,
    )
    pending = []
    if blocking is not None:
        assert blocking.return_time is not None
        pending = sorted(
            (op for op in rest if op is not blocking and op.call_time <= blocking.return_time),
            key=lambda op: (op.call_time, op.history_index),
        )
    state = outcome.state_after_prefix or universe.initial()
    if outcome.ok is False:
        verdict: bool | None = False
        reason = "no order of the operations respects real time and the key-value map"
    else:
        verdict = None
        reason = f"the search ran out of its budget ({outcome.budget_exhausted}) first"
    minimal: tuple[IndexedOperation, ...] = ()
    checks, complete = 0, False
    if verdict is False and budget.left:
        stuck_at = None if blocking is None else blocking.return_time
        minimization = minimize_component(operations, universe, budget, stuck_at)
        minimal, checks, complete = (
            minimization.operations,
            minimization.checks,
            minimization.complete,
        )
    return KeyResult(
        component.label,
        verdict,
        *counts,
        outcome.states_explored,
        reason=reason,
        budget_exhausted=outcome.budget_exhausted,
        minimal=minimal,
        minimization_checks=checks,
        minimization_complete=complete,
        longest_prefix=tuple(by_index[op.history_index] for op in prefix),
        blocking=tuple(by_index[op.history_index] for op in [blocking] if op is not None),
        pending=tuple(by_index[op.history_index] for op in pending),
        component_keys=component.keys,
        state_after_prefix=tuple(
            (key, cell[0]) for key, cell in zip(component.keys, state, strict=True) if cell
        ),
    )


def _check_key(
    key: str,
    operations: list[IndexedOperation],
    max_states: int,
    deadline: float | None,
    budget: Budget,
) -> KeyResult:
    by_index = {indexed.index: indexed.operation for indexed in operations}
    modelled = [to_model(indexed.operation, indexed.index) for indexed in operations]
    searched = remove_unobservable_writes(op for op in modelled if op is not None)
    counts = (len(operations), len(searched))

    def indexed(model_operations: Iterable[ModelOperation]) -> tuple[IndexedOperation, ...]:
        return tuple(
            IndexedOperation(op.history_index, _as_weakened(by_index[op.history_index], op))
            for op in model_operations
        )

    witness = find_witness(searched)
    if witness is not None:
        return KeyResult(
            key,
            False,
            *counts,
            0,
            reason=witness.reason,
            blocking=indexed([witness.blocking]),
            minimal=indexed(witness.operations),
            minimization_complete=True,
        )
    # A first, smaller search: if it cannot finish, a failure is more cheaply shown by a
    # window around where it got stuck than by exhausting everything before it.
    first_states = min(max_states, SEARCH_FIRST_ATTEMPT_STATES)
    outcome = search_linearization(searched, max_states=first_states, deadline=deadline)
    window: list[ModelOperation] | None = None
    if outcome.ok is None:
        if budget.left:
            early = budget.portion(LOCALIZE_EARLY_STATES_MAX)
            window = localize(searched, _stuck(searched, outcome)[2], early)
            budget.settle(early, LOCALIZE_EARLY_STATES_MAX)
        if window is None and first_states < max_states:
            outcome = search_linearization(searched, max_states=max_states, deadline=deadline)
    if outcome.ok and window is None:
        return KeyResult(key, True, *counts, outcome.states_explored)
    prefix, value, blocking, pending = _stuck(searched, outcome)
    if window is not None:
        verdict: bool | None = False
        reason = (
            "a window of the history around where the search got stuck, with everything "
            "outside it weakened, has no linearization"
        )
    elif outcome.ok is False:
        verdict, reason = False, "no order of the operations respects real time and the register"
    else:
        verdict = None
        reason = f"the search ran out of its budget ({outcome.budget_exhausted}) first"
    result = KeyResult(
        key,
        verdict,
        *counts,
        outcome.states_explored,
        reason=reason,
        budget_exhausted=outcome.budget_exhausted if verdict is None else None,
        longest_prefix=indexed(prefix),
        value_after_prefix=value,
        blocking=indexed([] if blocking is None else [blocking]),
        pending=indexed(pending),
    )
    if verdict is None or not budget.left:
        return replace(result, minimization_checks=budget.checks)
    if window is None:
        window = localize(searched, blocking, budget) or searched
    minimization = minimize_failure(window, budget)
    return replace(
        result,
        minimal=indexed(minimization.operations),
        minimization_checks=minimization.checks,
        minimization_complete=minimization.complete,
    )


def _stuck(
    searched: list[ModelOperation], outcome: SearchOutcome
) -> tuple[list[ModelOperation], str | None, ModelOperation | None, list[ModelOperation]]:
    """Where an unfinished or failed search got stuck: the deepest prefix, the value after it,
    the first operation to return among the rest (which could not follow it), and the other
    operations called by then."""
    prefix = [searched[position] for position in outcome.longest_prefix]
    value: str | None = None
    for operation in prefix:
        value = step(operation, value)[1]
    linearized = {op.history_index for op in prefix}
    rest = [op for op in searched if op.history_index not in linearized]
    blocking = min(
        (op for op in rest if op.return_time is not None),
        key=lambda op: (op.return_time, op.history_index),
        default=None,
    )
    pending: list[ModelOperation] = []
    if blocking is not None:
        assert blocking.return_time is not None
        pending = sorted(
            (op for op in rest if op is not blocking and op.call_time <= blocking.return_time),
            key=lambda op: (op.call_time, op.history_index),
        )
    return prefix, value, blocking, pending


def _as_weakened(original: Operation, model_operation: ModelOperation) -> Operation:
    """The original record, marked unknown if minimisation made its outcome indeterminate."""
    if model_operation.return_time is None and original.status != "unknown":
        return msgspec.structs.replace(
            original, status="unknown", result=None, error=None, current=msgspec.UNSET
        )
    return original
