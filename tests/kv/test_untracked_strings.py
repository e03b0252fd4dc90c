"""The state's containers of keys kept out of the cyclic collector's walk
(kv/untracked_strings.c): every list of `SortedKeys` (kv/ranges.py) untracked, whatever built
it (a restore, inserts that split a list, a range removed), and every lease's set of keys
(kv/leases.py); only lists and sets of nothing but `str` untracked."""

from __future__ import annotations

import gc
import importlib
import random
from types import ModuleType

import pytest

from raftkv.kv.commands import Command, encode_command
from raftkv.kv.ranges import KeyRange, SortedKeys
from raftkv.kv.store import KVStore

pytestmark = pytest.mark.compiled

native: ModuleType | None
try:  # deselected where it is not built (conftest.py), but collected
    native = importlib.import_module("raftkv.kv.untracked_strings")
except ImportError:
    native = None


def sublists(keys: SortedKeys) -> list[list[str]]:
    return keys._keys._lists  # type: ignore[attr-defined,no-any-return]


def tracked(keys: SortedKeys) -> int:
    return sum(gc.is_tracked(sublist) for sublist in sublists(keys))


def in_order(keys: SortedKeys) -> list[str]:
    low, high = keys.bounds(KeyRange())
    return keys.between(low, high)


def test_it_is_built_with_the_compiled_modules() -> None:
    """Without it full collections walk every key, all requests waiting, and nothing else
    would say so."""
    assert native is not None


def test_keys_inserted_one_by_one_split_lists_that_are_untracked_too() -> None:
    names = [f"key-{n}" for n in range(20_000)]
    random.Random(7).shuffle(names)
    keys = SortedKeys()
    for name in names:
        keys.add(name)
    assert len(sublists(keys)) > 10  # inserts split lists: new lists appeared
    assert tracked(keys) == 0
    assert in_order(keys) == sorted(names)


def test_a_restored_index_is_untracked() -> None:
    keys = SortedKeys([f"key-{n}" for n in range(5_000)])
    assert len(sublists(keys)) > 1
    assert tracked(keys) == 0


def test_removing_a_range_that_rebuilds_the_lists_leaves_them_untracked() -> None:
    keys = SortedKeys([f"key-{n:05}" for n in range(10_000)])
    # A quarter of the keys: sortedcontainers rebuilds its lists from what remains.
    doomed = keys.pop_between(0, 2_500)
    assert doomed == [f"key-{n:05}" for n in range(2_500)]
    assert tracked(keys) == 0
    keys.pop_between(10, 20)  # a few: removed in place
    for n in range(5_000, 9_000):  # removals merge lists
        keys.remove(f"key-{n:05}")
    assert tracked(keys) == 0
    assert len(in_order(keys)) == 10_000 - 2_500 - 10 - 4_000


def test_a_store_of_many_keys_leaves_no_list_of_keys_to_the_collector() -> None:
    store = KVStore()
    for index in range(1, 3_001):
        store.apply(index, encode_command(Command(op="put", key=f"k{index}", value="v")))
    assert tracked(store._sorted) == 0  # type: ignore[attr-defined]
    assert len(sublists(store._sorted)) > 1  # type: ignore[attr-defined]
    restored = KVStore()
    restored.restore(store.snapshot())
    assert tracked(restored._sorted) == 0  # type: ignore[attr-defined]


def test_every_lease_keeps_its_keys_untracked() -> None:
    store = KVStore()
    index = 0

    def apply(**fields: object) -> None:
        nonlocal index
        index += 1
        store.apply(index, encode_command(Command(**{"key": "", **fields})))  # type: ignore[arg-type]

    apply(op="lease_grant", ttl=60)
    for n in range(100):
        apply(op="put", key=f"k{n}", value="v", lease=1)
    leases = store._leases.leases  # type: ignore[attr-defined]
    assert len(leases[1].keys) == 100
    assert not gc.is_tracked(leases[1].keys)
    restored = KVStore()
    restored.restore(store.snapshot())
    restored_leases = restored._leases.leases  # type: ignore[attr-defined]
    assert len(restored_leases[1].keys) == 100
    assert not gc.is_tracked(restored_leases[1].keys)


def test_only_lists_and_sets_of_exact_strings_are_untracked() -> None:
    assert native is not None

    class Name(str):
        pass

    strings, numbers, named, empty = ["a", "b"], ["a", 1], ["a", Name("b")], []
    string_set, mixed_set, frozen = {"a", "b"}, {"a", 1}, frozenset({"a"})
    other = ("not", "a list")
    containers = [strings, numbers, named, empty, string_set, mixed_set, frozen, other]
    assert native.untrack_string_containers(containers) == 4  # type: ignore[arg-type]
    assert not gc.is_tracked(strings) and not gc.is_tracked(empty)
    assert not gc.is_tracked(string_set) and not gc.is_tracked(frozen)
    assert gc.is_tracked(numbers) and gc.is_tracked(named) and gc.is_tracked(mixed_set)
    assert native.untrack_string_containers([strings]) == 0  # already untracked
    with pytest.raises(TypeError):
        native.untrack_string_containers((strings,))  # type: ignore[arg-type]
