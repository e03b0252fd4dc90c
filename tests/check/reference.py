"""A brute-force linearizability checker, the reference the real checker is compared with.

It reads `Operation` fields directly (not the checker's model), tries every subset of the
indeterminate operations as "took effect", and every order of the chosen operations that
respects real time, replaying each order on a plain dict. Only for a handful of operations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from raftkv.check.history import Operation

MISSING = object()  # a cas_failed without `current`


def _definite(operation: Operation) -> bool:
    if operation.status == "unknown":
        return False
    if operation.status == "ok":
        return True
    return operation.error in ("not_found", "cas_failed")  # a failure that observed something


def _applies(operation: Operation, store: dict[str, str], definite: bool) -> bool:
    """Replay `operation` on `store`; False if its reported outcome is impossible here."""
    key = operation.key
    current = store.get(key)
    conditional = operation.op == "cas" or (
        operation.op == "put" and (operation.if_absent or operation.if_value is not None)
    )
    if operation.op == "get":
        if operation.error == "not_found":
            return current is None
        return current == operation.result
    if operation.op == "del":
        if not definite:
            store.pop(key, None)
            return True
        if operation.error == "not_found":
            return current is None
        if current is None:
            return False
        del store[key]
        return True
    if conditional:
        matches = current is None if operation.if_absent else current == operation.if_value
        if not definite:
            if matches:
                assert operation.value is not None
                store[key] = operation.value
            return True
        if operation.error == "cas_failed":
            if matches:
                return False
            reported = operation.current
            return not isinstance(reported, str | None) or reported == current
        if not matches:
            return False
    assert operation.value is not None
    store[key] = operation.value
    return True


def brute_force_linearizable(history: Sequence[Operation]) -> bool:
    # Definite failures and reads without an answer cannot have had an effect.
    relevant = [
        op for op in history if _definite(op) or (op.status == "unknown" and op.op != "get")
    ]
    definite = [op for op in relevant if _definite(op)]
    maybe = [op for op in relevant if not _definite(op)]

    def ends(op: Operation) -> float:
        if not _definite(op) or op.return_time is None:
            return math.inf
        return op.return_time

    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            operations = definite + list(chosen)
            for order in itertools.permutations(operations):
                # Real time: an operation that returned before another's call comes first.
                if any(
                    ends(later) < earlier.call_time
                    for position, earlier in enumerate(order)
                    for later in order[position + 1 :]
                ):
                    continue
                store: dict[str, str] = {}
                if all(_applies(op, store, _definite(op)) for op in order):
                    return True
    return False
