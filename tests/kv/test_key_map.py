"""The store's key map, copied on write shard by shard (kv/key_map.py): a frozen view keeps
the state of its moment whatever is written after, only the shards written are copied, and
the order of its items is the same in every process."""

from __future__ import annotations

import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.key_map import SHARDS, KeyMap, shard_of
from raftkv.kv.records import KeyRecord


def record(n: int) -> KeyRecord:
    return KeyRecord(f"v{n}", n, n, 1)


def long_record(n: int) -> KeyRecord:
    """Values of every length from 0 to 99 characters."""
    return KeyRecord("é" * n, n, n, 1)


def value_chars_of(items: dict[str, KeyRecord]) -> list[int]:
    """Each shard's values' length, counted afresh."""
    chars = [0] * SHARDS
    for key, item in items.items():
        chars[shard_of(key)] += len(item.value)
    return chars


KEYS = st.sampled_from([f"k{n}" for n in range(40)] + ["", "é", "\U0001f600", "\ud800"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers(0, 99)),
        st.tuples(st.just("pop"), KEYS, st.just(0)),
        st.tuples(st.just("freeze"), st.just(""), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_behaves_as_a_dict_and_every_frozen_view_keeps_its_moment(ops: list) -> None:
    keys = KeyMap()
    model: dict[str, KeyRecord] = {}
    views = []
    for op, key, n in ops:
        if op == "set":
            keys.set(key, long_record(n))
            model[key] = long_record(n)
        elif op == "pop":
            assert keys.pop(key) == model.pop(key, None)
        else:
            views.append((keys.freeze(), dict(model)))
        assert keys.value_chars() == value_chars_of(model)
        assert len(keys) == len(model)
        assert all((key in keys) == (key in model) for key in model)
        assert keys.get(key) == model.get(key)
    assert dict(keys.items()) == model
    assert sorted(keys.keys()) == sorted(model)
    assert dict(keys.view().items()) == model
    assert KeyMap(keys.items()).value_chars() == value_chars_of(model)  # a restore counts too
    for number, (view, then) in enumerate(views):
        assert len(view) == len(then)
        if number % 2:
            assert dict(view.items()) == then  # read once, as a snapshot's encoding reads it
        else:  # or shard by shard, each with its values' length, as the encoder reads it
            shards = list(view.shard_maps())
            assert [chars for _, chars in shards] == value_chars_of(then)
            assert {key: item for shard, _ in shards for key, item in shard.items()} == then


def test_a_write_after_a_freeze_copies_only_its_own_shard() -> None:
    keys = KeyMap((f"k{n}", record(n)) for n in range(5000))
    view = keys.freeze()
    assert keys.copied_shards() == 0
    keys.set("k1", record(-1))
    keys.set("k1", record(-2))  # the same shard again: already copied
    assert keys.copied_shards() == 1
    keys.pop("not there")  # nothing removed: nothing copied
    assert keys.copied_shards() == 1
    keys.pop("k2")
    assert keys.copied_shards() == (1 if shard_of("k2") == shard_of("k1") else 2)
    assert view["k1"] == record(1) and view["k2"] == record(2)


def test_a_snapshot_s_view_lets_go_of_each_shard_once_read_and_is_read_once() -> None:
    keys = KeyMap((f"k{n}", record(n)) for n in range(5000))
    view = keys.freeze()
    first = view._held[0]  # the view's first shard
    for key in list(first):
        keys.set(key, record(-1))  # the map copies it: the view holds the only original
    held = sys.getrefcount(first)
    items = iter(view.items())
    for _ in range(len(first) + 1):  # past the first shard, into the second
        next(items)
    assert sys.getrefcount(first) == held - 1  # the view let go of it
    rest = dict(items)
    assert len(rest) == 5000 - len(first) - 1
    assert len(view) == 5000
    with pytest.raises(RuntimeError, match="read once"):
        dict(view.items())
    with pytest.raises(RuntimeError, match="read once"):
        view["k1"]


def test_the_shard_of_a_key_is_the_same_in_every_process() -> None:
    # Not hash(), which is seeded per process: snapshot bytes would differ between nodes
    # and between two runs of one simulator seed.
    for key in ("", "k1", "é", "key-000123"):
        assert shard_of(key) == zlib.crc32(key.encode("utf-8")) % SHARDS


def test_items_keep_their_order_through_a_rebuild() -> None:
    keys = KeyMap()
    for n in range(3000):
        keys.set(f"k{(n * 7919) % 3000}", record(n))
    for n in range(0, 3000, 3):
        keys.pop(f"k{n}")
    assert list(KeyMap(keys.items()).items()) == list(keys.items())


def put(key: str, value: str) -> bytes:
    return encode_command(Command(op="put", key=key, value=value))


def test_a_prepared_snapshot_is_the_state_it_was_prepared_at() -> None:
    store = KVStore()
    for n in range(3000):
        store.apply(n + 1, put(f"k{n}", f"v{n}"))
    expected = store.snapshot()
    encode = store.prepare_snapshot()
    index = 3000
    for n in range(0, 3000, 2):  # overwrite, delete and create after the freeze
        index += 1
        store.apply(index, put(f"k{n}", "new"))
        index += 1
        store.apply(index, encode_command(Command(op="del", key=f"k{n + 1}")))
        index += 1
        store.apply(index, put(f"n{n}", "v"))
    assert store.get("k0") == "new" and store.get("k1") is None
    assert encode() == expected
    restored = KVStore()
    restored.restore(expected)
    assert restored.get("k0") == "v0" and restored.get("k1") == "v1"
    assert restored.get("n0") is None
