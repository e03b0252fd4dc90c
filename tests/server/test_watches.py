"""Watches on one node (server/watches.py, watch_history.py; SPEC §6, "Watches"): the hub
fed by a real store's change observer, its streams read directly. What a watcher is sent
(range, exclusive `from_index`, order, `prev_value`, whole indexes per piece, progress), the
bounded history (410 `compacted`, a snapshot restored under a watcher) and the bounds on
watchers (their number, a client that does not read)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from raftkv.kv import Command, KVStore, encode_command
from raftkv.kv.ranges import KeyRange
from raftkv.kv.txn import Txn, TxnOp
from raftkv.server.watch_history import HistoryLimits
from raftkv.server.watches import (
    Compacted,
    TooManyWatchers,
    WatchHub,
    WatchHubClosed,
    WatchLimits,
    WatchStream,
)

QUIET = WatchLimits(flush_seconds=0.0, progress_seconds=1000.0)


class Node:
    """A store whose changes feed a hub, applied one command per index."""

    def __init__(self, limits: WatchLimits = QUIET) -> None:
        self.hub = WatchHub(limits)
        self.store = KVStore(observer=self.hub)
        self.index = 0

    def apply(self, command: Command) -> int:
        self.index += 1
        self.store.apply(self.index, encode_command(command))
        self.hub.applied_through(self.index)
        return self.index

    def put(self, key: str, value: str) -> int:
        return self.apply(Command(op="put", key=key, value=value))

    def delete(self, key: str) -> int:
        return self.apply(Command(op="del", key=key))

    def txn_puts(self, *keys: str) -> int:
        ops = [TxnOp(op="put", key=key, value=key.upper()) for key in keys]
        return self.apply(Command(op="txn", key="", txn=Txn(success=ops)))


def lines(piece: bytes) -> list[dict[str, Any]]:
    assert piece.endswith(b"\n")
    return [json.loads(line) for line in piece.splitlines()]


async def next_lines(stream: WatchStream) -> list[dict[str, Any]]:
    return lines(await asyncio.wait_for(stream.__anext__(), 5.0))


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def test_a_watcher_gets_its_ranges_changes_after_from_index_in_order() -> None:
    async def body() -> None:
        node = Node()
        node.put("a/1", "x")  # 1
        node.put("b", "y")  # 2
        node.put("a/2", "z")  # 3
        node.delete("a/1")  # 4
        node.txn_puts("a/3", "c", "a/4")  # 5
        stream = node.hub.open(KeyRange.prefix("a/"), 1)
        assert await next_lines(stream) == [
            {"type": "put", "key": "a/2", "value": "z", "mod_index": 3, "create_index": 3,
             "version": 1},
            {"type": "delete", "key": "a/1", "mod_index": 4},
            {"type": "put", "key": "a/3", "value": "A/3", "mod_index": 5, "create_index": 5,
             "version": 1},
            {"type": "put", "key": "a/4", "value": "A/4", "mod_index": 5, "create_index": 5,
             "version": 1},
            {"type": "progress", "index": 5},
        ]  # fmt: skip
        node.put("a/2", "w")  # 6: live, version 2
        node.put("b", "v")  # 7: not in the range
        assert await next_lines(stream) == [
            {"type": "put", "key": "a/2", "value": "w", "mod_index": 6, "create_index": 3,
             "version": 2},
        ]  # fmt: skip
        await stream.aclose()
        assert node.hub.watchers == 0

    run(body)


def test_key_and_range_watchers_and_prev_values() -> None:
    async def body() -> None:
        node = Node()
        key_only = node.hub.open(KeyRange("k", "k\x00"), None, prev=True)
        between = node.hub.open(KeyRange("b", "d"), None)
        assert await next_lines(key_only) == [{"type": "progress", "index": 0}]
        assert await next_lines(between) == [{"type": "progress", "index": 0}]
        node.put("k", "1")
        node.put("kk", "2")
        node.put("c", "3")
        node.put("k", "4")
        node.delete("k")
        assert await next_lines(key_only) == [
            {"type": "put", "key": "k", "value": "1", "mod_index": 1, "create_index": 1,
             "version": 1},
            {"type": "put", "key": "k", "value": "4", "mod_index": 4, "create_index": 1,
             "version": 2, "prev_value": "1"},
            {"type": "delete", "key": "k", "mod_index": 5, "prev_value": "4"},
        ]  # fmt: skip
        assert [line["key"] for line in await next_lines(between)] == ["c"]

    run(body)


def test_a_future_from_index_waits_for_it() -> None:
    async def body() -> None:
        node = Node()
        node.put("a", "1")
        stream = node.hub.open(KeyRange(), 3)
        assert await next_lines(stream) == [{"type": "progress", "index": 1}]
        node.put("a", "2")  # 2
        node.put("a", "3")  # 3: not after 3
        node.put("b", "4")  # 4
        assert [line["mod_index"] for line in await next_lines(stream)] == [4]

    run(body)


def test_all_changes_of_one_index_go_in_one_piece() -> None:
    async def body() -> None:
        node = Node(WatchLimits(flush_seconds=0.0, progress_seconds=1000.0, piece_bytes=1))
        node.txn_puts("a", "b", "c")  # 1
        node.txn_puts("d", "e")  # 2
        stream = node.hub.open(KeyRange(), 0)
        assert [line["key"] for line in await next_lines(stream)] == ["a", "b", "c"]
        assert [line.get("key") for line in await next_lines(stream)] == ["d", "e", None]

    run(body)


def test_progress_lines_come_about_every_progress_period_when_caught_up() -> None:
    async def body() -> None:
        node = Node(WatchLimits(flush_seconds=0.0, progress_seconds=0.05))
        stream = node.hub.open(KeyRange.prefix("a"), None)
        assert await next_lines(stream) == [{"type": "progress", "index": 0}]
        node.put("b", "1")  # outside the range: only the progress says it was passed
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await next_lines(stream) == [{"type": "progress", "index": 1}]
        assert loop.time() - started >= 0.04

    run(body)


def test_an_index_the_history_no_longer_holds_is_compacted() -> None:
    async def body() -> None:
        limits = WatchLimits(history=HistoryLimits(events_max=10), flush_seconds=0.0)
        node = Node(limits)
        for number in range(12):
            node.txn_puts(f"a{number}", f"b{number}")  # two changes per index
        oldest = node.hub.history.oldest_index
        assert 0 < oldest < 12
        with pytest.raises(Compacted) as refused:
            node.hub.open(KeyRange(), oldest - 1)
        assert refused.value.oldest_index == oldest
        stream = node.hub.open(KeyRange(), oldest)  # every change after it is held
        events = await next_lines(stream)
        assert [line.get("mod_index") for line in events][:-1] == [
            index for index in range(oldest + 1, 13) for _ in range(2)
        ]

    run(body)


def test_a_watcher_left_behind_by_trimming_gets_an_error_line_and_the_end() -> None:
    async def body() -> None:
        limits = WatchLimits(
            history=HistoryLimits(events_max=10), flush_seconds=0.0, progress_seconds=1000.0
        )
        node = Node(limits)
        stream = node.hub.open(KeyRange(), None)
        for number in range(20):  # applied in one go: the stream has not read since
            node.put(f"k{number}", "v")
        assert await next_lines(stream) == [
            {"type": "error", "error": "compacted", "oldest_index": node.hub.history.oldest_index}
        ]
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert node.hub.watchers == 0 and node.hub.cut_offs["compacted"] == 1

    run(body)


def test_a_snapshot_restored_under_watchers_cuts_them_off_and_restarts_the_history() -> None:
    async def body() -> None:
        node = Node()
        node.put("a", "1")
        node.put("b", "2")
        other = KVStore()
        for index in range(1, 8):
            other.apply(index, encode_command(Command(op="put", key="z", value=str(index))))
        stream = node.hub.open(KeyRange(), 0)
        node.store.restore(other.snapshot())  # a follower installing the leader's snapshot
        assert await next_lines(stream) == [
            {"type": "error", "error": "compacted", "oldest_index": 7}
        ]
        with pytest.raises(Compacted):
            node.hub.open(KeyRange(), 6)
        after = node.hub.open(KeyRange(), 7)
        node.store.apply(8, encode_command(Command(op="put", key="y", value="8")))
        node.hub.applied_through(8)
        assert [line.get("key") for line in await next_lines(after)] == ["y", None]

    run(body)


class Unread:
    """A connection whose client reads nothing: everything written stays unsent."""

    def unsent_bytes(self) -> int:
        return 1 << 30


def test_a_watcher_whose_client_does_not_read_is_cut_off_and_apply_goes_on() -> None:
    async def body() -> None:
        limits = WatchLimits(flush_seconds=0.0, progress_seconds=1000.0, buffer_bytes_max=4000)
        node = Node(limits)
        stream = node.hub.open(KeyRange(), None, output=Unread())  # type: ignore[arg-type]
        reader = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        for number in range(100):  # never waits for the watcher
            node.put(f"k{number}", "v" * 100)
        error = lines(await asyncio.wait_for(reader, 5.0))
        assert error[0]["type"] == "error" and error[0]["error"] == "slow_watcher"
        assert node.hub.watchers == 0 and node.hub.cut_offs["slow_watcher"] == 1
        assert node.store.get("k99") == "v" * 100

    run(body)


def test_watchers_are_limited_per_node() -> None:
    async def body() -> None:
        node = Node(WatchLimits(watchers_max=2))
        first = node.hub.open(KeyRange(), None)
        node.hub.open(KeyRange(), None)
        with pytest.raises(TooManyWatchers):
            node.hub.open(KeyRange(), None)
        await first.aclose()  # a place freed, even never iterated
        node.hub.open(KeyRange(), None)
        assert node.hub.watchers == 2

    run(body)


def test_closing_the_hub_ends_every_stream() -> None:
    async def body() -> None:
        node = Node()
        stream = node.hub.open(KeyRange(), None)
        await next_lines(stream)
        reader = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        node.hub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(reader, 5.0)
        assert node.hub.watchers == 0
        # A watch request read while the node stops opens nothing: a stream opened after
        # the close would never be ended, its progress lines holding its client there.
        with pytest.raises(WatchHubClosed):
            node.hub.open(KeyRange(), None)
        assert node.hub.watchers == 0

    run(body)


def test_an_observer_the_store_had_is_still_told_everything() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.seen: list[object] = []

        def changed(self, change: object) -> None:
            self.seen.append(change)

        def restored(self, index: int) -> None:
            self.seen.append(index)

    recorder = Recorder()
    hub = WatchHub(QUIET, next_observer=recorder)
    store = KVStore(observer=hub)
    store.apply(1, encode_command(Command(op="put", key="a", value="1")))
    store.restore(store.snapshot())
    assert [getattr(item, "key", item) for item in recorder.seen] == ["a", 1]
    assert hub.history.held[0] == 0 and hub.history.oldest_index == 1


def test_streams_are_woken_in_the_order_they_were_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    # A set of streams woke them in memory-address order, which differs between processes:
    # the whole-node simulator's seeds with watchers did not replay byte for byte.
    woken: list[WatchStream] = []
    monkeypatch.setattr(WatchStream, "wake", lambda stream: woken.append(stream))

    async def body() -> None:
        node = Node()
        opened = [node.hub.open(KeyRange(), 0) for _ in range(64)]
        node.put("k", "v")
        await asyncio.sleep(0)  # the flush the write scheduled
        assert woken == opened
        woken.clear()
        node.hub.close()  # each stream ended, in the same order
        assert woken == opened
        woken.clear()
        node.put("k", "w")
        await asyncio.sleep(0)
        assert woken == []

    run(body)
