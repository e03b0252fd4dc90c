"""A frozen view of the store's key map (`kv/key_map.py`).

Kept apart from `key_map.py`, which mypyc compiles (setup.py): the view is a
`collections.abc.Mapping`, as the snapshot's msgspec Struct and the lease table expect, and a
compiled class cannot inherit from it. It is built once per snapshot, so interpreted costs
nothing that matters.
"""

from __future__ import annotations

import itertools
from collections.abc import ItemsView, Iterator, Mapping

from raftkv.kv.records import KeyRecord


class FrozenKeys(Mapping[str, KeyRecord]):
    """The map as it was when frozen: its size and its items, shard by shard, each in
    insertion order. Safe to read from another thread while the map goes on changing (the
    map never writes to a shard it handed out: it copies it first).

    A snapshot's view (`read_once`) lets go of each shard as soon as its items are read:
    the shards the map has copied since are then freed one at a time by the encoding
    thread, between the slices it yields the GIL after, not all at once (with the records
    overwritten since the freeze: 11 ms at 200,000 keys) wherever the snapshot is dropped.
    Read once, it can be read no more.

    `value_chars` is the length of each shard's values (the map keeps it as it writes), so
    the snapshot's encoder knows which shards are small enough to encode whole
    (`shard_maps`)."""

    def __init__(
        self,
        shards: list[dict[str, KeyRecord]],
        size: int,
        value_chars: list[int],
        read_once: bool = False,
    ) -> None:
        self._held: list[dict[str, KeyRecord]] | None = shards
        self._size = size
        self._value_chars = value_chars
        self._read_once = read_once

    def __len__(self) -> int:
        return self._size

    @property
    def unchanging(self) -> bool:
        """Whether nothing changes these shards while they are read: a snapshot's view
        (`KeyMap.freeze`), whose shards the map copies before writing to them. Only then may
        another thread read them without the GIL (kv/snapshot_native.c)."""
        return self._read_once

    @property
    def value_chars_total(self) -> int:
        """The length of all the values (characters: about their bytes)."""
        return sum(self._value_chars)

    def __getitem__(self, key: str) -> KeyRecord:
        # Shard by shard: Mapping wants it, nothing on a hot path uses it (the snapshot's
        # encoding and the lease table read items()), and the shard function stays in
        # key_map.py alone.
        for shard in self._shards():
            if key in shard:
                return shard[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._shards())

    def items(self) -> ItemsView[str, KeyRecord]:
        return _Items(self)

    def iter_items(self) -> Iterator[tuple[str, KeyRecord]]:
        """The items shard by shard, in C (`dict.items`), not through `__getitem__` for
        every key as Mapping's generic view would."""
        shards = self._shards()
        if not self._read_once:
            return itertools.chain.from_iterable(shard.items() for shard in shards)
        self._held = None
        return itertools.chain.from_iterable(_releasing(shards))

    def shard_maps(self) -> Iterator[tuple[dict[str, KeyRecord], int]]:
        """Each shard, in the order of `items()`, with the length of its values; read once,
        each shard is let go of as the next one is asked for. The dicts are the map's own
        frozen shards: read them, never change them."""
        shards = self._shards()
        if self._read_once:
            self._held = None
            return zip(_releasing_shards(shards), self._value_chars, strict=True)
        return zip(shards, self._value_chars, strict=True)

    def _shards(self) -> list[dict[str, KeyRecord]]:
        if self._held is None:
            raise RuntimeError("a snapshot's frozen keys were read once already")
        return self._held


def _releasing_shards(shards: list[dict[str, KeyRecord]]) -> Iterator[dict[str, KeyRecord]]:
    """The shards, each taken off the list as it is handed out (see `_releasing`)."""
    shards.reverse()
    while shards:
        yield shards.pop()


def _releasing(shards: list[dict[str, KeyRecord]]) -> Iterator[ItemsView[str, KeyRecord]]:
    """Each shard's items, taken off the list as they are handed out: once `chain` has read
    one, it holds the last reference to a shard the map has copied since, which is freed
    there, in the encoding thread, one shard at a time. (Items pass through `chain`, in C,
    not through this generator.)"""
    shards.reverse()  # popped from the end, in order
    while shards:
        yield shards.pop().items()


class _Items(ItemsView[str, KeyRecord]):
    _mapping: FrozenKeys

    def __iter__(self) -> Iterator[tuple[str, KeyRecord]]:
        return self._mapping.iter_items()
