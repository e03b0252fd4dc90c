"""The sliced snapshot encoder writes exactly the bytes one whole encode() writes: snapshots
written before it (and by other nodes' versions) and after it are the same format."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.kv import snapshot_format
from raftkv.kv.commands import Command, Result, encode_command
from raftkv.kv.key_map import SHARDS, shard_of
from raftkv.kv.leases import LeaseRecord
from raftkv.kv.records import KeyRecord
from raftkv.kv.snapshot_format import Session, Snapshot
from raftkv.kv.store import KVStore


def state_of(keys: int) -> Snapshot:
    records: dict[str, KeyRecord | str] = {
        f"k{n}": KeyRecord(f"value {n}", n + 1, n + 2, 1, lease=n % 3) for n in range(keys)
    }
    if keys:
        records["old-format"] = "a value alone, as snapshots before revisions kept it"
    return Snapshot(
        records,
        applied_index=keys + 7,
        applied_hash=bytes(range(32)),
        sessions=[Session("client-a", 4, Result(ok=False, error="cas_failed", current="x"), 9)],
        evicted_through=3,
        leases=[LeaseRecord(11, 30)],
    )


# Around every MessagePack map header boundary (fixmap < 16 <= map16 < 65,536 <= map32),
# counting the extra old-format key; slices whose flat arrays [key, value, ...] take each
# array header form too (7 keys: 14 items, fixarray; 8: 16, array 16; 40,000: array 32).
CASES = [(keys, slice_records) for keys in (0, 1, 14, 15, 16, 100) for slice_records in (1, 7, 8)]
CASES += [(keys, 1024) for keys in (0, 14, 15, 4095, 4096, 65_534, 65_535, 70_000)]
CASES += [(70_000, 40_000)]


@pytest.mark.parametrize(("keys", "slice_records"), CASES)
def test_sliced_bytes_equal_one_whole_encode(keys: int, slice_records: int) -> None:
    state = state_of(keys)
    assert snapshot_format.encode(state, slice_records) == msgspec.msgpack.encode(state)


def test_a_store_restores_what_it_encoded_in_slices() -> None:
    store = KVStore()
    for n in range(5000):
        store.apply(n + 1, encode_command(Command(op="put", key=f"k{n}", value=f"v{n}")))
    data = store.prepare_snapshot()()
    restored = KVStore()
    restored.restore(data)
    assert restored.applied_hash == store.applied_hash
    assert restored.data == store.data and len(restored.data) == 5000
    assert restored.snapshot() == data


def encoded_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every encode() call the encoder makes from now on."""
    sizes: list[int] = []
    real = snapshot_format._encoder

    class Recording:
        def encode(self, value: object) -> bytes:
            encoded = real.encode(value)
            sizes.append(len(encoded))
            return encoded

    monkeypatch.setattr(snapshot_format, "_encoder", Recording())
    return sizes


def test_large_values_are_encoded_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices follow the bytes, not only the key count: 60 keys of 300 KB were one call of
    18 MB (and 300 keys of 1 MB, a state the 1 MB benchmark row builds, one of 300 MB)."""
    sizes = encoded_sizes(monkeypatch)
    value = "v" * 300_000
    state = Snapshot({f"k{n:03d}": KeyRecord(value, 1, 1, 1) for n in range(60)}, 9, b"h")
    assert snapshot_format.encode(state) == msgspec.msgpack.encode(state)
    first, *rest = sizes[1:]  # sizes[0]: the other fields, around an empty map
    assert first < 17 * len(value)  # FIRST_SLICE_RECORDS keys
    assert len(rest) >= 10
    assert max(rest) <= snapshot_format.SLICE_BYTES + len(value) + 100


def test_a_run_of_large_values_after_small_keys_is_cut_by_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slice size follows the previous slice's bytes per key: after 5,000 small keys a
    slice of 1,024 keys was taken whatever their values, so a run of large values behind
    them was one call (200,000 keys and 300 values of 1 MB: 300 MB, the loop waiting 1.2 s
    for the GIL). Each call now holds about SLICE_BYTES of values, or one larger value."""
    sizes = encoded_sizes(monkeypatch)
    large = "v" * 200_000
    records: dict[str, KeyRecord | str] = {
        f"small-{n}": KeyRecord("s", n + 1, n + 1, 1) for n in range(5000)
    }
    records.update({f"large-{n}": KeyRecord(large, 1, 1, 1) for n in range(60)})
    records["old-format"] = "a value alone"  # the slow path of counting, once
    records.update({f"after-{n}": KeyRecord(large, 1, 1, 1) for n in range(20)})
    state = Snapshot(records, 9, b"h")
    assert snapshot_format.encode(state) == msgspec.msgpack.encode(state)
    assert max(sizes) <= snapshot_format.SLICE_BYTES + len(large) + 1000
    assert sum(sizes) > 80 * len(large)  # every large value was encoded, a few per call


@pytest.fixture
def msgspec_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's shards encoded by msgspec, as an install without the C walk encodes them
    (kv/snapshot_native.c; its own tests are in test_snapshot_native.py)."""
    monkeypatch.setattr(snapshot_format, "native_builder", None)


def store_of(keys: int, value: str = "v") -> KVStore:
    store = KVStore()
    for n in range(keys):
        store.apply(n + 1, encode_command(Command(op="put", key=f"k{n}", value=f"{value}{n}")))
    return store


def whole_encoding(store: KVStore) -> bytes:
    """The store's snapshot as one encode() of a plain dict writes it."""
    state = store._state(store._records.view())
    return msgspec.msgpack.encode(msgspec.structs.replace(state, data=dict(state.data.items())))


@pytest.mark.parametrize("walk", ["as installed", "msgspec only"])
@pytest.mark.parametrize("keys", [0, 1, 16, 17, 300, 5000])
def test_a_store_s_shards_encode_to_the_bytes_of_one_whole_encode(
    keys: int, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if walk == "msgspec only":
        monkeypatch.setattr(snapshot_format, "native_builder", None)
    store = store_of(keys)
    expected = whole_encoding(store)
    assert store.prepare_snapshot()() == expected  # a frozen view, read once
    assert store.snapshot() == expected  # a view read on the spot


@pytest.mark.usefixtures("msgspec_only")
def test_each_small_shard_is_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store's shard of few keys and small values is encoded whole: one call per shard
    (no item lists built), not one per SLICE_RECORDS keys."""
    store = store_of(20_000)
    sizes = encoded_sizes(monkeypatch)
    store.prepare_snapshot()()
    assert len(sizes) == 1 + SHARDS  # the fields around an empty map, then each shard


@pytest.mark.usefixtures("msgspec_only")
def test_a_shard_of_large_values_or_many_keys_is_sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys whose checksums fall in one shard (a client can choose them) with large values:
    that shard is encoded a few values a call, as any other mapping is; and so is a shard
    with more than SHARD_RECORDS keys."""
    large = "v" * 200_000
    same_shard = [key for key in (f"x{n}" for n in range(100_000)) if shard_of(key) == 7][:40]
    store = store_of(2000)
    for n, key in enumerate(same_shard):
        store.apply(3000 + n, encode_command(Command(op="put", key=key, value=large)))
    sizes = encoded_sizes(monkeypatch)
    assert store.prepare_snapshot()() == whole_encoding(store)
    assert max(sizes) <= snapshot_format.SLICE_BYTES + len(large) + 1000
    assert sum(sizes) > 40 * len(large)
    sizes.clear()
    monkeypatch.setattr(snapshot_format, "SHARD_RECORDS", 4)  # every shard has more keys
    monkeypatch.setattr(snapshot_format, "FIRST_SLICE_RECORDS", 2)
    store = store_of(2000)
    assert store.prepare_snapshot()() == whole_encoding(store)
    # Sliced: the first slice is FIRST_SLICE_RECORDS keys, the next ones as many as fit
    # SLICE_BYTES (here each rest of a shard): one call more than whole shards make.
    assert len(sizes) == 2 + SHARDS


@pytest.mark.usefixtures("msgspec_only")
@pytest.mark.parametrize("keys", [500, 20_000])
def test_small_shards_give_the_gil_away_every_slice_records_keys(
    keys: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not after each of the 256 shards: a state of 500 keys took 25-37 ms to encode
    instead of 6, and a test waiting for snapshots timed out."""
    yields: list[float] = []
    monkeypatch.setattr(snapshot_format.time, "sleep", yields.append)
    store_of(keys).prepare_snapshot()()
    per_yield = snapshot_format.SLICE_RECORDS  # keys, and less than a shard more
    assert keys // (per_yield + 200) <= len(yields) <= keys // per_yield
