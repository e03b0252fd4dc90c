"""Every key's revisions (SPEC §6): create_index, mod_index and version, derived from the
log index alone, carried in snapshots, and restored from snapshots older than them."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.records import KeyRecord


def put(key: str, value: str) -> bytes:
    return encode_command(Command(op="put", key=key, value=value))


def cas(key: str, value: str, if_value: str) -> bytes:
    return encode_command(Command(op="cas", key=key, value=value, if_value=if_value))


def delete(key: str) -> bytes:
    return encode_command(Command(op="del", key=key))


def test_revisions_through_put_cas_delete_and_recreate() -> None:
    store = KVStore()
    store.apply(1, put("a", "1"))
    assert store.record("a") == KeyRecord("1", 1, 1, 1)
    store.apply(2, put("b", "x"))
    store.apply(3, put("a", "2"))
    assert store.record("a") == KeyRecord("2", 1, 3, 2)
    store.apply(4, cas("a", "3", if_value="2"))
    assert store.record("a") == KeyRecord("3", 1, 4, 3)
    store.apply(5, cas("a", "4", if_value="nope"))  # fails: nothing changes
    assert store.record("a") == KeyRecord("3", 1, 4, 3)
    store.apply(6, delete("a"))
    assert store.record("a") is None
    store.apply(7, put("a", "again"))
    assert store.record("a") == KeyRecord("again", 7, 7, 1)
    assert store.record("b") == KeyRecord("x", 2, 2, 1)


def entries() -> list[bytes]:
    return [put("a", "1"), put("b", "2"), put("a", "3"), delete("b"), put("b", "4")]


def test_two_stores_applying_the_same_entries_agree() -> None:
    first, second = KVStore(), KVStore()
    for index, entry in enumerate(entries(), 1):
        first.apply(index, entry)
        second.apply(index, entry)
    assert first.snapshot() == second.snapshot()
    assert first.applied_hash == second.applied_hash


def test_snapshot_round_trip_keeps_revisions() -> None:
    store = KVStore()
    for index, entry in enumerate(entries(), 1):
        store.apply(index, entry)
    restored = KVStore()
    restored.restore(store.snapshot())
    assert restored.record("a") == KeyRecord("3", 1, 3, 2)
    assert restored.record("b") == KeyRecord("4", 5, 5, 1)
    assert restored.applied_hash == store.applied_hash
    restored.apply(6, put("a", "5"))
    assert restored.record("a") == KeyRecord("5", 1, 6, 3)


class _PreviousSnapshot(msgspec.Struct):
    """The snapshot layout before revisions: values alone."""

    data: dict[str, str]
    applied_index: int
    applied_hash: bytes
    sessions: list[object] = []
    evicted_through: int = 0


def test_a_snapshot_of_the_previous_format_restores() -> None:
    old = msgspec.msgpack.encode(_PreviousSnapshot({"a": "1", "b": "2"}, 40, b"\x01" * 16))
    store = KVStore()
    store.restore(old)
    assert store.record("a") == KeyRecord("1", 40, 40, 1)
    assert store.record("b") == KeyRecord("2", 40, 40, 1)
    assert store.applied_index == 40 and store.applied_hash == "01" * 16
    store.apply(41, put("a", "x"))
    assert store.record("a") == KeyRecord("x", 40, 41, 2)


def test_a_node_older_than_revisions_refuses_a_new_snapshot() -> None:
    store = KVStore()
    store.apply(1, put("a", "1"))
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(store.snapshot(), type=_PreviousSnapshot)
