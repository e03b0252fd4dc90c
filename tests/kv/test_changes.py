"""The store tells its observer every key it changes, at the index that changed it."""

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.changes import KeyChange
from raftkv.kv.records import KeyRecord
from raftkv.kv.txn import Txn, TxnOp


class Recorder:
    def __init__(self) -> None:
        self.changes: list[KeyChange] = []
        self.restores: list[int] = []

    def changed(self, change: KeyChange) -> None:
        self.changes.append(change)

    def restored(self, index: int) -> None:
        self.restores.append(index)


def _apply(store: KVStore, index: int, **fields: object) -> None:
    store.apply(index, encode_command(Command(**fields)))  # type: ignore[arg-type]


def test_every_kind_of_change_is_reported_in_order() -> None:
    recorder = Recorder()
    store = KVStore(observer=recorder)
    _apply(store, 1, op="put", key="a", value="1")
    _apply(store, 2, op="put", key="a", value="2")
    _apply(store, 3, op="put", key="b", value="x")
    _apply(store, 4, op="cas", key="b", value="y", if_value="x")
    _apply(store, 5, op="cas", key="b", value="z", if_value="nope")  # fails: no change
    _apply(store, 6, op="del", key="zz")  # absent: no change
    txn = Txn(
        compare=[], success=[TxnOp(op="put", key="c", value="3"), TxnOp(op="delete", key="a")]
    )
    _apply(store, 7, op="txn", key="", txn=txn)
    _apply(store, 8, op="delrange", key="b", end=None)
    assert [
        (c.index, c.key, c.record and c.record.value, c.prev and c.prev.value)
        for c in recorder.changes
    ] == [
        (1, "a", "1", None),
        (2, "a", "2", "1"),
        (3, "b", "x", None),
        (4, "b", "y", "x"),
        (7, "c", "3", None),
        (7, "a", None, "2"),
        (8, "b", None, "y"),
        (8, "c", None, "3"),
    ]
    assert recorder.changes[1].record == KeyRecord("2", 1, 2, 2)


def test_restore_is_reported_with_the_snapshot_index() -> None:
    source = KVStore()
    _apply(source, 1, op="put", key="a", value="1")
    recorder = Recorder()
    KVStore(observer=recorder).restore(source.snapshot())
    assert recorder.restores == [1] and recorder.changes == []
