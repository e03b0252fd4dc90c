"""The per-operation tables the linearization search reads in its inner loop.

Everything the search compares is a small int: operations are numbered in call order, values
get ids, and identical indeterminate operations share a group (Lowe 2017 on symmetry; here an
exact reduction, argued at `build_tables`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from raftkv.check.model import (
    COMPARE_AND_SET,
    DELETE_PRESENT,
    READ,
    READ_OTHER,
    WRITE,
    ModelOperation,
)

ABSENT = 0  # the value id of "absent"
ANONYMOUS = 1  # the value id shared by every value no guard ever compares with
NO_VALUE = -1  # no value id: the operation writes or needs no particular value


@dataclass
class Tables:
    """Facts per operation number (call order), per value id, per group, per event."""

    # Number -> position in the input. Definite operations come first, in call order, then
    # indeterminate ones, in call order.
    order: list[int] = field(default_factory=list)
    definite_count: int = 0
    kinds: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)  # the value a guard compares with
    produces: list[int] = field(default_factory=list)  # value left by a write, else NO_VALUE
    needs: list[int] = field(default_factory=list)  # value a definite op must find, or NO_VALUE
    indeterminate: list[bool] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)  # return time; +inf if indeterminate
    group: list[int] = field(default_factory=list)  # indeterminate: its group, else -1
    groups: list[list[int]] = field(default_factory=list)  # members, in call order
    value_count: int = 2
    # Per value written by one operation only: the latest call among those that need it
    # (-infinity when none, or when several operations write it).
    last_needed_call: list[float] = field(default_factory=list)
    # Per value: the operations that write it (numbers: definite ones first, each kind in call
    # order), and the definite operations that need it, by return time (times and numbers).
    producers_by_value: list[list[int]] = field(default_factory=list)
    needer_returns_by_value: list[list[float]] = field(default_factory=list)
    needers_by_value: list[list[int]] = field(default_factory=list)
    # Call and return events of definite operations: (time, 0 call / 1 return, number).
    events: list[tuple[float, int, int]] = field(default_factory=list)


def build_tables(operations: Sequence[ModelOperation]) -> Tables:
    """Tables for `operations`.

    Two exact reductions happen here. Values that no guard compares with (no read, failed or
    successful compare-and-set expects them) are indistinguishable to every operation, so they
    share one id; the search then sees one state where it would see many. And indeterminate
    operations with the same kind and value ids are interchangeable: any linearization using a
    later-called one can use an earlier-called one instead, so each group takes effect in
    call order.
    """
    tables = Tables()
    # Indeterminate operations are numbered after the definite ones, so that they, which may
    # never take effect, do not hold back the search's watermark over the definite ones.
    tables.order = sorted(
        range(len(operations)),
        key=lambda p: (operations[p].return_time is None, operations[p].call_time, p),
    )
    tables.definite_count = sum(1 for op in operations if op.return_time is not None)
    compared = {op.expected for op in operations if op.kind in (READ, READ_OTHER, COMPARE_AND_SET)}
    value_ids: dict[str | None, int] = {None: ABSENT}

    def value_id(value: str | None) -> int:
        if value is not None and value not in compared:
            return ANONYMOUS
        return value_ids.setdefault(value, len(value_ids) + 1)  # ids 0, 2, 3, ...

    group_ids: dict[tuple[int, int, int], int] = {}
    for number, position in enumerate(tables.order):
        operation = operations[position]
        kind = operation.kind
        expected = value_id(operation.expected)
        produces = NO_VALUE
        if kind in (WRITE, COMPARE_AND_SET, DELETE_PRESENT):
            produces = value_id(operation.new_value)
        definite = operation.return_time is not None
        needs_value = kind == READ or (kind == COMPARE_AND_SET and definite)
        tables.kinds.append(kind)
        tables.expected.append(expected)
        tables.produces.append(produces)
        tables.needs.append(expected if needs_value else NO_VALUE)
        tables.indeterminate.append(not definite)
        tables.call_times.append(operation.call_time)
        if definite:
            assert operation.return_time is not None
            tables.deadlines.append(operation.return_time)
            tables.group.append(-1)
            tables.events.append((operation.call_time, 0, number))
            tables.events.append((operation.return_time, 1, number))
        else:
            tables.deadlines.append(math.inf)
            group = group_ids.setdefault((kind, expected, produces), len(group_ids))
            if group == len(tables.groups):
                tables.groups.append([])
            tables.groups[group].append(number)
            tables.group.append(group)
    # Calls before returns at equal times, so touching intervals count as concurrent (the
    # reading that never rejects a linearizable history).
    tables.events.sort()
    tables.value_count = len(value_ids) + 1
    producers = [0] * tables.value_count
    tables.last_needed_call = [-math.inf] * tables.value_count
    for number in range(len(tables.order)):
        if tables.produces[number] != NO_VALUE:
            producers[tables.produces[number]] += 1
        needed = tables.needs[number]
        if needed != NO_VALUE:
            tables.last_needed_call[needed] = max(
                tables.last_needed_call[needed], tables.call_times[number]
            )
    tables.producers_by_value = [[] for _ in range(tables.value_count)]
    needers: list[list[tuple[float, int]]] = [[] for _ in range(tables.value_count)]
    for number in range(len(tables.order)):
        if tables.produces[number] != NO_VALUE:
            tables.producers_by_value[tables.produces[number]].append(number)
        if tables.needs[number] != NO_VALUE:
            needers[tables.needs[number]].append((tables.deadlines[number], number))
    for value_needers in needers:
        value_needers.sort()
        tables.needer_returns_by_value.append([moment for moment, _ in value_needers])
        tables.needers_by_value.append([number for _, number in value_needers])
    for value, count in enumerate(producers):
        if count != 1 or value == ABSENT:
            tables.last_needed_call[value] = -math.inf
    return tables
