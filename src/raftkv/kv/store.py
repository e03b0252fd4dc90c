"""The deterministic key-value store applied by every replica."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import ClassVar

import msgspec
from mypy_extensions import mypyc_attr

from raftkv.errors import InvariantViolation
from raftkv.kv import snapshot_format
from raftkv.kv.changes import ChangeObserver, KeyChange
from raftkv.kv.commands import Command, Result, decode_command
from raftkv.kv.frozen_keys import FrozenKeys
from raftkv.kv.key_map import KeyMap
from raftkv.kv.leases import LEASE_TTL_MAX_SECONDS, LEASES_MAX, LeaseTable
from raftkv.kv.ranges import KeyRange, SortedKeys
from raftkv.kv.records import KeyRecord
from raftkv.kv.sessions import Refusals, SessionRecord, SessionTable
from raftkv.kv.store_records import RangePage as RangePage
from raftkv.kv.txn import BRANCH_OPS, Txn, TxnOp, TxnOutcome, compare_holds, well_typed

_OK = Result(ok=True)
_STALE_REQUEST = Result(ok=False, error="stale_request")
_BAD_REQUEST = Result(ok=False, error="bad_request")
_SESSION_EXPIRED = Result(ok=False, error="session_expired")
_LEASE_NOT_FOUND = Result(ok=False, error="lease_not_found")
_REFUSALS = Refusals(stale=_STALE_REQUEST, expired=_SESSION_EXPIRED)


# Keys a transaction's range answers when it gives no limit (as GET /v1/kv).
TXN_RANGE_LIMIT_DEFAULT = 1000
# Characters of keys and values in one range page (and in all of one transaction's ranges
# together): 10,000 keys of 1 MiB values would otherwise be a 10 GiB answer. Counted in
# characters, which costs nothing to count; a page is then at most 4 times as many bytes.
RANGE_PAGE_CHARS_MAX = 4 << 20


def _runnable(op: TxnOp) -> bool:
    if op.op not in BRANCH_OPS:
        return False
    if op.op == "range":
        return op.limit is None or op.limit > 0
    return op.key is not None and (op.op != "put" or op.value is not None)


# Compiled with mypyc (setup.py): the simulators and tests subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class KVStore:
    """Keys and values, plus a session per client id so that a retried write is applied at
    most once (thesis §6.3, `kv/sessions.py`)."""

    # What its snapshots are snapshots of: a backup records it, and a restore refuses a
    # backup of another kind (server/backup.py).
    snapshot_kind: ClassVar[str] = "kv"

    def __init__(
        self,
        sessions_max: int | None = None,
        observer: ChangeObserver | None = None,
        decode: Callable[[bytes], Command] = decode_command,
    ) -> None:
        """`decode`: how applied bytes become a command (a SharedDecoder when several
        replicas live in one process)."""
        self._decode = decode
        # Copied on write shard by shard, so a snapshot copies nothing (kv/key_map.py).
        self._records = KeyMap()
        # Told of every key change and every restore (watches); None: nobody listens.
        self.observer = observer
        self._sorted = SortedKeys()  # the same keys, in order, for ranges
        self.applied_index = 0
        self._hash = b"\x00" * 16
        self._sessions: SessionTable[Result] = SessionTable(_REFUSALS, sessions_max)
        self._leases = LeaseTable()
        # Leases this replica deleted because the leader found them expired: a counter of
        # this process (metrics), not state.
        self.leases_expired_total = 0

    @property
    def sessions(self) -> dict[str, SessionRecord[Result]]:
        return self._sessions.sessions

    @property
    def sessions_max(self) -> int:
        return self._sessions.sessions_max

    @property
    def evicted_through(self) -> int:
        return self._sessions.evicted_through

    def apply(self, index: int, command: bytes) -> Result:
        if index <= self.applied_index:
            raise InvariantViolation(f"apply {index} after {self.applied_index}")
        self.applied_index = index
        # The running hash chains every applied command with its index, so two replicas agree
        # on it at an index exactly when they applied the same commands up to there.
        self._hash = hashlib.blake2b(
            self._hash + index.to_bytes(8, "big") + command, digest_size=16
        ).digest()
        try:
            parsed = self._decode(command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return _BAD_REQUEST
        if not parsed.client_id:
            return self.execute(parsed)
        sessions = self._sessions
        answer = sessions.admit(index, parsed.client_id, parsed.seq, parsed.after_index)
        if answer is not None:
            return answer
        result = self.execute(parsed)
        sessions.record(index, parsed.client_id, parsed.seq, result)
        return result

    def execute(self, command: Command) -> Result:
        """Execute a decoded command at `self.applied_index` (its log index)."""
        records = self._records
        if command.lease and command.op in ("put", "cas") and command.lease not in self._leases:
            return _LEASE_NOT_FOUND  # before anything else: nothing applied
        if command.op == "put":
            if command.if_absent and command.key in records:
                return Result(ok=False, error="cas_failed", current=records[command.key].value)
            if command.value is None:
                return _BAD_REQUEST  # decided alike on every replica; never a crash
            self._write(command.key, command.value, command.lease)
            return _OK
        if command.op == "del":
            if self._delete(command.key) is None:
                return Result(ok=False, error="not_found")
            return _OK
        if command.op == "delrange":
            return self._delete_range(KeyRange(command.key, command.end))
        if command.op == "txn" and command.txn is not None:
            return self._transaction(command.txn)
        if command.op == "cas":
            current = self.get(command.key)
            matches = current is None if command.if_absent else current == command.if_value
            if not matches:
                return Result(ok=False, error="cas_failed", current=current)
            if command.value is None:
                return _BAD_REQUEST  # decided alike on every replica; never a crash
            self._write(command.key, command.value, command.lease)
            return _OK
        if command.op == "lease_grant":
            return self._grant(command.ttl, command.lease)
        if command.op == "lease_revoke":
            deleted = self._revoke(command.lease)
            return _LEASE_NOT_FOUND if deleted is None else Result(ok=True, deleted=deleted)
        if command.op == "lease_expire":
            total = 0
            for lease_id in command.leases:
                deleted = self._revoke(lease_id)
                if deleted is not None:
                    self.leases_expired_total += 1
                    total += deleted
            return Result(ok=True, deleted=total)
        return _BAD_REQUEST

    def _grant(self, ttl: int, wanted: int) -> Result:
        if not 1 <= ttl <= LEASE_TTL_MAX_SECONDS or wanted < 0:
            return _BAD_REQUEST
        if len(self._leases) >= LEASES_MAX:
            return Result(ok=False, error="too_many_leases")
        lease_id = self._leases.grant(self.applied_index, ttl, wanted)
        if lease_id is None:
            return Result(ok=False, error="lease_exists")
        return Result(ok=True, lease=lease_id, ttl=ttl)

    def _revoke(self, lease_id: int) -> int | None:
        """Delete the lease and every key attached to it, in key order, through `_delete`
        (so observers see each one); how many keys, or None if there is no such lease."""
        lease = self._leases.remove(lease_id)
        if lease is None:
            return None
        for key in sorted(lease.keys):
            self._delete(key)
        return len(lease.keys)

    def _write(self, key: str, value: str, lease: int = 0) -> None:
        """Set `key` at the index being applied: revisions derive from the log index alone,
        so every replica computes the same ones. It is attached to `lease` (which the caller
        made sure exists) and to no other: a write without a lease detaches it."""
        index = self.applied_index
        old = self._records.get(key)
        if old is None:
            record = KeyRecord(value, index, index, 1, lease)
            self._sorted.add(key)
            if lease:
                self._leases.move(key, 0, lease)
        else:
            record = KeyRecord(value, old.create_index, index, old.version + 1, lease)
            self._leases.move(key, old.lease, lease)
        self._records.set(key, record)
        if self.observer is not None:
            self.observer.changed(KeyChange(index, key, record, old))

    def _delete(self, key: str) -> KeyRecord | None:
        """Delete `key` at the index being applied; its record, or None if it was absent.
        Every delete goes through here (or `_delete_range`), so observers see them all."""
        old = self._records.pop(key)
        if old is not None:
            self._sorted.remove(key)
            if old.lease:
                self._leases.detach(key, old.lease)
            if self.observer is not None:
                self.observer.changed(KeyChange(self.applied_index, key, None, old))
        return old

    def _delete_range(self, key_range: KeyRange) -> Result:
        low, high = self._sorted.bounds(key_range)
        doomed = self._sorted.pop_between(low, high)
        records, observer, index = self._records, self.observer, self.applied_index
        leases = self._leases
        for key in doomed:
            old = records.pop(key)
            assert old is not None  # the sorted keys are the map's keys
            if old.lease:
                leases.detach(key, old.lease)
            if observer is not None:
                observer.changed(KeyChange(index, key, None, old))
        return Result(ok=True, deleted=len(doomed))

    def _transaction(self, txn: Txn) -> Result:
        """Decide the compares, then run one branch: all at this index, nothing between."""
        branches = (*txn.success, *txn.failure)
        if not all(well_typed(compare) for compare in txn.compare) or not all(
            _runnable(op) for op in branches
        ):
            return _BAD_REQUEST  # before anything is applied: a transaction is whole or not
        succeeded = all(
            compare_holds(compare, self._records.get(compare.key)) for compare in txn.compare
        )
        branch = txn.success if succeeded else txn.failure
        if any(op.lease and op.lease not in self._leases for op in branch):
            return _LEASE_NOT_FOUND  # the branch would attach a key to no lease: run none of it
        results = []
        chars_left = RANGE_PAGE_CHARS_MAX  # what the transaction's ranges may still answer
        for op in branch:
            result, chars = self._run(op, chars_left)
            results.append(result)
            chars_left = max(0, chars_left - chars)
        return Result(ok=True, txn=TxnOutcome(succeeded, results))

    def _run(self, op: TxnOp, chars_left: int) -> tuple[dict[str, object], int]:
        """One operation of a transaction's branch: its answer (SPEC §6), and the characters
        of keys and values a range answered (0 for the others)."""
        if op.op == "put":
            assert op.key is not None and op.value is not None  # _runnable
            self._write(op.key, op.value, op.lease)
            return {"op": "put", "key": op.key, "mod_index": self.applied_index}, 0
        if op.op == "delete":
            assert op.key is not None
            existed = self._delete(op.key) is not None
            return {"op": "delete", "key": op.key, "deleted": int(existed)}, 0
        if op.op == "get":
            assert op.key is not None
            record = self._records.get(op.key)
            return {"op": "get", "key": op.key, "kv": record and record.to_json(op.key)}, 0
        key_range = (
            KeyRange.prefix(op.prefix)
            if op.prefix is not None
            else KeyRange(op.start or "", op.end)
        )
        page = self.range(
            key_range, None, op.limit or TXN_RANGE_LIMIT_DEFAULT, chars_left, op.keys_only
        )
        answer = {
            "op": "range",
            "kvs": [record.to_json(key, op.keys_only) for key, record in page.items],
            "count": page.count,
            "more": page.more,
        }
        return answer, page.chars

    def range(
        self,
        key_range: KeyRange,
        after: str | None = None,
        limit: int = 1000,
        chars_max: int = RANGE_PAGE_CHARS_MAX,
        keys_only: bool = False,
    ) -> RangePage:
        """Up to `limit` keys of `key_range` in order, from the first one after `after`
        (a previous page's last key) if given, and no more than fit in `chars_max`
        characters of keys and values (of keys alone with `keys_only`; always at least one
        key), so that a page of big values stays a bounded answer. Reads the state as it
        is: call it with no apply in between (synchronously on the loop) to answer from one
        applied index."""
        sorted_keys = self._sorted
        low, high = sorted_keys.bounds(key_range)
        first = low if after is None else min(high, max(low, sorted_keys.after(after)))
        stop = min(high, first + limit)
        records = self._records
        items: list[tuple[str, KeyRecord]] = []
        chars = 0
        for key in sorted_keys.between(first, stop):
            record = records[key]
            size = len(key) if keys_only else len(key) + len(record.value)
            if chars + size > chars_max and items:
                break
            items.append((key, record))
            chars += size
        return RangePage(items, high - low, first + len(items) < high, chars)

    # --- leases (SPEC §6, "Leases") ---------------------------------------------------
    def lease(self, lease_id: int) -> tuple[int, list[str]] | None:
        """The lease's TTL and its keys in order, or None."""
        lease = self._leases.leases.get(lease_id)
        return None if lease is None else (lease.ttl, sorted(lease.keys))

    def lease_ttls(self) -> dict[int, int]:
        """Every lease's TTL, by id."""
        return self._leases.ttls()

    @property
    def lease_count(self) -> int:
        return len(self._leases)

    def lease_ttl(self, lease_id: int) -> int | None:
        lease = self._leases.leases.get(lease_id)
        return None if lease is None else lease.ttl

    def take_lease_changes(self) -> set[int] | None:
        """The leases granted or revoked since the last call (None: any may have been, after
        a restore): for the leader's lessor, which times each new one."""
        return self._leases.take_changes()

    def get(self, key: str) -> str | None:
        record = self._records.get(key)
        return None if record is None else record.value

    def record(self, key: str) -> KeyRecord | None:
        """`key`'s value and revisions, or None."""
        return self._records.get(key)

    @property
    def data(self) -> dict[str, str]:
        """Every key's value: a copy built on each call, for tests and tools."""
        return {key: record.value for key, record in self._records.items()}

    def snapshot(self) -> bytes:
        return snapshot_format.encode(self._state(self._records.view()))

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """Freeze the state now (no copy: writes from here on copy the shard they change,
        kv/key_map.py) and return the slow part, the encoding, to run off the event loop
        while the store keeps applying, its key map walked at idle priority where it can be
        (snapshot_format.IDLE_SECONDS)."""
        state = self._state(self._records.freeze())
        return lambda: snapshot_format.encode(state, idle_seconds=snapshot_format.IDLE_SECONDS)

    def _state(self, records: FrozenKeys) -> snapshot_format.Snapshot:
        table = self._sessions
        return snapshot_format.Snapshot(
            records,
            self.applied_index,
            self._hash,
            table.records(),
            table.evicted_through,
            self._leases.records(),
        )

    def restore(self, data: bytes) -> None:
        """Raises `msgspec.DecodeError` (a ValueError) for bytes that are not a snapshot."""
        try:
            state = snapshot_format.decoder.decode(data)
        except (UnicodeDecodeError, RecursionError) as error:  # not UTF-8; nested too deep
            raise msgspec.DecodeError(f"malformed snapshot: {error}") from None
        index = state.applied_index
        self._records = KeyMap(
            (key, KeyRecord(record, index, index, 1) if isinstance(record, str) else record)
            for key, record in state.data.items()
        )
        self._sorted = SortedKeys(list(self._records.keys()))
        self.applied_index, self._hash = index, state.applied_hash
        self._sessions.restore(state.sessions, state.evicted_through)
        self._leases.restore(state.leases, self._records.view())
        if self.observer is not None:
            self.observer.restored(index)

    @property
    def applied_hash(self) -> str:
        return self._hash.hex()
