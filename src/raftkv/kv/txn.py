"""Transactions (SPEC §6, "Transactions"): compares, then one branch of operations, as one
log entry. The types travel in the entry; `compare_holds` is the one place a compare is
decided, on every replica alike."""

from __future__ import annotations

from raftkv.kv.records import KeyRecord

# The Structs are in txn_records.py (interpreted: see its docstring); re-exported here.
from raftkv.kv.txn_records import Compare as Compare
from raftkv.kv.txn_records import Txn as Txn
from raftkv.kv.txn_records import TxnOp as TxnOp
from raftkv.kv.txn_records import TxnOutcome as TxnOutcome

COMPARE_TARGETS = ("value", "version", "mod_index", "create_index", "exists")
COMPARE_OPS = ("==", "!=", "<", ">")
BRANCH_OPS = ("put", "delete", "get", "range")


def _observed(record: KeyRecord | None, target: str) -> str | int | bool | None:
    """What a compare's target reads of a key; an absent key has no value and 0 revisions
    (so `version == 0` and `exists == false` both mean absent)."""
    if target == "exists":
        return record is not None
    if record is None:
        return None if target == "value" else 0
    return getattr(record, target)  # type: ignore[no-any-return]


def compare_holds(compare: Compare, record: KeyRecord | None) -> bool:
    observed = _observed(record, compare.target)
    expected = compare.value
    if compare.op == "==":
        return observed == expected
    if compare.op == "!=":
        return observed != expected
    if observed is None or isinstance(observed, bool):
        return False  # an absent value, or exists: neither is ordered
    if compare.op == "<":
        return observed < expected  # type: ignore[operator]
    return observed > expected  # type: ignore[operator]


def well_typed(compare: Compare) -> bool:
    """Whether the compare's value fits its target and op (the API refuses the others; the
    store checks again, since an entry is whatever the log holds)."""
    if compare.target not in COMPARE_TARGETS or compare.op not in COMPARE_OPS:
        return False
    value = compare.value
    if compare.target == "exists":
        return isinstance(value, bool) and compare.op in ("==", "!=")
    if compare.target == "value":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)
