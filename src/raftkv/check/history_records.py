"""History records: `Operation` (one client call), `History`, `IndexedOperation`, and a
transaction step's `StepResult` (docs/history-format.md), with the constants they name.

Kept apart from `history.py` and `history_multi_key.py`, which mypyc compiles (setup.py):
a msgspec Struct defined in a compiled module loses the type parameters of its fields (the
decoder would hand back plain lists), and `IndexedOperation`, a frozen dataclass in the
checker's public results, could no longer be copied or pickled once compiled. Both modules
re-export these names; import them from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import msgspec

from raftkv.errors import RaftError
from raftkv.kv.txn import Compare, TxnOp

OperationKind = Literal["get", "put", "del", "cas", "range", "delrange", "txn"]
# Operations that may touch several keys (SPEC §6): checked by the map model (map_model.py).
MULTI_KEY_KINDS = frozenset(("range", "delrange", "txn"))
Status = Literal["ok", "fail", "unknown"]

# Errors that report what the client observed, not a failure to act: the operation completed,
# read the register, and left it unchanged.
NOT_FOUND = "not_found"
CAS_FAILED = "cas_failed"


class StepResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one operation of a transaction's branch answered (docs/history-format.md)."""

    value: str | None = None  # get: the value found (None: absent)
    # range: the keys and values answered, in order (a value None: not reported, keys_only).
    kvs: tuple[tuple[str, str | None], ...] | None = None
    count: int | None = None  # range: keys in the whole range (None: not reported)
    more: bool | None = None  # range: whether keys beyond `limit` were left out
    deleted: int | None = None  # delete: 1 if the key existed, 0 if not (None: not reported)


class HistoryError(RaftError, ValueError):
    """A history that cannot be checked: malformed JSON, a missing field, or a contradiction
    such as a return before its call."""


class Operation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One client call and, once known, its outcome (docs/history-format.md)."""

    client: str
    op: OperationKind
    key: str = ""  # get, put, del, cas
    value: str | None = None  # put and cas: the value written
    if_value: str | None = None  # cas (or a conditional put): write only if current == if_value
    if_absent: bool = False  # cas (or a conditional put): write only if the key is absent
    call_time: float = msgspec.field(name="call")
    return_time: float | None = msgspec.field(default=None, name="return")
    status: Status = "ok"
    result: str | None = None  # get: the value read (None: absent)
    error: str | None = None
    # cas_failed: the value found. UNSET (field missing) means not reported; None means absent.
    current: str | msgspec.UnsetType | None = msgspec.UNSET
    # range and delrange: every key starting with `prefix`, or from `start` to `end` (exclusive;
    # None: no end). range: at most `limit` keys answered.
    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    limit: int | None = None
    kvs: tuple[tuple[str, str], ...] | None = None  # range: the keys and values answered
    count: int | None = None  # range: keys in the whole range (None: not reported)
    more: bool | None = None  # range: keys beyond `limit` left out (None: not reported)
    deleted: int | None = None  # delrange: how many keys it deleted
    # txn: the compares and both branches, as POST /v1/txn takes them (SPEC §6).
    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()
    succeeded: bool | None = None  # txn: whether the compares held
    results: tuple[StepResult, ...] | None = None  # txn: one per operation of the branch run


@dataclass(frozen=True, slots=True)
class IndexedOperation:
    """An operation with its position in the history (0-based), the name reports use."""

    index: int
    operation: Operation


class History(msgspec.Struct, frozen=True):
    """An ordered collection of operations; the order only names them (#index)."""

    operations: tuple[Operation, ...]

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    def keys(self) -> list[str]:
        return sorted({operation.key for operation in self.operations})
