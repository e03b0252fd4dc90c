"""The KV commands log entries carry, and their results (encoded and decoded by
commands.py).

Apart from commands.py, which mypyc compiles (setup.py): a msgspec Struct defined in a
compiled module loses the type parameters of its field annotations.
"""

from __future__ import annotations

import msgspec

from raftkv.kv.txn_records import Txn, TxnOutcome


class Command(msgspec.Struct, frozen=True, omit_defaults=True):
    op: str  # "put" | "del" | "cas" | "delrange" | "txn" | "lease_grant" | "lease_revoke"
    # | "lease_expire"
    key: str  # delrange: the range's first key; "" for txn and lease commands
    value: str | None = None
    # cas: apply only if the current value equals `if_value`, or (with if_absent) if absent.
    if_value: str | None = None
    if_absent: bool = False
    # delrange: the range's end, exclusive (None: no end).
    end: str | None = None
    # txn: its compares and branches (`key` is unused: "").
    txn: Txn | None = None
    # put, cas: the lease to attach the key to (0: none, which detaches it from any);
    # lease_grant: the id wanted (0: the entry's index); lease_revoke: the lease.
    lease: int = 0
    # lease_grant: the lease's TTL in seconds.
    ttl: int = 0
    # lease_expire: the leases the leader found expired (a revoke that finds one gone is
    # a no-op, so a repeated expiry is harmless).
    leases: tuple[int, ...] = ()
    # Client session (thesis §6.3): a retried (client_id, seq) is applied once.
    client_id: str = ""
    seq: int = 0
    # A log index the client knew committed before it first sent this request (None: not
    # given). Every attempt lands after it, which lets the store tell a request of a session
    # it never saw from one of a session it forgot (KVStore, docs/client.md).
    after_index: int | None = None


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    ok: bool
    # "cas_failed" | "not_found" | "stale_request" | "session_expired" | "lease_not_found"
    # | "lease_exists" | "too_many_leases"
    error: str | None = None
    current: str | None = None  # the value found when a cas fails
    deleted: int | None = None  # delrange, lease_revoke, lease_expire: keys deleted
    txn: TxnOutcome | None = None  # txn: the branch taken and each operation's answer
    lease: int | None = None  # lease_grant: the id granted
    ttl: int | None = None  # lease_grant: its TTL
