"""The key-value store's snapshot: its MessagePack layout, and an encoder that lets the event
loop run while a large state is encoded.

msgspec holds the GIL for a whole `encode()` call: one call over 200,000 keys takes 60-80 ms
in the disk thread, and the event loop (heartbeats, requests) waits that long for the GIL;
one over 100 keys of 1 MB values, 170 ms (a state grows that big with large values).

Where setup.py built it, the store's key map (a frozen view of its shards, kv/key_map.py) is
walked by `snapshot_native` (kv/snapshot_native.c), a C walk that writes the same bytes as
msgspec without holding the GIL: groups of shards of about `NATIVE_GROUP_RECORDS` keys, one
call each. `bench/bench_snapshot.py --keys 300000`: the loop stood still for 3 % of the
encoding's time against 17-43 % with msgspec's slices (with 300 keys of 1 MB, 18 ms in all
against 72-119). A group it will not write byte for byte as msgspec does (a subclass, a
negative int, a lone surrogate) is encoded by msgspec, as every shard is in an install
without the C module (`RAFTKV_PURE`, no compiler).

With msgspec the key map is encoded in slices, each its own call: shard by shard, a shard
whole when its keys and values are few enough (`SHARD_RECORDS`, `SLICE_BYTES`: the map
counts each shard's values as it writes). Anything else goes in slices of items: the first
of `FIRST_SLICE_RECORDS` keys, each next one of about `SLICE_BYTES` encoded at the previous
slice's bytes per key, at most `SLICE_RECORDS` keys, and cut again where its values add up
to `SLICE_BYTES`: a run of large values after small keys (200,000 keys of 64 bytes, then 300
of 1 MB) made one call of 300 MB, and the loop waited 1.2 s for the GIL, long enough to lose
the leader. After each call the encoding thread gives the GIL away (`time.sleep(0)`):
without that, the loop's thread, once it had let go of the GIL for a system call, waited for
the switch interval (5 ms) to get it back, and system calls are what the loop makes most.

A snapshot's encoding (`KVStore.prepare_snapshot`) has the C walk run at idle priority, in
a thread of its own that never holds the GIL, for `IDLE_SECONDS` at most in all; the rest is
walked in the encoding thread at its own priority (kv/snapshot_native.c says why, and why
the idle thread must not hold the GIL). The bytes are the same.

Either way, the bytes are exactly those of encoding the whole `Snapshot` at once: the map's
header is written for the whole map, each part's own header is dropped, and the other
fields are the struct's own encoding with an empty key map. With the C walk the whole
snapshot is written in place, into the bytes object returned (`snapshot_native.Builder`,
reserved at about the snapshot's size up front): every copy of a large snapshot is fresh
memory the kernel zeroes on first touch, and the walk's own buffer, copied into a bytes
object and then joined with the other parts, made three (the 1 MB row's system time,
docs/ARCHITECTURE.md, session 42). With msgspec alone the parts are joined once, as `bytes`
(a slice's header is cut off by a copy, not a memoryview: `bytes.join` copies without the
GIL only when every part is a `bytes`; with memoryviews the loop waited 20 ms for the join
of 38 MB).
"""

from __future__ import annotations

import itertools
import operator
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

import msgspec

from raftkv.kv.commands import Result
from raftkv.kv.frozen_keys import FrozenKeys
from raftkv.kv.leases import LeaseRecord
from raftkv.kv.records import KeyRecord
from raftkv.kv.sessions import SessionRecord

if TYPE_CHECKING:
    from raftkv.kv.snapshot_native import Builder

# The C walk of a frozen key map (kv/snapshot_native.c), into a bytes object written in place.
native_builder: type[Builder] | None
_native_walks_moved: Callable[[], int]
try:
    from raftkv.kv import snapshot_native
except ImportError:  # installed without compiling (RAFTKV_PURE, no C compiler): msgspec alone
    native_builder = None
    _native_walks_moved = int
else:
    snapshot_native.use(KeyRecord)
    native_builder = snapshot_native.Builder
    _native_walks_moved = snapshot_native.walks_moved


def walks_moved() -> int:
    """How many of this process's walks found too little idle CPU in their time and were
    done again at ordinary priority (kv/snapshot_native.c); 0 without the C walk."""
    return _native_walks_moved()


# A session as snapshots keep it.
Session = SessionRecord[Result]

# Keys per encode() call at most: a fraction of a millisecond of holding the GIL (64-byte
# values).
SLICE_RECORDS = 1024
# A state of at most this many keys is encoded in one call (the simulator's few keys: 16 MiB
# at most, with the largest values), and a sliced encoding starts with a slice this big.
FIRST_SLICE_RECORDS = 16
# About this many encoded bytes per call after the first: well under a millisecond.
SLICE_BYTES = 1 << 20
# A shard of the store's key map of at most this many keys (a state of up to about a
# million) is one call if its values are small: 1-2 ms of holding the GIL at most.
SHARD_RECORDS = 4096
# Keys per `snapshot_native` call: tens of milliseconds without the GIL, then the shards read
# are let go of (with the GIL) before the next group.
NATIVE_GROUP_RECORDS = 1 << 16
# How long a snapshot's walks may wait for idle CPU in all (`encode(idle_seconds=...)`, in a
# thread of idle priority, kv/snapshot_native.c) before the rest is walked at the priority of
# the thread encoding: a state of a million keys takes about a second of CPU to walk.
IDLE_SECONDS = 5.0
# The bytes a key and its record take besides its value, about (the room a snapshot's bytes
# are reserved with, `_size_hint`).
RECORD_BYTES_GUESS = 48


class Snapshot(msgspec.Struct):
    # Each key's record (a MessagePack array). Snapshots written before revisions hold the
    # value alone (a string): restored as created and last written at the snapshot's index,
    # version 1 (SPEC §6). The field keeps its name so that a node older than revisions
    # refuses a newer snapshot (an array where it wants a string) instead of misreading it.
    data: Mapping[str, KeyRecord | str]
    applied_index: int
    applied_hash: bytes
    sessions: list[Session] = []
    # Absent from snapshots written before sessions were refused once forgotten: 0.
    evicted_through: int = 0
    # Absent from snapshots written before leases: none.
    leases: list[LeaseRecord] = []


_encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(Snapshot)
# How a Snapshot starts as MessagePack: a map of its 6 fields, the first one "data", here
# holding an empty map.
_START = b"\x86\xa4data"
_EMPTY_MAP = b"\x80"


def encode(state: Snapshot, slice_records: int = SLICE_RECORDS, idle_seconds: float = 0.0) -> bytes:
    """`state` as MessagePack, byte for byte what one `encode(state)` gives, in slices of
    at most `slice_records` keys. `idle_seconds`: the C walk of a frozen key map runs at idle
    priority for that long at most (module docstring of kv/snapshot_native.c)."""
    if len(state.data) <= min(slice_records, FIRST_SLICE_RECORDS):
        if not isinstance(state.data, dict):  # the store's frozen view: msgspec wants a dict
            state = msgspec.structs.replace(state, data=dict(state.data.items()))
        return _encoder.encode(state)  # one slice: the plain encoding, without the splicing
    empty = _encoder.encode(msgspec.structs.replace(state, data={}))
    if not empty.startswith(_START + _EMPTY_MAP):
        raise AssertionError("the snapshot's layout changed: update kv/snapshot_format.py")
    rest = empty[len(_START) + len(_EMPTY_MAP) :]
    records = state.data
    header = _header(len(records), _MAP_HEADERS)
    if native_builder is not None and isinstance(records, FrozenKeys):
        # Written in place: the walks write into the bytes this returns, reserved at about
        # its size, with no part copied (`_encode_natively`).
        out = native_builder(len(_START) + len(header) + _size_hint(records) + len(rest))
        out.append(_START)
        out.append(header)
        idle_until = time.monotonic() + idle_seconds if idle_seconds > 0 else 0.0
        _encode_natively(records, out, _ItemSlices(out, slice_records), idle_until)
        out.append(rest)
        return out.finish()
    parts: list[bytes] = [_START, header]
    slices = _ItemSlices(parts, slice_records)
    if isinstance(records, FrozenKeys):
        _encode_shards(records.shard_maps(), parts, slices)
    else:
        slices.encode(iter(records.items()))
    parts.append(rest)
    return b"".join(parts)


def _size_hint(records: FrozenKeys) -> int:
    """About the bytes a frozen key map's body takes: its values' characters (their bytes if
    ASCII) and a key's and a record's fields of a few dozen bytes each. Reserved, not
    touched: the part not written costs no memory, and a short guess only means one copy."""
    return records.value_chars_total + RECORD_BYTES_GUESS * len(records)


Item = tuple[str, KeyRecord | str]


class Parts(Protocol):
    """Where the encoded pieces go, in order: a list joined at the end, or a native
    `Builder` writing in place."""

    def append(self, data: bytes, /) -> None: ...


def _encode_natively(
    records: FrozenKeys, out: Builder, slices: _ItemSlices, idle_until: float
) -> None:
    """The shards in groups of about NATIVE_GROUP_RECORDS keys, each walked in one
    `snapshot_native` call: with the GIL let go of for a snapshot's frozen view, so the event
    loop runs on while a large state is encoded. A group the walk refuses (a value it does
    not write as msgspec would) is encoded by msgspec, the same bytes either way."""
    group: list[tuple[dict[str, KeyRecord], int]] = []
    keys = 0
    release_gil = records.unchanging
    for shard, value_chars in records.shard_maps():
        group.append((shard, value_chars))
        keys += len(shard)
        if keys < NATIVE_GROUP_RECORDS:
            continue
        _encode_group(group, out, slices, release_gil, idle_until)
        keys = 0
    _encode_group(group, out, slices, release_gil, idle_until)


def _encode_group(
    group: list[tuple[dict[str, KeyRecord], int]],
    out: Builder,
    slices: _ItemSlices,
    release_gil: bool,
    idle_until: float,
) -> None:
    if not group:
        return
    shards = [shard for shard, _ in group]
    # Idle priority for what is left of the encoding's time: past it, walked here.
    idle_seconds = max(0.0, idle_until - time.monotonic()) if idle_until else 0.0
    walked = out.walk(shards, release_gil, None, idle_seconds)
    del shards
    if not walked:
        _encode_shards(iter(group), out, slices)
    # Let go of the shards one by one: a shard the map copied since the freeze is freed
    # here, with its records overwritten since, and the loop gets the GIL between them.
    group.reverse()
    while group:
        group.pop()
        if len(group) % 16 == 0:
            time.sleep(0)  # not a wait: lets a thread waiting for the GIL have it now


def _encode_shards(
    shards: Iterator[tuple[dict[str, KeyRecord], int]], parts: Parts, slices: _ItemSlices
) -> None:
    """Each shard by msgspec: a shard of at most SHARD_RECORDS keys whose values add up to
    at most SLICE_BYTES is one call on the shard's own dict, its map header dropped (no item
    lists built, no value read twice: 250-283 ms against 426-515 ms for 300,000 keys of 100
    bytes rewritten in random order, `bench/bench_snapshot.py --keys 300000`); a larger one
    goes in slices of items."""
    unyielded = 0  # keys encoded since the GIL was last given away
    for shard, value_chars in shards:
        if len(shard) > SHARD_RECORDS or value_chars > SLICE_BYTES:
            slices.encode(iter(shard.items()))
        elif shard:
            encoded = _encoder.encode(shard)
            parts.append(encoded[len(_header(len(shard), _MAP_HEADERS)) :])
            unyielded += len(shard)
            # Small shards together: a sleep after each of 256 made a state of 500 keys
            # take 25-37 ms to encode instead of 6.
            if unyielded >= SLICE_RECORDS or value_chars * 2 > SLICE_BYTES:
                unyielded = 0
                time.sleep(0)  # not a wait: lets a thread waiting for the GIL have it now


class _ItemSlices:
    """Encodes runs of items in slices, each encoded as the flat array [key, value, key,
    value, ...] (no dict to build) with its array header dropped: the first of
    FIRST_SLICE_RECORDS keys, each next one of about SLICE_BYTES at the last slice's bytes
    per key, at most `slice_records` keys, cut again where its values add up to
    SLICE_BYTES."""

    def __init__(self, parts: Parts, slice_records: int) -> None:
        self._parts = parts
        self._slice_records = slice_records
        self._count = min(slice_records, FIRST_SLICE_RECORDS)

    def encode(self, items: Iterator[Item]) -> None:
        flatten = itertools.chain.from_iterable
        parts = self._parts
        while batch := list(itertools.islice(items, self._count)):
            batch_bytes = 0
            for piece in _cut_by_value_bytes(batch):
                flat = list(flatten(piece))
                encoded = _encoder.encode(flat)
                parts.append(encoded[len(_header(len(flat), _ARRAY_HEADERS)) :])
                batch_bytes += len(encoded)
                time.sleep(0)  # not a wait: lets a thread waiting for the GIL have it now
            self._count = max(1, min(self._slice_records, SLICE_BYTES * len(batch) // batch_bytes))


_second = operator.itemgetter(1)
_value_of = operator.attrgetter("value")


def _value_bytes(batch: list[Item]) -> int:
    """The length of the values in `batch` (characters: about their bytes), counted in C."""
    try:
        return sum(map(len, map(_value_of, map(_second, batch))))
    except AttributeError:  # an old-format record somewhere: the value alone, a string
        return sum(len(_plain_value(record)) for _, record in batch)


def _plain_value(record: KeyRecord | str) -> str:
    return record if isinstance(record, str) else record.value


def _cut_by_value_bytes(batch: list[Item]) -> list[list[Item]]:
    """`batch` as it is, or cut into runs whose values add up to about SLICE_BYTES."""
    if _value_bytes(batch) <= SLICE_BYTES:
        return [batch]
    pieces: list[list[Item]] = []
    start = size = 0
    for position, (_, record) in enumerate(batch):
        size += len(_plain_value(record))
        if size >= SLICE_BYTES:
            pieces.append(batch[start : position + 1])
            start, size = position + 1, 0
    if start < len(batch):
        pieces.append(batch[start:])
    return pieces


# MessagePack's headers as msgspec writes them: (the fix form's first byte, 16-bit, 32-bit).
_MAP_HEADERS = (0x80, 0xDE, 0xDF)
_ARRAY_HEADERS = (0x90, 0xDC, 0xDD)


def _header(size: int, forms: tuple[int, int, int]) -> bytes:
    fixed, sixteen, thirty_two = forms
    if size < 16:
        return bytes((fixed | size,))
    if size < 1 << 16:
        return bytes((sixteen,)) + struct.pack(">H", size)
    return bytes((thirty_two,)) + struct.pack(">I", size)
