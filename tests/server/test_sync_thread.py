"""The Ready loop syncs a batch of entries in the node's sync thread (the loop goes on while
the disk works) and a single entry on the loop (`sync_thread_min_entries`, raft-node's
`--sync-thread-min-entries`). Three real servers: WAL files in their data dirs, the
in-memory transport."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from raftkv.kv import Command, KVStore, encode_command
from raftkv.server.options import (
    SYNC_THREAD_MIN_BYTES,
    SYNC_THREAD_MIN_ENTRIES_DEFAULT,
    NodeOptions,
)
from raftkv.server.runtime import RaftServer
from raftkv.storage.file_log import FileStorage
from raftkv.transport.memory import MemoryHub, MemoryTransport
from tests.waiting import wait_until

T = TypeVar("T")
NODE_IDS = (1, 2, 3)
HOST = "127.0.0.1"
BATCH = 40


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


def put(key: str, value: str = "v") -> bytes:
    return encode_command(Command(op="put", key=key, value=value))


def run_cluster(
    data_root: Path,
    smallest: int,
    body: Callable[..., Any],
    executor_factory: Callable[[int], CountingExecutor] = lambda _node_id: CountingExecutor(),
    state_machine_factory: Callable[[], KVStore] = KVStore,
    **options: Any,
) -> None:
    async def main() -> None:
        hub = MemoryHub()
        executors = {node_id: executor_factory(node_id) for node_id in NODE_IDS}
        servers = {
            node_id: RaftServer(
                NodeOptions(
                    node_id=node_id,
                    data_dir=str(data_root / f"node-{node_id}"),
                    listen=(HOST, 9000 + node_id),
                    client_listen=(HOST, 8000 + node_id),
                    peers={peer: (HOST, 9000 + peer) for peer in NODE_IDS if peer != node_id},
                    seed=node_id,
                    sync_thread_min_entries=smallest,
                    **options,
                ),
                state_machine_factory(),
                transport_factory=functools.partial(MemoryTransport, hub),
                sync_executor=executors[node_id],
                listen_for_clients=False,
            )
            for node_id in NODE_IDS
        }
        try:
            for server in servers.values():
                await server.start()
            await body(servers, executors)
        finally:
            for server in servers.values():
                await server.stop()

    asyncio.run(main())


async def leader_of(servers: dict[int, RaftServer]) -> RaftServer:
    def one_leader() -> bool:
        return sum(server.node.role == "leader" for server in servers.values()) == 1

    await wait_until(one_leader, "a leader")
    return next(server for server in servers.values() if server.node.role == "leader")


def test_a_batch_is_synced_in_the_sync_thread_and_a_lone_entry_on_the_loop(
    tmp_path: Path,
) -> None:
    async def body(servers: dict[int, RaftServer], executors: dict[int, CountingExecutor]) -> None:
        leader = await leader_of(servers)
        # Its first entry (the new term's empty one) applied: else it may share a Ready with
        # the first proposal below, two entries, synced in the thread (seen on a loaded CI).
        await wait_until(
            lambda: leader.applied_index >= leader.node.log.last_index, "the term's first entry"
        )
        before = executors[leader.id].jobs
        for number in range(3):  # one at a time: every Ready holds one entry
            await leader.requests.propose(put(f"alone-{number}"))
        assert executors[leader.id].jobs == before
        proposals = [leader.requests.propose(put(f"batch-{n}")) for n in range(BATCH)]
        indexes = [index for _, index in await asyncio.gather(*proposals)]
        assert executors[leader.id].jobs > before  # the batch's sync went to the thread
        last = max(indexes)
        await wait_until(
            lambda: all(server.applied_index >= last for server in servers.values()),
            "every node applied the batch",
        )
        for server in servers.values():
            assert isinstance(server.state_machine, KVStore)
            assert all(server.state_machine.get(f"batch-{n}") for n in range(BATCH))
            assert server.storage.entries(last, last + 1)[0].index == last

    run_cluster(tmp_path, SYNC_THREAD_MIN_ENTRIES_DEFAULT, body)


def test_a_lone_large_entry_is_synced_in_the_sync_thread(tmp_path: Path) -> None:
    """Writing and syncing a large value takes milliseconds (100 ms and more while the disk
    writes a snapshot's file), which the loop would stand still for: one entry of
    `SYNC_THREAD_MIN_BYTES` goes to the thread, on the leader and on the followers."""

    async def body(servers: dict[int, RaftServer], executors: dict[int, CountingExecutor]) -> None:
        leader = await leader_of(servers)
        await wait_until(
            lambda: leader.applied_index >= leader.node.log.last_index, "the term's first entry"
        )
        # Half the limit: still synced on the loop.
        small = "s" * (SYNC_THREAD_MIN_BYTES // 2)
        before = {node_id: executor.jobs for node_id, executor in executors.items()}
        await leader.requests.propose(put("small", small))
        assert {node_id: executor.jobs for node_id, executor in executors.items()} == before
        large = "l" * SYNC_THREAD_MIN_BYTES
        _, index = await leader.requests.propose(put("large", large))
        await wait_until(
            lambda: all(server.applied_index >= index for server in servers.values()),
            "every node applied the large value",
        )
        for node_id, executor in executors.items():
            assert executor.jobs > before[node_id], f"node {node_id} synced it on its loop"
            state = servers[node_id].state_machine
            assert isinstance(state, KVStore) and state.get("large") is not None

    run_cluster(tmp_path, SYNC_THREAD_MIN_ENTRIES_DEFAULT, body)


def test_zero_keeps_every_sync_on_the_loop(tmp_path: Path) -> None:
    async def body(servers: dict[int, RaftServer], executors: dict[int, CountingExecutor]) -> None:
        leader = await leader_of(servers)
        proposals = [leader.requests.propose(put(f"batch-{n}")) for n in range(BATCH)]
        await asyncio.gather(*proposals)
        await leader.requests.propose(put("large", "l" * SYNC_THREAD_MIN_BYTES))
        assert all(executor.jobs == 0 for executor in executors.values())

    run_cluster(tmp_path, 0, body)


def test_segments_deleted_from_a_sync_in_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that finds obsolete segments hands their deletion to the disk thread. From
    the sync thread there is no running loop to hand it through: the first version asked
    for one and stopped the node at its first deletion (1 MB writes filled segments fast)."""
    deleted_in: list[str] = []
    original = FileStorage._unlink_segments

    def unlink_segments(self: FileStorage, paths: list[str]) -> None:
        deleted_in.append(threading.current_thread().name)
        original(self, paths)

    monkeypatch.setattr(FileStorage, "_unlink_segments", unlink_segments)

    async def body(servers: dict[int, RaftServer], executors: dict[int, CountingExecutor]) -> None:
        leader = await leader_of(servers)
        for round_number in range(12):
            keys = [f"r{round_number}-{n}" for n in range(BATCH)]
            await asyncio.gather(*(leader.requests.propose(put(key)) for key in keys))
        await wait_until(lambda: len(deleted_in) > 0, "obsolete segments deleted")
        assert all(name.startswith("disk-") for name in deleted_in), deleted_in
        assert executors[leader.id].jobs > 0
        assert all(server.storage_failure is None for server in servers.values())

    run_cluster(
        tmp_path,
        SYNC_THREAD_MIN_ENTRIES_DEFAULT,
        body,
        wal_segment_bytes=4096,
        snapshot_entries=50,
        snapshot_trailing_entries=10,
    )


class GatedExecutor(CountingExecutor):
    """Its jobs wait for `gate` before they run: a sync held up in the thread."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        def gated() -> T:
            self.gate.wait()
            return fn(*args, **kwargs)

        return super().submit(gated)


def test_a_leaders_lone_entry_joins_its_sync_under_way_in_the_thread(tmp_path: Path) -> None:
    """While a leader's sync is under way in the sync thread, a Ready of one entry is left
    to that thread too: synced on the loop, it waited for the thread's sync to end and then
    synced again, the loop stopped all along. Its entries still commit meanwhile, on the
    followers' disks."""
    executors: dict[int, GatedExecutor] = {}

    async def body(servers: dict[int, RaftServer], _executors: object) -> None:
        leader = await leader_of(servers)
        await wait_until(
            lambda: leader.applied_index >= leader.node.log.last_index, "the term's first entry"
        )
        syncing_threads: list[str] = []
        storage = leader.storage
        assert isinstance(storage, FileStorage)

        def record_thread() -> None:  # called by each sync, in its thread, as it returns
            syncing_threads.append(threading.current_thread().name)

        storage.on_synced = record_thread
        executor = executors[leader.id]
        executor.gate.clear()
        try:
            batch = asyncio.gather(
                *(leader.requests.propose(put(f"batch-{n}")) for n in range(BATCH))
            )
            assert leader.durability.deferred_syncs is not None
            await wait_until(
                lambda: leader.durability.deferred_syncs.busy, "the batch's sync under way"
            )
            for number in range(3):  # one at a time: every Ready holds one entry
                await leader.requests.propose(put(f"alone-{number}"))
            loop_thread = threading.current_thread().name
            assert loop_thread not in syncing_threads, syncing_threads
        finally:
            executor.gate.set()  # else stopping the servers waits for the held job forever
        await batch
        await wait_until(
            lambda: not leader.durability.deferred_syncs.busy, "the leader's syncs done"
        )
        assert syncing_threads and loop_thread not in syncing_threads, syncing_threads
        assert leader.node.log.stable == leader.node.log.last_index

    def gated_executor(node_id: int) -> GatedExecutor:
        executors[node_id] = GatedExecutor()
        return executors[node_id]

    run_cluster(tmp_path, SYNC_THREAD_MIN_ENTRIES_DEFAULT, body, executor_factory=gated_executor)
