"""The store's map of keys to records, in shards copied on write, so that a snapshot costs
no copy on the event loop.

A snapshot must be the state at one applied index while the store goes on applying. It was a
`dict(records)` on the loop: 6-10 ms at 200,000 keys (14 ms at 400,000) on every node at
every snapshot, during which no request, acknowledgement or heartbeat was served. Here the
map is `SHARDS` dicts, a key's shard fixed by a checksum of the key. `freeze()` hands out the
shards as they are and marks them shared; the first write to a shared shard copies that one
shard (1/256 of the map: ~0.03 ms at 200,000 keys) and writes to the copy, so the frozen
shards are never changed and the snapshot's encoding thread reads them without a lock. A
shard nobody writes before the next snapshot is never copied.

The shard comes from CRC-32 of the key's UTF-8, not `hash()`, which differs from process to
process: a snapshot lists its keys shard by shard, each in insertion order, and the same
keys written in the same order give the same bytes in every process (a restored replica
re-encodes its snapshot byte for byte; the simulator's runs replay exactly).

Each shard's values are counted (characters, as `len` gives), so that a snapshot's encoder
can hand a whole shard to one msgspec call when it is small enough, without reading every
value first to find out (kv/snapshot_format.py).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator

from raftkv.kv.frozen_keys import FrozenKeys
from raftkv.kv.records import KeyRecord

SHARDS = 256  # a power of two: the shard is the checksum's low bits
_SHARD_MASK = SHARDS - 1


def shard_of(key: str) -> int:
    """The shard of `key`: the same in every process (not `hash()`, which is seeded per
    process), so the same writes give the same snapshot bytes everywhere."""
    # surrogatepass: a key is never a lone surrogate (commands are valid UTF-8), but the
    # map must not raise on one if a caller ever hands it one.
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) & _SHARD_MASK


class KeyMap:
    """A `dict[str, KeyRecord]` for the store's few operations, plus `freeze()`."""

    def __init__(self, items: Iterable[tuple[str, KeyRecord]] = ()) -> None:
        self._shards: list[dict[str, KeyRecord]] = [{} for _ in range(SHARDS)]
        # Shards a frozen view may still be reading: copied before their next write.
        self._shared = [False] * SHARDS
        self._size = 0
        # The length of the values in each shard.
        self._value_chars = [0] * SHARDS
        # The last key looked up and its shard: a write reads the key's record, then sets
        # it (KVStore._write), and the checksum is computed once for both.
        self._last_key = ""
        self._last_shard = shard_of("")
        shards = self._shards
        for key, record in items:  # a restore's 200,000 keys: no method call per key
            shards[shard_of(key)][key] = record
        self._size = sum(map(len, shards))
        self._value_chars = [_value_chars(shard) for shard in shards]

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: str) -> bool:
        return key in self._shards[self._shard_number(key)]

    def __getitem__(self, key: str) -> KeyRecord:
        return self._shards[self._shard_number(key)][key]

    def get(self, key: str) -> KeyRecord | None:
        return self._shards[self._shard_number(key)].get(key)

    def set(self, key: str, record: KeyRecord) -> None:
        number = self._shard_number(key)
        shard = self._writable(number)
        old = shard.get(key)
        if old is None:
            self._size += 1
            self._value_chars[number] += len(record.value)
        else:
            self._value_chars[number] += len(record.value) - len(old.value)
        shard[key] = record

    def pop(self, key: str) -> KeyRecord | None:
        """Remove `key`; its record, or None if it was absent."""
        number = self._shard_number(key)
        if key not in self._shards[number]:
            return None  # nothing to remove: a shared shard stays uncopied
        self._size -= 1
        old = self._writable(number).pop(key)
        self._value_chars[number] -= len(old.value)
        return old

    def keys(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._shards)

    def items(self) -> Iterator[tuple[str, KeyRecord]]:
        """Every key and record, in the order snapshots list them. Not while changing it."""
        return itertools.chain.from_iterable(shard.items() for shard in self._shards)

    def view(self) -> FrozenKeys:
        """The map now, for a caller that reads it before the next change (a snapshot
        encoded on the spot): no shard is marked shared."""
        return FrozenKeys(list(self._shards), self._size, list(self._value_chars))

    def freeze(self) -> FrozenKeys:
        """The map now, unchanged by every later write, for a snapshot's encoding: each
        shard is copied before its next write instead of the whole map now. The view is
        read once, letting go of each shard as it goes (`FrozenKeys`)."""
        self._shared = [True] * SHARDS
        return FrozenKeys(list(self._shards), self._size, list(self._value_chars), read_once=True)

    def value_chars(self) -> list[int]:
        """The length of the values in each shard, as kept up to date (tests, tools)."""
        return list(self._value_chars)

    def copied_shards(self) -> int:
        """How many shards writes have copied since the last freeze (tests, tools)."""
        return self._shared.count(False)

    def _shard_number(self, key: str) -> int:
        if key is not self._last_key:
            self._last_key = key
            self._last_shard = shard_of(key)
        return self._last_shard

    def _writable(self, number: int) -> dict[str, KeyRecord]:
        shard = self._shards[number]
        if self._shared[number]:
            shard = dict(shard)
            self._shards[number] = shard
            self._shared[number] = False
        return shard


def _value_chars(shard: dict[str, KeyRecord]) -> int:
    return sum(len(record.value) for record in shard.values())
