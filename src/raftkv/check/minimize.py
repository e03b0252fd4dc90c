"""Shrinking a non-linearizable history to a small sub-history that still fails.

Dropping operations naively would mislead: remove the write a read saw, and the read alone
"fails" for a reason that was never in the history. So every step here only weakens the
history, in ways under which any linearization survives: observations are dropped, completed
writes become indeterminate (they may still take effect where they did), and indeterminate
writes that nothing could observe are removed (exact, see model.remove_unobservable_writes).
A weakened history that is still not linearizable therefore proves the original is not.

First a window of operations around where the search got stuck is grown until, with
everything outside it weakened, it still fails (cheap: small windows search fast). Then delta
debugging (Zeller & Hildebrandt 2002) weakens chunks of what is left, halving the chunk size
when no chunk can go, until single operations cannot. Each candidate is judged by the bounded
search of Wing & Gong 1993 / Lowe 2017; one whose search runs out of budget counts as
linearizable, so the result never claims more than was shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raftkv.check.limits import LOCALIZE_WINDOW_OPERATIONS_MIN, MINIMIZE_STATES_PER_CHECK_MAX
from raftkv.check.model import ModelOperation, remove_unobservable_writes, weaken
from raftkv.check.search import search_linearization
from raftkv.check.witness import find_witness


@dataclass(frozen=True)
class Minimization:
    operations: tuple[ModelOperation, ...]  # in call order
    checks: int  # bounded searches run
    complete: bool  # no single operation can be weakened further (else a budget ran out)


class Budget:
    """Searches left for shrinking: a number of checks and of states across all of them."""

    def __init__(self, checks_max: int, states_max: int, deadline: float | None) -> None:
        self.checks = 0
        self.checks_max = checks_max
        self.states_left = states_max
        self.deadline = deadline

    def portion(self, states_max: int) -> Budget:
        """A budget drawn from this one, with at most `states_max` states; `settle` it after."""
        return Budget(
            self.checks_max - self.checks, min(self.states_left, states_max), self.deadline
        )

    def settle(self, portion: Budget, states_max: int) -> None:
        """Charge what `portion` (from `portion(states_max)`) spent to this budget."""
        self.checks += portion.checks
        self.states_left -= min(self.states_left, states_max) - portion.states_left

    @property
    def left(self) -> bool:
        return self.checks < self.checks_max and self.states_left > 0

    def fails(self, operations: Sequence[ModelOperation]) -> bool:
        """Whether `operations` were shown not linearizable within what is left."""
        self.checks += 1
        if find_witness(operations) is not None:
            return True
        states = min(self.states_left, MINIMIZE_STATES_PER_CHECK_MAX)
        outcome = search_linearization(operations, max_states=states, deadline=self.deadline)
        self.states_left -= outcome.states_explored
        return outcome.ok is False


def truncate(operations: Sequence[ModelOperation], end_time: float) -> list[ModelOperation]:
    """The history as seen at `end_time`: later calls dropped, unfinished operations weakened.

    A weakening: in any linearization, every operation placed before one that returned by
    `end_time` was called by then, so cutting the linearization after the last such operation
    leaves one of the truncated history (where still-pending writes are indeterminate).
    """
    kept: list[ModelOperation] = []
    for operation in operations:
        if operation.call_time > end_time:
            continue
        if operation.return_time is None or operation.return_time > end_time:
            weakened = weaken(operation)
            if weakened is not None:
                kept.append(weakened)
        else:
            kept.append(operation)
    return remove_unobservable_writes(kept)


def weaken_before(operations: Sequence[ModelOperation], start_time: float) -> list[ModelOperation]:
    """The history with every operation called before `start_time` weakened."""
    kept: list[ModelOperation] = []
    for operation in operations:
        if operation.call_time < start_time:
            weakened = weaken(operation)
            if weakened is not None:
                kept.append(weakened)
        else:
            kept.append(operation)
    return remove_unobservable_writes(kept)


def localize(
    operations: Sequence[ModelOperation], center: ModelOperation | None, budget: Budget
) -> list[ModelOperation] | None:
    """A failing weakening of `operations` confined to a window around `center`, or None.

    The window (in call order) doubles until, with everything before it weakened and the
    history truncated after it, it fails, or it covers everything.
    """
    ordered = sorted(operations, key=lambda op: (op.call_time, op.history_index))
    position = len(ordered) // 2 if center is None else ordered.index(center)
    size = LOCALIZE_WINDOW_OPERATIONS_MIN
    while budget.left:
        first = max(0, position - size)
        last = min(len(ordered), position + size)
        end_time = ordered[last - 1].call_time
        if center is not None and center.return_time is not None:
            end_time = max(end_time, center.return_time)
        window = truncate(weaken_before(ordered, ordered[first].call_time), end_time)
        if budget.fails(window):
            return window
        if first == 0 and last == len(ordered):
            return None
        size *= 2
    return None


def _measure(operations: Sequence[ModelOperation]) -> int:
    # Each weakening removes an operation or makes a definite one indeterminate, so this
    # strictly decreases with every accepted step and the loop terminates.
    return len(operations) + sum(1 for op in operations if op.return_time is not None)


def _weaken_range(
    operations: list[ModelOperation], start: int, end: int
) -> list[ModelOperation] | None:
    weakened = [op for op in map(weaken, operations[start:end]) if op is not None]
    candidate = remove_unobservable_writes(operations[:start] + weakened + operations[end:])
    return candidate if _measure(candidate) < _measure(operations) else None


def minimize_failure(operations: Sequence[ModelOperation], budget: Budget) -> Minimization:
    """A small weakening of `operations` (shown not linearizable) that still fails."""
    current = sorted(operations, key=lambda op: (op.call_time, op.history_index))
    chunk = max(1, len(current) // 2)
    while budget.left:
        progressed = False
        start = 0
        while start < len(current) and budget.left:
            candidate = _weaken_range(current, start, start + chunk)
            if candidate is not None and budget.fails(candidate):
                current = candidate  # the next chunk now starts at `start`
                progressed = True
            else:
                start += chunk
        if chunk == 1 and not progressed and start >= len(current):
            return Minimization(tuple(current), budget.checks, True)
        if not progressed:
            chunk //= 2
        chunk = max(1, min(chunk, len(current) // 2))
    return Minimization(tuple(current), budget.checks, False)
