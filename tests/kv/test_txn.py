"""Transactions in the store (SPEC §6, "Transactions"): compares decide the branch, the branch
runs whole at one index, and a malformed one changes nothing."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.records import KeyRecord
from raftkv.kv.txn import Compare, Txn, TxnOp


def txn_entry(txn: Txn, client_id: str = "", seq: int = 0) -> bytes:
    return encode_command(Command(op="txn", key="", txn=txn, client_id=client_id, seq=seq))


def seeded() -> KVStore:
    store = KVStore()
    store.apply(1, encode_command(Command(op="put", key="a", value="1")))
    store.apply(2, encode_command(Command(op="put", key="p/1", value="x")))
    return store


def test_success_branch_runs_every_operation_at_one_index() -> None:
    store = seeded()
    txn = Txn(
        compare=[Compare("a", "value", "==", "1"), Compare("b", "exists", "==", False)],
        success=[
            TxnOp("put", key="b", value="2"),
            TxnOp("get", key="a"),
            TxnOp("delete", key="p/1"),
            TxnOp("range", prefix="p/"),
        ],
        failure=[TxnOp("put", key="never", value="!")],
    )
    result = store.apply(3, txn_entry(txn))
    assert result.ok and result.txn is not None and result.txn.succeeded
    assert result.txn.results == [
        {"op": "put", "key": "b", "mod_index": 3},
        {
            "op": "get",
            "key": "a",
            "kv": {"key": "a", "value": "1", "create_index": 1, "mod_index": 1, "version": 1},
        },
        {"op": "delete", "key": "p/1", "deleted": 1},
        {"op": "range", "kvs": [], "count": 0, "more": False},
    ]
    assert store.record("b") == KeyRecord("2", 3, 3, 1)
    assert store.get("never") is None


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        (Compare("a", "version", "==", 1), True),
        (Compare("a", "version", ">", 1), False),
        (Compare("a", "mod_index", "<", 2), True),
        (Compare("a", "create_index", "!=", 1), False),
        (Compare("a", "value", ">", "0"), True),
        (Compare("zz", "version", "==", 0), True),
        (Compare("zz", "value", "<", "z"), False),
        (Compare("zz", "exists", "!=", True), True),
    ],
)
def test_compares(compare: Compare, holds: bool) -> None:
    store = seeded()
    txn = Txn(compare=[compare], success=[TxnOp("get", key="a")], failure=[])
    result = store.apply(3, txn_entry(txn))
    assert result.txn is not None and result.txn.succeeded is holds
    assert len(result.txn.results) == (1 if holds else 0)


def test_a_malformed_transaction_changes_nothing() -> None:
    store = seeded()
    before = store.snapshot()
    txn = Txn(
        compare=[Compare("a", "exists", "<", True)],  # exists is not ordered
        success=[TxnOp("put", key="b", value="2")],
    )
    result = store.apply(3, txn_entry(txn))
    assert (result.ok, result.error) == (False, "bad_request")
    assert store.get("b") is None
    assert (
        msgspec.msgpack.decode(store.snapshot())["data"] == msgspec.msgpack.decode(before)["data"]
    )


def test_a_retried_transaction_is_applied_once() -> None:
    store = seeded()
    txn = Txn(
        compare=[Compare("a", "version", "==", 1)], success=[TxnOp("put", key="a", value="2")]
    )
    first = store.apply(3, txn_entry(txn, "c", 1))
    again = store.apply(4, txn_entry(txn, "c", 1))
    assert first == again and first.txn is not None and first.txn.succeeded
    assert store.record("a") == KeyRecord("2", 1, 3, 2)
    restored = KVStore()
    restored.restore(store.snapshot())  # the session's answer survives a snapshot
    assert restored.apply(5, txn_entry(txn, "c", 1)) == first
