"""The checker's results: `KeyResult` per key (or component of keys) and `CheckResult`.

Kept apart from `checker.py`, which mypyc compiles (setup.py): these are public frozen
dataclasses, and once compiled they could no longer be copied or pickled (mypyc's
__setstate__ assigns fields, which a frozen dataclass refuses). `checker.py` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.check.explain import explain_result
from raftkv.check.history import IndexedOperation


@dataclass(frozen=True)
class KeyResult:
    """The verdict for one key (or component of keys), and on failure or unknown what the
    search reached."""

    key: str  # the key, or for a component with multi-key operations its keys in braces
    ok: bool | None  # None: the search budget ran out (see budget_exhausted)
    operation_count: int  # operations on this key in the history
    searched_count: int  # after dropping those without effect and unobservable writes
    states_explored: int
    reason: str = ""  # in words, why it failed or is unknown
    budget_exhausted: str | None = None  # "max_states" or "time"
    # The deepest partial linearization found, in linearization order, and the value after it.
    longest_prefix: tuple[IndexedOperation, ...] = ()
    value_after_prefix: str | None = None
    # Operations that could not be linearized next (the first to return among the rest).
    blocking: tuple[IndexedOperation, ...] = ()
    # Operations called before the blocking one returned and not in the prefix.
    pending: tuple[IndexedOperation, ...] = ()
    # A small sub-history, weakened as minimize.py explains, that is still not linearizable.
    # Operations whose outcome it treats as unknown have status "unknown".
    minimal: tuple[IndexedOperation, ...] = ()
    minimization_checks: int = 0
    minimization_complete: bool = False
    # A component with multi-key operations: its keys, and the map after the longest prefix
    # (then `value_after_prefix` is unused).
    component_keys: tuple[str, ...] = ()
    state_after_prefix: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CheckResult:
    ok: bool | None  # False if any key fails, else None if any is unknown, else True
    operation_count: int
    keys: dict[str, KeyResult]

    @property
    def failed_keys(self) -> list[str]:
        return [key for key, result in self.keys.items() if result.ok is False]

    @property
    def unknown_keys(self) -> list[str]:
        return [key for key, result in self.keys.items() if result.ok is None]

    def summary(self) -> str:
        verdict = {True: "OK", False: "NOT LINEARIZABLE", None: "UNKNOWN"}[self.ok]
        return f"{verdict} n={self.operation_count} keys={len(self.keys)}"

    def explain(self) -> str:
        """A readable account: the summary line, then each failed or unknown key."""
        return explain_result(self)
