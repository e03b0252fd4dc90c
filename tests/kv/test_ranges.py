"""Ranges of the store (SPEC §6, "Ranges"): pages in key order from one state, delete range
as one command, and a dict model agreeing with the store on random sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv import store as store_module
from raftkv.kv.ranges import KeyRange, key_after_token, page_token
from raftkv.kv.txn import Txn, TxnOp


def put(key: str, value: str = "v") -> bytes:
    return encode_command(Command(op="put", key=key, value=value))


def delete_range(key_range: KeyRange) -> bytes:
    return encode_command(Command(op="delrange", key=key_range.start, end=key_range.end))


def filled(*keys: str) -> KVStore:
    store = KVStore()
    for index, key in enumerate(keys, 1):
        store.apply(index, put(key, key.upper()))
    return store


def test_a_prefix_range_in_pages() -> None:
    store = filled("b2", "a", "b1", "b", "c", "b3")
    page = store.range(KeyRange.prefix("b"), limit=2)
    assert [key for key, _ in page.items] == ["b", "b1"]
    assert (page.count, page.more) == (4, True)
    page = store.range(KeyRange.prefix("b"), after="b1", limit=2)
    assert [key for key, _ in page.items] == ["b2", "b3"]
    assert (page.count, page.more) == (4, False)
    assert page.items[0][1].value == "B2"


def test_start_end_and_everything() -> None:
    store = filled("a", "b", "c", "d")
    assert [k for k, _ in store.range(KeyRange("b", "d")).items] == ["b", "c"]
    assert [k for k, _ in store.range(KeyRange("b")).items] == ["b", "c", "d"]
    assert store.range(KeyRange()).count == 4
    assert store.range(KeyRange("d", "a")).items == []


def test_prefix_of_the_last_characters() -> None:
    last = chr(0x10FFFF)
    assert KeyRange.prefix("a" + last) == KeyRange("a" + last, "b")
    assert KeyRange.prefix(last) == KeyRange(last, None)


def test_delete_range_is_one_command_and_counts() -> None:
    store = filled("a", "b1", "b2", "c")
    result = store.apply(5, delete_range(KeyRange.prefix("b")))
    assert (result.ok, result.deleted) == (True, 2)
    assert store.data == {"a": "A", "c": "C"}
    assert store.range(KeyRange()).count == 2
    restored = KVStore()
    restored.restore(store.snapshot())
    assert [k for k, _ in restored.range(KeyRange()).items] == ["a", "c"]


def test_page_tokens_round_trip_and_refuse_garbage() -> None:
    for key in ["a", "ключ/ü", "x" * 300]:
        assert key_after_token(page_token(key)) == key
    for bad in ["", "!!", "YQ==", "é", "_w"]:
        assert key_after_token(bad) is None


KEYS = st.text(alphabet="abc", min_size=1, max_size=3)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, st.text(alphabet="xy", max_size=2)),
        st.tuples(st.just("del"), KEYS, st.just("")),
        st.tuples(st.just("delprefix"), KEYS, st.just("")),
        st.tuples(st.just("range"), KEYS, st.sampled_from(["", "b", "c"])),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPERATIONS, st.integers(min_value=1, max_value=4))
def test_the_store_agrees_with_a_dict_model(
    operations: list[tuple[str, str, str]], limit: int
) -> None:
    store = KVStore()
    model: dict[str, str] = {}
    for index, (op, key, argument) in enumerate(operations, 1):
        if op == "put":
            store.apply(index, put(key, argument))
            model[key] = argument
        elif op == "del":
            store.apply(index, encode_command(Command(op="del", key=key)))
            model.pop(key, None)
        elif op == "delprefix":
            result = store.apply(index, delete_range(KeyRange.prefix(key)))
            doomed = [k for k in model if k.startswith(key)]
            assert result.deleted == len(doomed)
            for k in doomed:
                del model[k]
        else:
            key_range = KeyRange(key, argument or None)
            expected = sorted((k, v) for k, v in model.items() if k in key_range)
            seen: list[tuple[str, str]] = []
            after = None
            while True:
                page = store.range(key_range, after, limit)
                assert page.count == len(expected)
                seen += [(k, record.value) for k, record in page.items]
                if not page.more:
                    break
                after = page.items[-1][0]
            assert seen == expected
    assert store.data == model
    assert [k for k, _ in store.range(KeyRange(), limit=10_000).items] == sorted(model)


def test_a_page_of_big_values_stops_at_the_character_cap_and_continues() -> None:
    store = KVStore()
    big = "v" * 1000
    for index, key in enumerate(("a", "b", "c", "d"), start=1):
        store.apply(index, encode_command(Command(op="put", key=key, value=big)))
    page = store.range(KeyRange.prefix(""), None, 10, chars_max=2500)
    assert [key for key, _ in page.items] == ["a", "b"] and page.more and page.count == 4
    assert page.chars == 2002
    rest = store.range(KeyRange.prefix(""), "b", 10, chars_max=2500)
    assert [key for key, _ in rest.items] == ["c", "d"] and not rest.more
    # keys only: the values do not count
    assert len(store.range(KeyRange.prefix(""), None, 10, 2500, keys_only=True).items) == 4
    # one key bigger than the cap still makes a page: pagination always moves on
    assert [key for key, _ in store.range(KeyRange.prefix(""), None, 10, 10).items] == ["a"]


def test_a_transaction_s_ranges_share_one_character_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "RANGE_PAGE_CHARS_MAX", 2500)
    store = KVStore()
    for index, key in enumerate(("a", "b", "c"), start=1):
        store.apply(index, encode_command(Command(op="put", key=key, value="v" * 1000)))
    everything = TxnOp(op="range", prefix="")
    txn = Txn(success=[everything, everything])
    result = store.apply(4, encode_command(Command(op="txn", key="", txn=txn)))
    assert result.txn is not None
    first, second = result.txn.results
    assert len(first["kvs"]) == 2 and first["more"]
    assert len(second["kvs"]) == 1 and second["more"]  # what was left: one key, at least
