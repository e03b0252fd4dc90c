"""Snapshot costs for a KV store of 100,000 keys with 100-byte values, each key written
again once in a random order (as a store's records end up in a live node: the encoding
reads them in the map's order, scattered in memory, not in the order they were made).

    .venv/bin/python bench/bench_snapshot.py [--keys N] [--runs R]

Prints the median over R runs of: the time the event loop is blocked to take a snapshot
(`prepare_snapshot`: freezing the key map, kv/key_map.py; it was a dict copy), the encoding
(done in the disk thread), the durable save (temp file, fsync, rename, directory fsync),
loading and verifying it, and restoring a store from it (what a follower does on
InstallSnapshot). Also the longest the event loop
waits for the GIL while the disk thread encodes, and the share of the encoding's time the
loop stood still (in gaps of over 2 ms between its beats; an idle loop here beats every
~1.1 ms): with the key map walked in C without the GIL
(kv/snapshot_native.c, what compiled nodes do), encoded by msgspec in slices (what an
install without the C module does), and, for comparison, in one msgspec call.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import msgspec

from raftkv.core import Membership, SnapshotMeta
from raftkv.kv import Command, KVStore, encode_command, snapshot_format
from raftkv.storage import FileSnapshotStore


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def loop_waits(work: Callable[[], object]) -> tuple[float, float]:
    """Run `work` in a thread while an event loop wakes every 0.5 ms (asyncio's own loop
    sleeps at least ~1 ms): the longest gap, and the share of the time in gaps of over 2 ms
    (the loop waiting for the GIL)."""

    async def measure() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as executor:
            stamps = [time.perf_counter()]
            done = loop.run_in_executor(executor, work)
            while not done.done():
                await asyncio.sleep(0.0005)
                stamps.append(time.perf_counter())
            await done
            stamps.append(time.perf_counter())
        gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
        stalled = sum(gap for gap in gaps if gap > 0.002)
        return max(gaps), stalled / (stamps[-1] - stamps[0])

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    store = KVStore()
    value = "v" * 100
    for index in range(1, arguments.keys + 1):
        command = Command(op="put", key=f"key-{index:08d}", value=value, client_id="c", seq=index)
        store.apply(index, encode_command(command))
    rewrites = list(range(1, arguments.keys + 1))
    random.Random(7).shuffle(rewrites)
    for index, key in enumerate(rewrites, start=arguments.keys + 1):
        command = Command(op="put", key=f"key-{key:08d}", value=value, client_id="c", seq=index)
        store.apply(index, encode_command(command))
    meta = SnapshotMeta(2 * arguments.keys, 1, Membership(voters=frozenset({1, 2, 3})))
    rows: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}
    size = 0
    with tempfile.TemporaryDirectory() as directory:
        snapshots = FileSnapshotStore(directory, keep=2)
        for _ in range(arguments.runs):
            blocked, encode = timed(store.prepare_snapshot)
            encoding, data = timed(encode)  # type: ignore[operator]
            assert isinstance(data, bytes)
            size = len(data)
            saving, _ = timed(lambda data=data: snapshots.save(meta, data))
            loading, latest = timed(snapshots.latest)
            assert latest is not None
            restored = KVStore()
            restoring, _ = timed(lambda r=restored, d=latest[1]: r.restore(d))
            assert restored.applied_hash == store.applied_hash
            native_wait, native_lost = loop_waits(store.prepare_snapshot())
            walk, snapshot_format.native_builder = snapshot_format.native_builder, None
            try:
                sliced_wait, sliced_lost = loop_waits(store.prepare_snapshot())
            finally:
                snapshot_format.native_builder = walk
            state = msgspec.structs.replace(
                store._state(store._records.view()), data=dict(store._records.items())
            )
            whole_wait, whole_lost = loop_waits(lambda state=state: msgspec.msgpack.encode(state))
            for name, seconds in (
                ("loop blocked (freeze)", blocked),
                ("encode (disk thread)", encoding),
                ("save durably", saving),
                ("load and verify", loading),
                ("restore into a store", restoring),
                ("loop wait, C walk", native_wait),
                ("loop wait, msgspec slices", sliced_wait),
                ("loop wait, one call", whole_wait),
            ):
                rows.setdefault(name, []).append(seconds)
            for name, share in (
                ("loop stalled, C walk", native_lost),
                ("loop stalled, msgspec slices", sliced_lost),
                ("loop stalled, one call", whole_lost),
            ):
                shares.setdefault(name, []).append(share)
    print(
        f"snapshot of {arguments.keys} keys, 100-byte values, rewritten in random order: "
        f"{size / 1e6:.1f} MB; "
        f"median of {arguments.runs} runs"
    )
    for name, samples in rows.items():
        print(f"  {name:<28} {statistics.median(samples) * 1000:8.1f} ms")
    for name, samples in shares.items():
        print(f"  {name:<28} {statistics.median(samples) * 100:8.1f} % of the encoding")
    take = statistics.median(
        [
            a + b + c
            for a, b, c in zip(
                rows["loop blocked (freeze)"],
                rows["encode (disk thread)"],
                rows["save durably"],
                strict=True,
            )
        ]
    )
    install = statistics.median(
        [a + b for a, b in zip(rows["save durably"], rows["restore into a store"], strict=True)]
    )
    print(f"  {'take (total)':<22} {take * 1000:8.1f} ms")
    print(f"  {'install (total)':<22} {install * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
