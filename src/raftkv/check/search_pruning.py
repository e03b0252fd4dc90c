"""Pruning tests the linearization search applies to a configuration (see search.py).

Each one is exact: it only rejects configurations that no completion can follow (Wing & Gong
1993; Lowe 2017 for the search they serve).
"""

from __future__ import annotations

import bisect
import math

from raftkv.check.limits import SUBSUMPTION_CANDIDATES_MAX
from raftkv.check.model import COMPARE_AND_SET, DELETE_PRESENT, READ, READ_OTHER, WRITE
from raftkv.check.search_tables import Tables


def subsumed(bucket: list[int], code: int) -> bool:
    """Whether a configuration entered before, coded in `bucket`, subsumes `code`'s."""
    # Only the latest few: a long bucket would make every look-up slow, and checking fewer
    # only prunes less.
    return any(not entered & ~code for entered in bucket[-SUBSUMPTION_CANDIDATES_MAX:])


def stranded(
    value: int,
    overwriting: int,
    low: int,
    window: int,
    taken: int,
    following: list[int],
    partner: list[int],
    entry_time: list[float],
    head: int,
    tail: int,
    tables: Tables,
) -> bool:
    """Whether overwriting `value` now leaves a reader of it that nothing can write it for.

    After the overwrite, the unlinearized reader that must return first needs a writer of the
    value linearized before it, so one not called after it returned. None left: doomed.
    """
    # Every unlinearized definite operation returns no earlier than the first return event.
    entry = following[head]
    while entry != tail and partner[entry] >= 0:
        entry = following[entry]
    returns = tables.needer_returns_by_value[value]
    needers = tables.needers_by_value[value]
    first_return = math.inf
    for position in range(bisect.bisect_left(returns, entry_time[entry]), len(needers)):
        number = needers[position]
        if number != overwriting and number >= low and not (window >> (number - low)) & 1:
            first_return = returns[position]
            break
    else:
        return False  # no reader of it is left
    # The earliest-called unlinearized writer: definite ones are numbered in call order before
    # the indeterminate ones, also in call order.
    producers = tables.producers_by_value[value]
    definite = tables.definite_count
    first_call = math.inf
    indeterminate_from = bisect.bisect_left(producers, definite)
    for position in range(bisect.bisect_left(producers, low), indeterminate_from):
        number = producers[position]
        if not (window >> (number - low)) & 1:
            first_call = tables.call_times[number]
            break
    for position in range(indeterminate_from, len(producers)):
        number = producers[position]
        if not (taken >> (number - definite)) & 1:
            first_call = min(first_call, tables.call_times[number])
            break
    return first_call > first_return


def enabled_needs(
    following: list[int],
    partner: list[int],
    entry_time: list[float],
    entry_operation: list[int],
    kinds: list[int],
    expected: list[int],
    head: int,
    tail: int,
) -> tuple[float, set[int], list[int], bool]:
    """The time of the first return event, and what the definite operations enabled before it
    accept: values read or compared with, values other than a failed compare-and-set's
    expected one, and whether a delete wants the key present."""
    wanted: set[int] = set()
    unequal: list[int] = []
    present_wanted = False
    entry = following[head]
    while entry != tail and partner[entry] >= 0:
        number = entry_operation[entry]
        kind = kinds[number]
        if kind in (READ, COMPARE_AND_SET):
            wanted.add(expected[number])
        elif kind == READ_OTHER:
            unequal.append(expected[number])
        elif kind == DELETE_PRESENT:
            present_wanted = True
        entry = following[entry]
    return entry_time[entry], wanted, unequal, present_wanted


def doomed(
    value: int,
    last_needed_call: list[float],
    needs: list[int],
    expected: list[int],
    produces: list[int],
    kinds: list[int],
    following: list[int],
    partner: list[int],
    entry_operation: list[int],
    entry_time: list[float],
    entry: int,
    tail: int,
) -> bool:
    """Whether the value just written by its only writer can never serve all its readers.

    They are all still to come, so it must stay until the last of them is called; an operation
    that returns before then and cannot take effect while the value stays (it needs another
    value, or changes this one) makes that impossible.
    """
    until = last_needed_call[value]
    while entry != tail and entry_time[entry] < until:
        if partner[entry] < 0:
            number = entry_operation[entry]
            kind = kinds[number]
            if kind == READ_OTHER:
                compatible = expected[number] != value
            elif kind == WRITE:
                compatible = produces[number] == value
            else:  # a read or compare-and-set needing it is one of its readers
                compatible = needs[number] == value
            if not compatible:
                return True
        entry = following[entry]
    return False
