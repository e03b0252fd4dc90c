"""The linearization search for a component whose operations touch several keys.

The algorithm of search.py (Wing & Gong 1993 with Lowe 2017's refinements: call and return
events in a doubly-linked list, a depth-first search that linearizes an operation by unlinking
its events, a cache of configurations) over map_model's states, which are whole maps rather
than one register. It keeps the refinements that hold for any deterministic object, each
exact:

- Observations (operations that never change the state) that can take effect now are
  linearized at once and never branched on (the argument of search.py holds for any object).
- Indeterminate operations (return = +infinity) need never take effect: the search succeeds
  once every definite operation is linearized, and one is tried only where it changes the
  state. Two operations that touch no common key commute, and moving an operation without
  a return later breaks no real-time order. So any linearization can be rewritten, moving
  an indeterminate operation past a definite one it shares no key with, and swapping two
  adjacent indeterminate ones that share no key into the order they are numbered in (each
  step makes progress, so this ends), until every indeterminate operation is followed by a
  definite operation sharing a key with it, by an indeterminate one sharing a key with it
  or numbered after it, or by nothing (and then, with all that follows, it can be dropped).
  The search only builds linearizations of that form.
- A configuration is (definite operations linearized, state, indeterminate ones taken, the
  indeterminate one just taken if any); one is skipped when one entered before has the same
  definite operations and state, a subset of the indeterminate ones taken, and either none
  just taken or the same.

What it drops from search.py is what only a register allows (value ids, dead values, groups
of interchangeable indeterminate writes), so a component pays more per operation than a key;
the sims' components stay small because their workloads are (docs/testing.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from raftkv.check.limits import SEARCH_CLOCK_CHECK_INTERVAL_STATES, SUBSUMPTION_CANDIDATES_MAX
from raftkv.check.map_model import MapOperation, State
from raftkv.check.search import BUDGET_STATES, BUDGET_TIME, SearchOutcome

_UNRESTRICTED = -1


def search_map(
    operations: Sequence[MapOperation],
    initial: State,
    *,
    max_states: int,
    deadline: float | None = None,
) -> SearchOutcome:
    """Decide whether `operations` (one component, starting at `initial`) are linearizable.

    `max_states` bounds the configurations entered; `deadline` is a time.monotonic() value.
    Running out of either gives ok=None. Positions in the outcome index `operations`.
    """
    # Definite operations first, in call order, then indeterminate ones in call order.
    order = sorted(
        range(len(operations)),
        key=lambda p: (operations[p].return_time is None, operations[p].call_time, p),
    )
    ops = [operations[position] for position in order]
    definite = sum(1 for op in ops if op.return_time is not None)
    everything = (1 << definite) - 1
    events: list[tuple[float, int, int]] = []
    for number in range(definite):
        return_time = ops[number].return_time
        assert return_time is not None
        events.append((ops[number].call_time, 0, number))
        events.append((return_time, 1, number))
    events.sort()  # calls before returns at equal times: touching intervals are concurrent
    head, tail = 0, len(events) + 1
    entry_operation = [0] * (tail + 1)
    entry_time = [math.inf] * (tail + 1)
    partner = [0] * (tail + 1)  # call: its return entry; return: -1
    call_entry = [0] * definite
    for entry, (moment, is_return, number) in enumerate(events, start=1):
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

    def candidates(state: State, taken: int, restriction: int) -> list[tuple[int, State]]:
        """What may be linearized next, with the state each leaves. `restriction`: the
        indeterminate operation just taken (or _UNRESTRICTED), which what follows must
        share a key with (see the module docstring)."""
        found: list[tuple[int, State]] = []
        restricted = restriction != _UNRESTRICTED
        keys = ops[restriction].footprint if restricted else 0
        entry = following[head]
        while entry != tail and partner[entry] >= 0:
            number = entry_operation[entry]
            op = ops[number]
            entry = following[entry]
            if restricted and not op.footprint & keys:
                continue
            after = op.successors(state)
            if after and op.observes_only:
                return [(number, state)]
            found.extend((number, next_state) for next_state in after)
        boundary = entry_time[entry]  # calls after the first return are not enabled yet
        for number in range(definite, len(ops)):
            op = ops[number]
            if op.call_time > boundary:
                break
            if (taken >> (number - definite)) & 1:
                continue
            if restricted and not op.footprint & keys and number < restriction:
                continue
            found.extend((number, after) for after in op.successors(state) if after != state)
        return found

    state, linearized, taken, restriction = initial, 0, 0, _UNRESTRICTED
    if linearized == everything:
        return SearchOutcome(True, 0, None, ())
    cache: dict[tuple[int, State], list[tuple[int, int]]] = {}
    # Frames: the operation that led here (-1 at the root), the configuration before it,
    # and the candidates of the configuration after it with how many have been tried.
    stack: list[tuple[int, State, int, int, int, list[tuple[int, State]], list[int]]] = [
        (-1, state, linearized, taken, restriction, candidates(state, taken, restriction), [0])
    ]
    path: list[int] = []
    longest: list[int] = []
    longest_state = initial
    agreeing = 0
    states = 0
    next_clock_check = SEARCH_CLOCK_CHECK_INTERVAL_STATES if deadline is not None else -1
    while stack:
        frame = stack[-1]
        options, tried = frame[5], frame[6]
        if tried[0] >= len(options):
            stack.pop()
            number = frame[0]
            if number >= 0:
                path.pop()
                agreeing = min(agreeing, len(path))
                state, linearized, taken, restriction = frame[1], frame[2], frame[3], frame[4]
                if number < definite:
                    entry = call_entry[number]
                    for linked in (partner[entry], entry):
                        following[preceding[linked]] = linked
                        preceding[following[linked]] = linked
            continue
        number, after = options[tried[0]]
        tried[0] += 1
        if number < definite:
            new_linearized, new_taken = linearized | (1 << number), taken
            new_restriction = _UNRESTRICTED
        else:
            new_linearized, new_taken = linearized, taken | (1 << (number - definite))
            new_restriction = number
        bucket = cache.get((new_linearized, after))
        if bucket is not None and any(
            not entered_taken & ~new_taken
            and (entered_restriction in (_UNRESTRICTED, new_restriction))
            for entered_taken, entered_restriction in bucket[-SUBSUMPTION_CANDIDATES_MAX:]
        ):
            continue
        if bucket is None:
            cache[(new_linearized, after)] = [(new_taken, new_restriction)]
        else:
            bucket.append((new_taken, new_restriction))
        states += 1
        previous = (state, linearized, taken, restriction)
        state, linearized, taken, restriction = after, new_linearized, new_taken, new_restriction
        path.append(number)
        if len(path) > len(longest):
            del longest[agreeing:]
            longest.extend(path[agreeing:])
            agreeing = len(path)
            longest_state = state
        if number < definite:
            for unlinked in (call_entry[number], partner[call_entry[number]]):
                before, beyond = preceding[unlinked], following[unlinked]
                following[before] = beyond
                preceding[beyond] = before
        if linearized == everything:
            return SearchOutcome(True, states, None, ())
        if states >= max_states:
            return _unknown(BUDGET_STATES, states, longest, order, longest_state)
        if states == next_clock_check:
            assert deadline is not None
            if time.monotonic() > deadline:
                return _unknown(BUDGET_TIME, states, longest, order, longest_state)
            next_clock_check += SEARCH_CLOCK_CHECK_INTERVAL_STATES
        stack.append((number, *previous, candidates(state, taken, restriction), [0]))
    prefix = tuple(order[number] for number in longest)
    return SearchOutcome(False, states, None, prefix, longest_state)


def _unknown(
    reason: str, states: int, longest: list[int], order: list[int], state: State
) -> SearchOutcome:
    return SearchOutcome(None, states, reason, tuple(order[number] for number in longest), state)
