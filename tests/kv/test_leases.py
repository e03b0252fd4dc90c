"""Leases in the store (SPEC §6, "Leases"): granted at an index, keys attached by writes and
detached by other writes and deletes, revoked or expired with their keys, all through the
log and carried in snapshots."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.kv import Command, KVStore, Result, encode_command
from raftkv.kv import leases as leases_module
from raftkv.kv import store as store_module
from raftkv.kv.changes import KeyChange
from raftkv.kv.leases import LEASE_TTL_MAX_SECONDS
from raftkv.kv.records import KeyRecord
from raftkv.kv.sessions import SessionRecord
from raftkv.kv.txn import Compare, Txn, TxnOp


def apply(store: KVStore, index: int, **fields: object) -> Result:
    return store.apply(index, encode_command(Command(**{"key": "", **fields})))  # type: ignore[arg-type]


class Deletions:
    def __init__(self) -> None:
        self.deleted: list[tuple[int, str]] = []

    def changed(self, change: KeyChange) -> None:
        if change.record is None:
            self.deleted.append((change.index, change.key))

    def restored(self, index: int) -> None:
        pass


def test_a_grant_is_named_by_its_index_unless_the_client_chose_a_free_id() -> None:
    store = KVStore()
    assert apply(store, 1, op="lease_grant", ttl=10) == Result(ok=True, lease=1, ttl=10)
    assert apply(store, 2, op="lease_grant", ttl=5, lease=3) == Result(ok=True, lease=3, ttl=5)
    assert apply(store, 3, op="lease_grant", ttl=5, lease=3).error == "lease_exists"
    # Index 4 is free, but the client took id 5 before index 5 came: that grant walks on.
    assert apply(store, 4, op="lease_grant", ttl=7, lease=5).lease == 5
    assert apply(store, 5, op="lease_grant", ttl=7).lease == 6
    assert store.lease_ttls() == {1: 10, 3: 5, 5: 7, 6: 7}


def test_a_grant_outside_the_ttl_bounds_is_refused_alike_everywhere() -> None:
    store = KVStore()
    assert apply(store, 1, op="lease_grant", ttl=0).error == "bad_request"
    assert apply(store, 2, op="lease_grant", ttl=LEASE_TTL_MAX_SECONDS + 1).error == "bad_request"
    assert store.lease_count == 0


def test_writes_attach_and_detach_keys() -> None:
    store = KVStore()
    apply(store, 1, op="lease_grant", ttl=10)
    apply(store, 2, op="lease_grant", ttl=10)
    apply(store, 3, op="put", key="a", value="1", lease=1)
    apply(store, 4, op="put", key="b", value="1", lease=1)
    apply(store, 5, op="put", key="c", value="1", lease=2)
    assert store.record("a") == KeyRecord("1", 3, 3, 1, 1)
    assert store.lease(1) == (10, ["a", "b"])
    apply(store, 6, op="put", key="b", value="2", lease=2)  # moves to lease 2
    apply(store, 7, op="put", key="c", value="2")  # a put without a lease detaches
    apply(store, 8, op="cas", key="a", value="3", if_value="1", lease=2)
    assert store.lease(1) == (10, [])
    assert store.lease(2) == (10, ["a", "b"])
    apply(store, 9, op="del", key="a")
    apply(store, 10, op="delrange", key="b", end="c")
    assert store.lease(2) == (10, [])
    assert store.record("c") == KeyRecord("2", 5, 7, 2, 0)


def test_a_write_naming_an_unknown_lease_applies_nothing() -> None:
    store = KVStore()
    apply(store, 1, op="put", key="a", value="1")
    assert apply(store, 2, op="put", key="a", value="2", lease=9).error == "lease_not_found"
    assert apply(store, 3, op="cas", key="a", value="2", if_value="1", lease=9).error == (
        "lease_not_found"
    )
    txn = Txn(success=[TxnOp("put", key="b", value="x"), TxnOp("put", key="c", value="y", lease=9)])
    assert apply(store, 4, op="txn", txn=txn).error == "lease_not_found"
    assert store.data == {"a": "1"}
    assert store.record("a") == KeyRecord("1", 1, 1, 1)


def test_a_transaction_attaches_keys_of_the_branch_it_runs() -> None:
    store = KVStore()
    apply(store, 1, op="lease_grant", ttl=10)
    txn = Txn(
        compare=[Compare("lock/a", "create_index", "==", 0)],
        success=[TxnOp("put", key="lock/a", value="me", lease=1)],
        # The branch not taken may name an unknown lease: only the branch run is checked.
        failure=[TxnOp("put", key="never", value="x", lease=99)],
    )
    result = apply(store, 2, op="txn", txn=txn)
    assert result.ok and result.txn is not None and result.txn.succeeded
    assert store.lease(1) == (10, ["lock/a"])


def test_revoke_deletes_every_key_of_the_lease_through_the_observer_at_its_index() -> None:
    deletions = Deletions()
    store = KVStore(observer=deletions)
    apply(store, 1, op="lease_grant", ttl=10)
    for index, key in enumerate(["k/b", "k/a", "k/c"], start=2):
        apply(store, index, op="put", key=key, value="v", lease=1)
    apply(store, 5, op="put", key="other", value="v")
    assert apply(store, 6, op="lease_revoke", lease=1) == Result(ok=True, deleted=3)
    assert deletions.deleted == [(6, "k/a"), (6, "k/b"), (6, "k/c")]
    assert store.data == {"other": "v"}
    assert store.lease(1) is None
    assert apply(store, 7, op="lease_revoke", lease=1).error == "lease_not_found"


def test_an_expiry_revokes_several_and_ignores_leases_already_gone() -> None:
    store = KVStore()
    apply(store, 1, op="lease_grant", ttl=10)
    apply(store, 2, op="lease_grant", ttl=10)
    apply(store, 3, op="lease_grant", ttl=10)
    apply(store, 4, op="put", key="a", value="v", lease=1)
    apply(store, 5, op="put", key="b", value="v", lease=2)
    apply(store, 6, op="lease_revoke", lease=2)
    assert apply(store, 7, op="lease_expire", leases=(1, 2, 42)) == Result(ok=True, deleted=1)
    assert store.lease_ttls() == {3: 10}
    assert store.leases_expired_total == 1
    assert store.data == {}


def test_lease_commands_are_exactly_once_through_sessions() -> None:
    store = KVStore()
    first = apply(store, 1, op="lease_grant", ttl=10, client_id="c", seq=1)
    retry = apply(store, 2, op="lease_grant", ttl=10, client_id="c", seq=1)
    assert first == retry == Result(ok=True, lease=1, ttl=10)
    assert store.lease_count == 1


def test_lease_changes_are_taken_once_and_a_restore_says_all() -> None:
    store = KVStore()
    apply(store, 1, op="lease_grant", ttl=10)
    apply(store, 2, op="lease_grant", ttl=10)
    apply(store, 3, op="put", key="a", value="v", lease=1)  # no lease granted or revoked
    apply(store, 4, op="lease_revoke", lease=2)
    assert store.take_lease_changes() == {1, 2}
    assert store.take_lease_changes() == set()
    store.restore(store.snapshot())
    assert store.take_lease_changes() is None
    assert store.take_lease_changes() == set()


def test_changes_nobody_takes_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases_module, "LEASES_MAX", 3)
    store = KVStore()
    for index in range(1, 6):
        apply(store, index, op="lease_grant", ttl=10)
    assert store.take_lease_changes() is None  # too many to list: re-read them all


def test_snapshot_round_trip_keeps_leases_and_their_keys() -> None:
    store = KVStore()
    apply(store, 1, op="lease_grant", ttl=10)
    apply(store, 2, op="lease_grant", ttl=30, lease=77)
    apply(store, 3, op="put", key="a", value="1", lease=1)
    apply(store, 4, op="put", key="b", value="2", lease=77)
    apply(store, 5, op="put", key="c", value="3")
    copy = KVStore()
    copy.restore(store.prepare_snapshot()())
    assert copy.lease_ttls() == {1: 10, 77: 30}
    assert copy.lease(1) == (10, ["a"]) and copy.lease(77) == (30, ["b"])
    # The copy goes on exactly as the original: the same ids, the same deletions.
    for replica in (store, copy):
        apply(replica, 6, op="lease_grant", ttl=5)
        apply(replica, 7, op="lease_revoke", lease=77)
    assert copy.data == store.data == {"a": "1", "c": "3"}
    assert copy.lease_ttls() == store.lease_ttls() == {1: 10, 6: 5}
    assert copy.applied_hash == store.applied_hash
    assert copy.snapshot() == store.snapshot()


class _SnapshotBeforeLeases(msgspec.Struct):
    data: dict[str, tuple[str, int, int, int]]
    applied_index: int
    applied_hash: bytes
    sessions: list[SessionRecord[Result]] = []
    evicted_through: int = 0


def test_a_snapshot_from_before_leases_restores_with_none() -> None:
    old = msgspec.msgpack.encode(_SnapshotBeforeLeases({"a": ("1", 3, 5, 2)}, 9, b"\x02" * 16))
    store = KVStore()
    store.restore(old)
    assert store.record("a") == KeyRecord("1", 3, 5, 2, 0)
    assert store.lease_count == 0
    assert apply(store, 10, op="lease_grant", ttl=3).lease == 10


def test_a_leased_key_answers_its_lease() -> None:
    assert KeyRecord("v", 1, 2, 1, 5).to_json("k") == {
        "key": "k",
        "value": "v",
        "create_index": 1,
        "mod_index": 2,
        "version": 1,
        "lease": 5,
    }
    assert "lease" not in KeyRecord("v", 1, 2, 1).to_json("k")


def test_grants_stop_at_the_lease_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "LEASES_MAX", 2)
    store = KVStore()
    assert apply(store, 1, op="lease_grant", ttl=5).ok
    assert apply(store, 2, op="lease_grant", ttl=5).ok
    assert apply(store, 3, op="lease_grant", ttl=5).error == "too_many_leases"
    apply(store, 4, op="lease_revoke", lease=1)
    assert apply(store, 5, op="lease_grant", ttl=5).lease == 5
