"""The map model: operations that touch several keys, as effects on a whole key-value map.

A component (components.py) is checked as one object whose state is the map from its keys to
their values, every key absent at first. Its keys, the *universe*, are the keys any of its
operations names (a get's key, a compare's key, ...); a range also stands for keys it never
names, but every key that can be present was written by some operation naming it, and that
operation touches the range, so it is in the same component and its key in the universe.

A state is a tuple, one cell per universe key in order: None (absent) or (value, version).
Tuples are hashable, so the search caches (operations linearized, state) as the register
search does. `version` (writes since creation, SPEC §6) is kept only when a compare of the
component reads it; else it stays 0, so states that differ only in it are one.

What the model checks exactly: values; presence; a range's keys, values, count and more flag
(with a limit, the first `limit` keys); a delete-range's count; a transaction's branch and
every answer of it. Its limit: compares on `mod_index` and `create_index` name log indexes,
which a history does not record, so they are assumed to hold whichever way keeps the
history linearizable: a transaction with such a compare that succeeded needs only its other
compares to hold, one that failed constrains no compare, and one of unknown outcome may take
either branch. Version compares are exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Final

from raftkv.check.history import (
    CAS_FAILED,
    NOT_FOUND,
    Operation,
    StepResult,
    is_conditional,
    is_multi_key,
    is_observation_error,
)
from raftkv.kv.ranges import KeyRange
from raftkv.kv.records import KeyRecord
from raftkv.kv.store import TXN_RANGE_LIMIT_DEFAULT
from raftkv.kv.txn import Compare, TxnOp, compare_holds

Cell = tuple[str, int] | None  # (value, version), or None: absent
State = tuple[Cell, ...]
# One step of an operation, run on a mutable copy of the state; False: its guard failed.
Step = Callable[[list[Cell]], bool]

# Compare targets naming log indexes, which the model cannot know (see the module docstring).
UNDECIDABLE_TARGETS = frozenset(("mod_index", "create_index"))


class Universe:
    """A component's keys in order, and whether its states keep versions."""

    def __init__(self, keys: tuple[str, ...], versions: bool) -> None:
        self.keys: Final = keys
        self.versions: Final = versions
        # Each range's bounds, by the name records give it: a component's ranges repeat.
        self._bounds: dict[RangeName, tuple[int, int]] = {}

    def position(self, key: str) -> int:
        return bisect.bisect_left(self.keys, key)

    def bounds(self, key_range: KeyRange) -> tuple[int, int]:
        """The positions of the range's first universe key and of the first after it."""
        low = bisect.bisect_left(self.keys, key_range.start)
        high = (
            len(self.keys)
            if key_range.end is None
            else bisect.bisect_left(self.keys, key_range.end)
        )
        return low, max(low, high)

    def range_bounds(
        self, prefix: str | None, start: str | None, end: str | None
    ) -> tuple[int, int]:
        """`bounds` of the range a record names (`key_range`), remembered."""
        named = (prefix, start, end)
        found = self._bounds.get(named)
        if found is None:
            found = self._bounds[named] = self.bounds(key_range(prefix, start, end))
        return found

    def initial(self) -> State:
        return (None,) * len(self.keys)


class MapOperation:
    """An operation as the map search sees it; `return_time` None means indeterminate.
    (A plain class, not a dataclass: mypyc leaves a dataclass's __init__ interpreted.)"""

    def __init__(
        self,
        history_index: int,
        call_time: float,
        return_time: float | None,
        footprint: int,
        observes_only: bool,
        successors: Callable[[State], tuple[State, ...]],
    ) -> None:
        self.history_index: Final = history_index
        self.call_time: Final = call_time
        self.return_time: Final = return_time
        # bit i: it reads or writes universe key i (a range: every key in it)
        self.footprint: Final = footprint
        self.observes_only: Final = observes_only  # it never changes the state
        # the states it may leave; () if barred
        self.successors: Final = successors


def key_range(prefix: str | None, start: str | None, end: str | None) -> KeyRange:
    return KeyRange.prefix(prefix) if prefix is not None else KeyRange(start or "", end)


# A range as records name it: (prefix, start, end), `key_range`'s arguments.
RangeName = tuple[str | None, str | None, str | None]


def operation_ranges(operation: Operation) -> list[RangeName]:
    """The key ranges an operation reads or deletes (a txn: those of its range operations),
    as it names them."""
    if operation.op in ("range", "delrange"):
        return [(operation.prefix, operation.start, operation.end)]
    steps = (*operation.success, *operation.failure)
    return [(step.prefix, step.start, step.end) for step in steps if step.op == "range"]


def operation_keys(operation: Operation) -> list[str]:
    """The keys an operation names itself (not through a range)."""
    if operation.op == "txn":
        steps = (*operation.success, *operation.failure)
        named = [compare.key for compare in operation.compare]
        return named + [step.key for step in steps if step.key is not None]
    return [] if is_multi_key(operation) else [operation.key]


def to_map_model(operation: Operation, index: int, universe: Universe) -> MapOperation | None:
    """`operation` as a map operation, or None when it cannot have had any effect (the same
    statuses as model.to_model: unknown reads and definite failures are dropped)."""
    compiled = _Compiler(universe)
    status, kind = operation.status, operation.op
    if status == "fail" and not is_observation_error(operation):
        return None
    indeterminate = status == "unknown"
    if indeterminate and kind in ("get", "range"):
        return None
    if kind == "txn":
        return compiled.txn(operation, index, indeterminate)
    steps = (
        [compiled.indeterminate_write(operation)] if indeterminate else compiled.definite(operation)
    )
    writes = indeterminate or compiled.writes
    footprint = compiled.footprint
    if steps is None:
        return MapOperation(index, operation.call_time, None, footprint, True, _barred)
    return MapOperation(
        index,
        operation.call_time,
        None if indeterminate else operation.return_time,
        footprint,
        not writes,
        _runner(steps),
    )


def _barred(state: State) -> tuple[State, ...]:
    return ()


def _runner(steps: Sequence[Step]) -> Callable[[State], tuple[State, ...]]:
    def successors(state: State) -> tuple[State, ...]:
        cells = list(state)
        for step in steps:
            if not step(cells):
                return ()
        return (tuple(cells),)

    return successors


def _value(cell: Cell) -> str | None:
    return None if cell is None else cell[0]


class _Compiler:
    """Turns history records into steps over one universe, noting their footprint."""

    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        self.footprint = 0
        self.writes = False  # some step may change the state

    def _key(self, key: str) -> int:
        position = self.universe.position(key)
        self.footprint |= 1 << position
        return position

    def _range(self, prefix: str | None, start: str | None, end: str | None) -> tuple[int, int]:
        low, high = self.universe.range_bounds(prefix, start, end)
        self.footprint |= ((1 << high) - 1) ^ ((1 << low) - 1)
        return low, high

    # --- steps ------------------------------------------------------------------------------
    def expect(self, key: str, expected: str | None) -> Step:
        position = self._key(key)
        return lambda cells: _value(cells[position]) == expected

    def expect_other(self, key: str, unexpected: str | None) -> Step:
        position = self._key(key)
        return lambda cells: _value(cells[position]) != unexpected

    def put(self, key: str, value: str) -> Step:
        position, versions = self._key(key), self.universe.versions
        self.writes = True

        def step(cells: list[Cell]) -> bool:
            cell = cells[position]
            cells[position] = (value, (1 if cell is None else cell[1] + 1) if versions else 0)
            return True

        return step

    def delete(self, key: str, deleted: int | None) -> Step:
        """Delete the key; `deleted` (1 or 0), if known, says whether it was present."""
        position = self._key(key)
        self.writes = self.writes or deleted != 0

        def step(cells: list[Cell]) -> bool:
            present = cells[position] is not None
            cells[position] = None
            return deleted is None or deleted == int(present)

        return step

    def conditional_put(self, key: str, expected: str | None, value: str) -> Step:
        """An indeterminate cas: writes only if the value is `expected` when it applies."""
        check, write = self.expect(key, expected), self.put(key, value)
        return lambda cells: write(cells) if check(cells) else True

    def read_range(self, span: tuple[int, int], limit: int, answer: StepResult) -> Step:
        low, high = span
        keys = self.universe.keys
        expected = answer.kvs or ()
        count, more = answer.count, answer.more

        def step(cells: list[Cell]) -> bool:
            present = [(keys[i], cells[i]) for i in range(low, high) if cells[i] is not None]
            if count is not None and count != len(present):
                return False
            if more is not None and more != (len(present) > limit):
                return False
            shown = present[:limit]
            return len(shown) == len(expected) and all(
                key == want_key and (want is None or (cell is not None and cell[0] == want))
                for (key, cell), (want_key, want) in zip(shown, expected, strict=True)
            )

        return step

    def delete_range(self, span: tuple[int, int], deleted: int | None) -> Step:
        low, high = span
        self.writes = self.writes or deleted != 0

        def step(cells: list[Cell]) -> bool:
            present = sum(1 for i in range(low, high) if cells[i] is not None)
            cells[low:high] = [None] * (high - low)
            return deleted is None or deleted == present

        return step

    # --- operations ---------------------------------------------------------------------------
    def indeterminate_write(self, operation: Operation) -> Step:
        if operation.op == "delrange":
            return self.delete_range(
                self._range(operation.prefix, operation.start, operation.end), None
            )
        if operation.op == "del":
            return self.delete(operation.key, None)
        assert operation.value is not None  # validate_operation
        if is_conditional(operation):
            expected = None if operation.if_absent else operation.if_value
            return self.conditional_put(operation.key, expected, operation.value)
        return self.put(operation.key, operation.value)

    def definite(self, operation: Operation) -> list[Step] | None:
        """The steps of a completed single-key op, range or delete-range; None: impossible."""
        kind, key = operation.op, operation.key
        if kind == "range":
            span = self._range(operation.prefix, operation.start, operation.end)
            answer = StepResult(kvs=operation.kvs, count=operation.count, more=operation.more)
            limit = operation.limit or len(self.universe.keys) + 1
            return [self.read_range(span, limit, answer)]
        if kind == "delrange":
            span = self._range(operation.prefix, operation.start, operation.end)
            return [self.delete_range(span, operation.deleted)]
        if kind == "get":
            return [self.expect(key, None if operation.error == NOT_FOUND else operation.result)]
        if kind == "del":
            return [self.delete(key, 0 if operation.error == NOT_FOUND else 1)]
        assert operation.value is not None  # validate_operation
        if not is_conditional(operation):
            return [self.put(key, operation.value)]
        expected = None if operation.if_absent else operation.if_value
        if operation.error != CAS_FAILED:
            return [self.expect(key, expected), self.put(key, operation.value)]
        if operation.current is None or isinstance(operation.current, str):
            if operation.current == expected:
                self._key(key)
                return None
            return [self.expect(key, operation.current)]
        return [self.expect_other(key, expected)]

    def compare(self, compare: Compare) -> Callable[[list[Cell]], bool]:
        position = self._key(compare.key)

        def holds(cells: list[Cell]) -> bool:
            cell = cells[position]
            record = None if cell is None else KeyRecord(cell[0], 0, 0, cell[1])
            return compare_holds(compare, record)

        return holds

    def branch(self, steps: Sequence[TxnOp], answers: Sequence[StepResult] | None) -> list[Step]:
        """A branch's operations, checking each answer when `answers` is given."""
        compiled: list[Step] = []
        for number, op in enumerate(steps):
            answer = None if answers is None else answers[number]
            if op.op == "put":
                assert op.key is not None and op.value is not None  # validate_operation
                compiled.append(self.put(op.key, op.value))
            elif op.op == "delete":
                assert op.key is not None
                compiled.append(self.delete(op.key, None if answer is None else answer.deleted))
            elif op.op == "get":
                assert op.key is not None
                if answer is not None:
                    compiled.append(self.expect(op.key, answer.value))
                else:
                    self._key(op.key)
            else:
                span = self._range(op.prefix, op.start, op.end)
                if answer is not None:
                    compiled.append(
                        self.read_range(span, op.limit or TXN_RANGE_LIMIT_DEFAULT, answer)
                    )
        return compiled

    def txn(self, operation: Operation, index: int, indeterminate: bool) -> MapOperation | None:
        decidable = [
            self.compare(c) for c in operation.compare if c.target not in UNDECIDABLE_TARGETS
        ]
        undecidable = len(decidable) < len(operation.compare)
        all_hold = _all_hold(decidable)
        if indeterminate:
            success = _runner(self.branch(operation.success, None))
            failure = _runner(self.branch(operation.failure, None))
            if not self.writes:
                return None  # either branch only reads: it cannot have had an effect

            def either(state: State) -> tuple[State, ...]:
                if undecidable:
                    return tuple(dict.fromkeys((*success(state), *failure(state))))
                return (success if all_hold(list(state)) else failure)(state)

            return MapOperation(index, operation.call_time, None, self.footprint, False, either)
        succeeded = bool(operation.succeeded)
        ran = operation.success if succeeded else operation.failure
        # A failed txn with an undecidable compare may have failed on it: no guard then.
        guard: list[Step] = []
        if succeeded:
            guard = [all_hold]
        elif not undecidable:
            guard = [lambda cells: not all_hold(cells)]
        steps = guard + self.branch(ran, operation.results)
        return MapOperation(
            index,
            operation.call_time,
            operation.return_time,
            self.footprint,
            not self.writes,
            _runner(steps),
        )


def _all_hold(compares: list[Callable[[list[Cell]], bool]]) -> Step:
    return lambda cells: all(holds(cells) for holds in compares)
