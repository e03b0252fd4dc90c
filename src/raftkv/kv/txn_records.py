"""Transaction records (SPEC §6, "Transactions"): the compares and branch operations a
transaction entry carries, and what it did, as msgspec Structs.

Kept apart from `txn.py`, which mypyc compiles (setup.py): a msgspec Struct defined in a
compiled module loses the type parameters of its fields, so the decoder would hand back
plain lists and dicts instead of `Compare` and `TxnOp`. `txn.py` re-exports them.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Compare(msgspec.Struct, frozen=True, omit_defaults=True):
    key: str
    target: str  # one of COMPARE_TARGETS
    op: str  # one of COMPARE_OPS
    value: str | int | bool


class TxnOp(msgspec.Struct, frozen=True, omit_defaults=True):
    op: str  # one of BRANCH_OPS
    key: str | None = None  # put, delete, get
    value: str | None = None  # put
    lease: int = 0  # put: the lease to attach the key to (0: none)
    # range: as GET /v1/kv names one.
    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    limit: int | None = None
    keys_only: bool = False


class Txn(msgspec.Struct, frozen=True, omit_defaults=True):
    compare: list[Compare] = []
    success: list[TxnOp] = []
    failure: list[TxnOp] = []


class TxnOutcome(msgspec.Struct, frozen=True):
    """What a transaction did: which branch ran, and each of its operations' answer."""

    succeeded: bool
    results: list[dict[str, Any]]
