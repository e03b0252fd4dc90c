"""The linearization search for one key's operations.

Wing & Gong's algorithm (Wing & Gong 1993, "Testing and verifying concurrent objects") with
Lowe's improvements (Lowe 2017, "Testing for linearizability", §3-4), as in the porcupine tool:
call and return events in one doubly-linked list ordered by time; a depth-first search that
linearizes an operation by unlinking its call and return events and backtracks when it meets a
return event whose operation is not yet linearized; and a cache of (set of linearized
operations, register value) so no configuration is explored twice.

Refinements, each exact (no linearizable history is rejected, none accepted wrongly):

- Observations (reads, failed compare-and-sets) are linearized eagerly and never branched on.
  If a read can take effect now, any linearization of the rest can be reordered to put it
  first: it changes nothing, and every operation it must follow is already linearized. So a
  read's subtree failing means its parent fails too.
- Dead values: a value still needed by an operation not yet linearized (a read of it, a
  compare-and-set expecting it) is never overwritten when no writer left can write it again
  before that reader must return, nor written by its only writer when an operation that
  cannot coexist with it must come before the value's last reader is even called
  (search_pruning).
- Indeterminate operations (return = +infinity) never need to take effect, so they have no
  events: the search succeeds once no return event is left. One that does take effect is,
  without loss of generality, followed at once by an operation whose guard accepts the value it
  wrote (else dropping it changes nothing): never an unguarded write, always one that is
  enabled already. They are tried per group of interchangeable ones (search_tables), after
  the definite operations.
- The set of linearized operations is small ints: definite operations are numbered in call
  order, so all before the first unlinearized one are linearized, and a configuration is (that
  low watermark, the bits above it, the bits of the indeterminate operations that took effect,
  the value). A configuration is skipped when one entered before subsumes it: the same
  definite operations and value, with fewer indeterminate ones used up, can do all it can.
- Among the definite writes that could go next, the one that must return soonest is tried
  first, as the likeliest to be right; the others follow in list order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from raftkv.check.limits import SEARCH_CLOCK_CHECK_INTERVAL_STATES
from raftkv.check.model import COMPARE_AND_SET, DELETE_PRESENT, READ, READ_OTHER, WRITE
from raftkv.check.model import ModelOperation as ModelOperation
from raftkv.check.search_pruning import doomed, enabled_needs, stranded, subsumed
from raftkv.check.search_tables import ABSENT, NO_VALUE, build_tables

BUDGET_STATES = "max_states"
BUDGET_TIME = "time"

# How a stack frame's operation was chosen, which decides what to try after undoing it.
_FROM_LIST = 0  # a definite write: resume the list scan
_FORCED = 1  # a read: its failure is its parent's
_FROM_GROUP = 2  # an indeterminate operation: resume with the next group


@dataclass(frozen=True)
class SearchOutcome:
    """What the search found. Positions index the `operations` it was given."""

    ok: bool | None  # None: a budget ran out first
    states_explored: int
    budget_exhausted: str | None  # BUDGET_STATES or BUDGET_TIME when ok is None
    # The deepest partial linearization reached, in linearization order (empty when ok).
    longest_prefix: tuple[int, ...]
    # map_search only: the state after that prefix (the register search's is recomputed).
    state_after_prefix: tuple[tuple[str, int] | None, ...] | None = None


def search_linearization(
    operations: Sequence[ModelOperation],
    *,
    max_states: int,
    deadline: float | None = None,
) -> SearchOutcome:
    """Decide whether `operations` (one key, starting absent) are linearizable.

    `max_states` bounds the configurations entered; `deadline` is a time.monotonic() value.
    Running out of either gives ok=None.
    """
    tables = build_tables(operations)
    order, kinds, expected, produces = tables.order, tables.kinds, tables.expected, tables.produces
    needs, deadlines = tables.needs, tables.deadlines
    group, groups, call_times = tables.group, tables.groups, tables.call_times
    last_needed_call = tables.last_needed_call
    group_count = len(groups)
    group_next = [0] * group_count  # how many members of each group have taken effect
    producers_left = [0] * tables.value_count  # unlinearized operations that can write it
    needers_left = [0] * tables.value_count  # unlinearized definite operations needing it
    for number in range(len(order)):
        if produces[number] != NO_VALUE:
            producers_left[produces[number]] += 1
        if needs[number] != NO_VALUE:
            needers_left[needs[number]] += 1

    # Entries 1..len(events) are events; 0 is the head and `tail` the end of the list.
    head = 0
    tail = len(tables.events) + 1
    entry_operation = [len(order)] * (tail + 1)
    entry_time = [math.inf] * (tail + 1)
    partner = [0] * (tail + 1)  # call: its return entry; return: -1
    call_entry = [0] * len(order)
    for entry, (moment, is_return, number) in enumerate(tables.events, start=1):
        entry_operation[entry] = number
        entry_time[entry] = moment
        if is_return:
            partner[entry] = -1
            partner[call_entry[number]] = entry
        else:
            call_entry[number] = entry
    following = list(range(1, tail + 2))
    following[tail] = tail
    preceding = list(range(-1, tail))
    preceding[head] = head

    value = ABSENT
    definite = tables.definite_count
    low = 0  # every definite operation numbered below it is linearized
    window = 0  # bit i: definite operation low + i is linearized
    taken = 0  # bit i: indeterminate operation `definite + i` has taken effect
    # Frames: the operation, (value, low, window, taken) before it, how it was chosen, and the
    # entry its parent configuration tried first (out of list order).
    stack: list[tuple[int, int, int, int, int, int, int]] = []
    # Configurations entered: (low, window, value) -> codes of (taken, after an indeterminate
    # one). A configuration with fewer indeterminate operations taken, not restricted by one
    # just taken, can do everything this one can: so one entered (and, unless it is an
    # ancestor, failed) subsumes this one. Code: taken << 1 | restricted; subsumed when the
    # entered code has no bit this one lacks.
    cache: dict[tuple[int, int, int], list[int]] = {}
    entered: set[tuple[int, int, int, int]] = set()  # the same, for exact look-ups
    states = 0
    longest: list[int] = []  # operation numbers of the deepest prefix reached
    agreeing = 0  # how many leading frames of `stack` equal `longest`
    next_clock_check = SEARCH_CLOCK_CHECK_INTERVAL_STATES if deadline is not None else -1

    entry = following[head]
    fresh = True  # scanning a configuration for the first time (not resuming after a pop)
    in_groups = False  # trying indeterminate operations, from group `next_group` on
    next_group = 0
    boundary = math.inf  # time of the first return event: later calls are not enabled yet
    # What the enabled operations accept (see _enabled_needs), for the indeterminate ones.
    wanted: set[int] = set()
    unequal: list[int] = []
    present_wanted = False
    # Indeterminate compare-and-sets may accept what another indeterminate operation writes.
    chained = {
        expected[number]
        for members in groups
        for number in members
        if kinds[number] == COMPARE_AND_SET
    }
    after_indeterminate = False  # the last operation linearized was indeterminate
    candidate = -1  # in a fresh scan: the enabled write that must return soonest
    candidate_value = candidate_low = candidate_window = 0
    skip = 0  # in a resumed scan: the entry tried first, out of list order
    while True:
        push = -1  # operation number to linearize now
        push_mode = _FROM_LIST
        push_value = new_low = new_window = 0
        backtrack = False
        if in_groups:
            while next_group < group_count:
                members = groups[next_group]
                rank = group_next[next_group]
                next_group += 1
                if rank == len(members):
                    continue
                number = members[rank]
                if call_times[number] > boundary:
                    continue
                kind = kinds[number]
                after = produces[number]
                if after == value or (after_indeterminate if kind == WRITE else False):
                    continue
                if kind == COMPARE_AND_SET and value != expected[number]:
                    continue
                if needers_left[value] and (
                    not producers_left[value]
                    or stranded(value, -1, low, window, taken, following, partner,
                                 entry_time, head, tail, tables)
                ):  # fmt: skip
                    continue  # it would overwrite a value still needed for good
                # What it writes must be what some operation that could go next accepts.
                if not (
                    after in wanted
                    or (present_wanted and after != ABSENT)
                    or any(other != after for other in unequal)
                ):
                    continue
                code = (taken | (1 << (number - definite))) << 1 | 1
                if (low, window, after, code) in entered:
                    continue
                bucket = cache.get((low, window, after))
                if bucket is not None and subsumed(bucket, code):
                    continue
                push, push_value, push_mode = number, after, _FROM_GROUP
                new_low, new_window = low, window
                break
            else:
                backtrack = True
        elif entry == tail:
            return SearchOutcome(True, states, None, ())
        elif partner[entry] < 0:
            # A return event: its operation must be linearized before anything called later.
            if candidate >= 0:
                push, push_value = candidate, candidate_value
                new_low, new_window = candidate_low, candidate_window
            else:
                in_groups, next_group = True, 0
                boundary, wanted, unequal, present_wanted = enabled_needs(
                    following, partner, entry_time, entry_operation, kinds, expected, head, tail
                )
                wanted |= chained
                continue
        else:
            number = entry_operation[entry]
            kind = kinds[number]
            enabled = False
            after = value
            if kind <= READ_OTHER:
                if fresh:
                    if kind == READ:
                        enabled = value == expected[number]
                    else:
                        enabled = value != expected[number]
                    push_mode = _FORCED
            elif fresh or entry != skip:
                after = produces[number]
                if kind == WRITE:
                    enabled = not after_indeterminate
                elif kind == COMPARE_AND_SET:
                    enabled = value == expected[number]
                elif kind == DELETE_PRESENT:
                    enabled = value != ABSENT
                # Overwriting a value still needed, that nothing left can write again, dooms
                # the configuration.
                if (
                    enabled
                    and after != value
                    and needers_left[value] - (needs[number] == value)
                    and (
                        not producers_left[value]
                        or stranded(value, number, low, window, taken, following, partner,
                                     entry_time, head, tail, tables)
                    )
                ):  # fmt: skip
                    enabled = False
                if enabled and fresh and candidate >= 0:
                    enabled = deadlines[number] < deadlines[candidate]
            if enabled:
                new_window = window | (1 << (number - low))
                new_low = low
                if new_window & 1:
                    # Advance the watermark past the run of linearized operations at the bottom.
                    run = (~new_window & (new_window + 1)).bit_length() - 1
                    new_low += run
                    new_window >>= run
                bucket = cache.get((new_low, new_window, after))
                if bucket is not None and (
                    (new_low, new_window, after, taken << 1) in entered
                    or subsumed(bucket, taken << 1)
                ):
                    # A read already explored from here failed, so this configuration fails.
                    backtrack = push_mode == _FORCED
                elif fresh and push_mode == _FROM_LIST:
                    candidate, candidate_value = number, after
                    candidate_low, candidate_window = new_low, new_window
                else:
                    push, push_value = number, after
            if push < 0 and not backtrack:
                entry = following[entry]
                continue
        if push >= 0:
            if fresh and push_mode == _FROM_LIST:
                skip = call_entry[push]
            stack.append((push, value, low, window, taken, push_mode, skip))
            value, low, window = push_value, new_low, new_window
            if push_mode == _FROM_GROUP:
                taken |= 1 << (push - definite)
            code = taken << 1 | (push_mode == _FROM_GROUP)
            entered.add((low, window, value, code))
            bucket = cache.get((low, window, value))
            if bucket is None:
                cache[(low, window, value)] = [code]
            else:
                bucket.append(code)
            states += 1
            if produces[push] != NO_VALUE:
                producers_left[produces[push]] -= 1
            if needs[push] != NO_VALUE:
                needers_left[needs[push]] -= 1
            after_indeterminate = push_mode == _FROM_GROUP
            if after_indeterminate:
                group_next[group[push]] += 1
            else:
                # Unlink the call event and its return event (dancing links).
                for unlinked in (call_entry[push], partner[call_entry[push]]):
                    before, beyond = preceding[unlinked], following[unlinked]
                    following[before] = beyond
                    preceding[beyond] = before
            depth = len(stack)
            if depth > len(longest):
                del longest[agreeing:]
                longest.extend(frame[0] for frame in stack[agreeing:])
                agreeing = depth
            if states >= max_states:
                return _unknown(BUDGET_STATES, states, longest, order)
            if states == next_clock_check:
                assert deadline is not None
                if time.monotonic() > deadline:
                    return _unknown(BUDGET_TIME, states, longest, order)
                next_clock_check += SEARCH_CLOCK_CHECK_INTERVAL_STATES
            candidate = -1
            fresh = True
            in_groups = False
            entry = following[head]
            if not doomed(
                value, last_needed_call, needs, expected, produces, kinds,
                following, partner, entry_operation, entry_time, entry, tail,
            ):  # fmt: skip
                continue
        # Undo frames until one whose siblings are still worth trying (reads have none).
        while True:
            if not stack:
                return SearchOutcome(False, states, None, tuple(order[n] for n in longest))
            number, value, low, window, taken, mode, skip = stack.pop()
            if produces[number] != NO_VALUE:
                producers_left[produces[number]] += 1
            if needs[number] != NO_VALUE:
                needers_left[needs[number]] += 1
            if mode == _FROM_GROUP:
                group_next[group[number]] -= 1
            else:
                entry = call_entry[number]
                for linked in (partner[entry], entry):
                    following[preceding[linked]] = linked
                    preceding[following[linked]] = linked
            agreeing = min(agreeing, len(stack))
            if mode != _FORCED:
                break
        after_indeterminate = bool(stack) and stack[-1][5] == _FROM_GROUP
        candidate = -1
        fresh = False
        if mode == _FROM_GROUP:
            in_groups, next_group = True, group[number] + 1
            boundary, wanted, unequal, present_wanted = enabled_needs(
                following, partner, entry_time, entry_operation, kinds, expected, head, tail
            )
            wanted |= chained
        else:
            in_groups = False
            # Resume after the entry undone, or from the start if it was tried out of order.
            entry = following[head] if entry == skip else following[entry]


def _unknown(reason: str, states: int, longest: list[int], order: list[int]) -> SearchOutcome:
    return SearchOutcome(None, states, reason, tuple(order[number] for number in longest))
