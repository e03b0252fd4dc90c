"""The snapshot's key map walked in C without the GIL (kv/snapshot_native.c): the same bytes
msgspec writes, None for anything it would not write the same way, and the GIL let go of
while it walks a frozen view."""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv import snapshot_format
from raftkv.kv.commands import Command, encode_command
from raftkv.kv.key_map import KeyMap
from raftkv.kv.records import KeyRecord
from raftkv.kv.store import KVStore

pytestmark = pytest.mark.compiled

native: ModuleType | None
try:  # deselected where it is not built (conftest.py), but collected
    native = importlib.import_module("raftkv.kv.snapshot_native")
except ImportError:
    native = None


def msgspec_body(*shards: dict[str, KeyRecord | str]) -> bytes:
    """What msgspec writes for each dict, its map header cut off, one after the other."""
    parts = []
    for shard in shards:
        encoded = msgspec.msgpack.encode(shard)
        header = snapshot_format._header(len(shard), snapshot_format._MAP_HEADERS)
        assert encoded.startswith(header)
        parts.append(encoded[len(header) :])
    return b"".join(parts)


def test_it_is_built_with_the_compiled_modules() -> None:
    """A compiled install without it would encode with msgspec, the loop waiting for the
    GIL all along, and nothing else would say so."""
    assert native is not None


# Every MessagePack form a str or an unsigned int takes, and characters of 1 to 4 bytes.
TEXTS = ["", "a", "é", "€", "𝄞", "a" * 31, "a" * 32, "é" * 16, "a" * 255, "a" * 256]
TEXTS += ["€" * 21_845, "a" * 65_535, "a" * 65_536, "𝄞ab" * 30_000]
INTEGERS = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**30 - 1, 2**30, 2**32 - 1, 2**32]
INTEGERS += [2**60, 2**63 - 1, 2**63, 2**64 - 1]


def test_every_form_of_a_str_and_an_int_is_msgspec_s() -> None:
    assert native is not None
    shard: dict[str, KeyRecord | str] = {}
    for n, text in enumerate(TEXTS):
        shard[text] = KeyRecord(text, INTEGERS[n], INTEGERS[-n - 1], n, INTEGERS[n // 2])
    for n, number in enumerate(INTEGERS):
        shard[f"int-{n}"] = KeyRecord("v", number, number, number, number)
    shard["old-format"] = "a value alone, as snapshots before revisions kept it"
    for release_gil in (True, False):
        for size_hint in (0, 1, 10**7):  # grown from too small a start, or cut to its size
            assert native.encode_shards([shard], release_gil, size_hint) == msgspec_body(shard)


record = st.builds(
    KeyRecord,
    st.text(),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(), record | st.text(), max_size=20), max_size=4))
def test_any_shards_encode_as_msgspec_encodes_them(
    shards: list[dict[str, KeyRecord | str]],
) -> None:
    """(st.text() draws no lone surrogate: msgspec refuses those, below.)"""
    assert native is not None
    assert native.encode_shards(list(shards), True) == msgspec_body(*shards)


class Text(str):
    pass


class Record(KeyRecord):
    pass


class Shard(dict[str, KeyRecord]):
    pass


def test_a_builder_writes_its_parts_in_order_and_hands_over_the_bytes() -> None:
    assert native is not None
    shard = {f"k{n}": KeyRecord("v" * n, n, n, 1) for n in range(100)}
    body = msgspec_body(shard)
    # No room, room for a part of it (the walk goes on elsewhere and is copied in), room.
    for capacity in (0, 10, len(body) // 2, len(body) + 20, 10 * len(body)):
        builder = native.Builder(capacity)
        builder.append(b"head")
        assert builder.walk([shard], True)
        assert not builder.walk([{"a": KeyRecord("v", -1, 1, 1)}], True)  # refused: nothing
        builder.append(memoryview(b"--tail"))
        assert builder.length == len(body) + 10
        assert builder.finish() == b"head" + body + b"--tail"
        with pytest.raises(ValueError, match="finished"):
            builder.append(b"more")
        with pytest.raises(ValueError, match="finished"):
            builder.finish()


def _walk_into(builder: Any, shards: Any, progress: bytearray, walked: list[bool]) -> None:
    walked.append(builder.walk(shards, True, progress))


def test_a_builder_refuses_a_second_caller_while_it_walks() -> None:
    """The walk writes into the builder without the GIL: another thread's append or finish
    meanwhile would move or hand over the bytes under it, so they are refused."""
    assert native is not None
    shards = frozen_shards(200_000)
    # A walk may end before this thread, descheduled on a busy machine, looks at it: then
    # another walk, a few at most (each leaves a builder whose bytes are checked).
    for _attempt in range(5):
        builder = native.Builder(0)
        progress = bytearray(8)
        walked: list[bool] = []
        walker = threading.Thread(target=_walk_into, args=(builder, shards, progress, walked))
        refused = False
        walker.start()
        while walker.is_alive():
            # Early in the walk: most of it is still ahead when the calls come.
            if 0 < int.from_bytes(progress, "little") < len(shards) // 4:
                with pytest.raises(RuntimeError, match="in use"):
                    builder.append(b"x")
                with pytest.raises(RuntimeError, match="in use"):
                    builder.finish()
                refused = True
                break
        walker.join()
        assert walked == [True]
        assert builder.finish() == msgspec_body(*shards)
        if refused:
            return
    pytest.fail("no walk was seen in its first quarter in five tries")


def test_a_snapshot_is_written_in_place_not_assembled_from_copies() -> None:
    """Every copy of a large snapshot is fresh memory the kernel zeroes on first touch (the
    1 MB row's system time: docs/ARCHITECTURE.md, session 42). Encoding one of 64 MB touches
    about as many new pages as the snapshot has; the walk's own buffer, copied into a bytes
    object and then joined with the other parts, took three times as many."""
    store = KVStore()
    value = "x" * (1 << 20)
    for n in range(64):
        store.apply(n + 1, encode_command(Command(op="put", key=f"k{n}", value=value)))
    encode = store.prepare_snapshot()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    data = encode()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    pages = len(data) // resource.getpagesize()
    assert faults <= pages * 1.5, f"{faults} page faults for a snapshot of {pages} pages"


@pytest.mark.parametrize(
    "shard",
    [
        {"a": KeyRecord("\ud800", 1, 1, 1)},  # a lone surrogate: msgspec raises
        {"\udfff": KeyRecord("v", 1, 1, 1)},
        {"a": KeyRecord("v", -1, 1, 1)},  # negative: msgspec's signed forms
        {"a": KeyRecord("v", 1, 2**64, 1)},  # past 64 bits: msgspec raises
        {"a": KeyRecord("v", 1, 1, True)},  # a bool is an int, written as true
        {Text("a"): KeyRecord("v", 1, 1, 1)},
        {"a": KeyRecord(Text("v"), 1, 1, 1)},
        {"a": Record("v", 1, 1, 1)},
        {"a": 1},
        Shard(a=KeyRecord("v", 1, 1, 1)),
    ],
    ids=repr,
)
def test_what_it_would_not_write_as_msgspec_does_is_refused(shard: dict) -> None:  # type: ignore[type-arg]
    assert native is not None
    assert native.encode_shards([{"before": KeyRecord("v", 1, 1, 1)}, shard], True) is None


def test_a_refused_group_is_encoded_by_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bytes either way: a shard the walk refuses sends its group to msgspec."""
    monkeypatch.setattr(snapshot_format, "NATIVE_GROUP_RECORDS", 10)
    keys = KeyMap((f"k{n}", KeyRecord(f"v{n}", n, n, 1)) for n in range(2000))
    keys.set("negative", KeyRecord("v", 1, 1, 1, lease=-5))
    keys.set("boolean", KeyRecord("v", 1, 1, True))
    state = snapshot_format.Snapshot(keys.freeze(), 9, b"h")
    expected = msgspec.msgpack.encode(
        msgspec.structs.replace(state, data=dict(keys.view().items()))
    )
    assert snapshot_format.encode(state) == expected


def test_a_frozen_view_is_walked_in_groups_and_let_go_of(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, bool]] = []
    idle: list[float] = []
    capacities: list[int] = []
    real = snapshot_format.native_builder
    assert real is not None

    class Recording:
        def __init__(self, capacity: int) -> None:
            capacities.append(capacity)
            self._builder = real(capacity)
            self.append = self._builder.append
            self.finish = self._builder.finish

        def walk(
            self,
            shards: list[dict[str, KeyRecord]],
            release_gil: bool,
            progress: bytearray | None,
            idle_seconds: float,
        ) -> bool:
            calls.append((sum(map(len, shards)), release_gil))
            idle.append(idle_seconds)
            return self._builder.walk(shards, release_gil, progress, idle_seconds)

    monkeypatch.setattr(snapshot_format, "native_builder", Recording)
    monkeypatch.setattr(snapshot_format, "NATIVE_GROUP_RECORDS", 1000)
    store = KVStore()
    for n in range(20_000):
        store.apply(n + 1, encode_command(Command(op="put", key=f"k{n}", value=f"v{n}")))
    expected = msgspec.msgpack.encode(
        msgspec.structs.replace(
            store._state(store._records.view()), data=dict(store._records.items())
        )
    )
    assert store.prepare_snapshot()() == expected
    # One bytes object for the whole snapshot, reserved big enough up front.
    assert len(capacities) == 1 and capacities[0] >= len(expected)
    assert sum(keys for keys, _ in calls) == 20_000
    assert 15 <= len(calls) <= 21  # groups of 1,000 keys and a shard more at most
    assert all(release_gil for _, release_gil in calls)  # a frozen view
    # At idle priority, each group for what is left of the encoding's time.
    assert 0 < idle[-1] <= idle[0] <= snapshot_format.IDLE_SECONDS
    calls.clear()
    idle.clear()
    assert store.snapshot() == expected  # a view encoded on the spot: the GIL kept
    assert calls and not any(release_gil for _, release_gil in calls)
    assert set(idle) == {0.0}  # and no other thread to wait for


def frozen_shards(keys: int) -> list[dict[str, KeyRecord]]:
    key_map = KeyMap((f"key-{n}", KeyRecord("0123456789abcdef", n, n, 1)) for n in range(keys))
    return [shard for shard, _ in key_map.freeze().shard_maps()]


def idle_threads() -> set[int]:
    """This process's threads scheduled SCHED_IDLE now."""
    found = set()
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if os.sched_getscheduler(int(task)) == os.SCHED_IDLE:
                found.add(int(task))
    return found


def test_given_idle_seconds_the_walk_runs_in_a_thread_of_idle_priority() -> None:
    """Seen from outside while it walks: a thread of this process at SCHED_IDLE, gone once
    the walk is over; the bytes the same."""
    assert native is not None
    shards = frozen_shards(200_000)
    progress = bytearray(8)
    results: list[bytes | None] = []
    walker = threading.Thread(
        target=lambda: results.append(native.encode_shards(shards, True, 0, progress, 60.0))
    )
    seen_idle = False
    moved = native.walks_moved()
    assert not idle_threads()
    walker.start()
    while walker.is_alive():
        walked = int.from_bytes(progress, "little")
        if 0 < walked < len(shards) and idle_threads():
            seen_idle = True
    walker.join()
    assert seen_idle
    assert not idle_threads()
    assert results == [msgspec_body(*shards)]
    assert native.walks_moved() == moved


def test_a_walk_that_finds_no_idle_cpu_is_done_again_by_its_caller() -> None:
    """The caller and, by inheritance, its idle thread share one CPU with a busy process of
    ordinary priority: the idle thread hardly runs, and after `idle_seconds` the caller walks
    the shards itself, at its own priority; the idle thread stops and is joined."""
    assert native is not None
    cpu = min(os.sched_getaffinity(0))
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time\n"
            f"os.sched_setaffinity(0, {{{cpu}}})\n"
            "print('busy', flush=True)\n"
            "end = time.monotonic() + 60\n"  # ends by itself should the kill below not come
            "while time.monotonic() < end: pass\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    shards = frozen_shards(200_000)
    moved = native.walks_moved()
    results: list[bytes | None] = []

    def walk_on_the_busy_cpu() -> None:
        os.sched_setaffinity(0, {cpu})  # this thread only
        # Room for it all: the idle thread writes in place while the caller walks again
        # elsewhere, and the caller's bytes are the ones copied in.
        results.append(native.encode_shards(shards, True, 64 * 200_000, None, 0.3))

    try:
        assert busy.stdout is not None and busy.stdout.readline() == "busy\n"
        walker = threading.Thread(target=walk_on_the_busy_cpu)
        walker.start()
        walker.join(timeout=60)
        assert not walker.is_alive()
    finally:
        busy.kill()
        busy.wait()
    assert results == [msgspec_body(*shards)]
    assert native.walks_moved() == moved + 1
    assert not idle_threads()


@pytest.mark.parametrize("release_gil", [True, False])
def test_the_walk_of_a_frozen_view_lets_other_threads_run(release_gil: bool) -> None:
    """While the walk of a frozen view is under way, another thread runs Python: here the
    main thread sees it part of the way through (`progress`, the shards walked so far, which
    the walk writes without the GIL). Held through the call, the GIL would let the main
    thread look only before the walk starts or after it ends."""
    assert native is not None
    keys = KeyMap((f"key-{n}", KeyRecord("0123456789abcdef", n, n, 1)) for n in range(200_000))
    shards = [shard for shard, _ in keys.freeze().shard_maps()]
    progress = bytearray(8)
    finished = threading.Event()

    def walk() -> None:
        native.encode_shards(shards, release_gil, 0, progress)
        finished.set()

    walker = threading.Thread(target=walk)
    walker.start()
    seen = set()
    while not finished.is_set():
        seen.add(int.from_bytes(progress, "little"))
    walker.join()
    assert int.from_bytes(progress, "little") == len(shards)
    part_way = {walked for walked in seen if 0 < walked < len(shards)}
    if release_gil:
        # Several looks, however loaded the machine: held, the GIL would allow none.
        assert len(part_way) >= 3
    else:
        assert not part_way
