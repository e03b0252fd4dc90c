"""A follower's acknowledgement of a batch leaves from its sync thread the moment the batch
is durable (`RaftServer._sync_then_send`), not after its event loop is woken to send it:
under load that wake-up waited for a CPU (docs/ARCHITECTURE.md, session 50).

Three real servers over TCP, each with its own event loop in a thread of its own, so that
one follower's loop can be held still while its sync thread finishes: the leader must
still hear that follower's acknowledgement and commit. The other follower's syncs are held
meanwhile, so the commit needs exactly the held follower's acknowledgement."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from raftkv.kv import Command, encode_command
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.server.sync_thread import SyncThread
from tests.process.cluster import free_port

T = TypeVar("T")
NODE_IDS = (1, 2, 3)
HOST = "127.0.0.1"
DEADLINE_SECONDS = 30.0
BATCH = 20


class HeldSyncThread(SyncThread):
    """A sync thread whose jobs can be held before they run (`hold`), and that says when
    one is held (`job_held`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = threading.Event()
        self.gate.set()
        self.job_held = threading.Event()

    def hold(self) -> None:
        self.gate.clear()

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        def held_job() -> T:
            if not self.gate.is_set():
                self.job_held.set()
                assert self.gate.wait(DEADLINE_SECONDS), "a held sync was never let go"
            return job()

        return super().run(held_job)


class NodeThread:
    """One server on its own event loop (uvloop, as raft-node runs) in a thread."""

    def __init__(self, server: RaftServer) -> None:
        self.server = server
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(DEADLINE_SECONDS)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def hold_loop(self, release: threading.Event) -> threading.Event:
        """Keep the loop's thread busy until `release` is set; returns an event set once
        the loop is held."""
        held = threading.Event()

        def stand_still() -> None:
            held.set()
            release.wait(DEADLINE_SECONDS)

        self.loop.call_soon_threadsafe(stand_still)
        return held

    def close(self) -> None:
        if self.thread.is_alive():
            self.call(self.server.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(DEADLINE_SECONDS)
        self.loop.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """From the test's thread: poll state the node threads change, with a deadline."""
    done = threading.Event()
    for _ in range(int(DEADLINE_SECONDS / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out after {DEADLINE_SECONDS} s waiting for {what}")


def test_a_follower_whose_loop_stands_still_still_acknowledges_a_durable_batch(
    tmp_path: Path,
) -> None:
    ports = {node_id: free_port() for node_id in NODE_IDS}
    syncs = {node_id: HeldSyncThread(f"sync-{node_id}") for node_id in NODE_IDS}
    nodes: dict[int, NodeThread] = {}
    release_loop = threading.Event()
    try:
        for node_id in NODE_IDS:
            server = RaftServer(
                NodeOptions(
                    node_id=node_id,
                    data_dir=str(tmp_path / f"node-{node_id}"),
                    listen=(HOST, ports[node_id]),
                    client_listen=(HOST, 0),
                    peers={peer: (HOST, ports[peer]) for peer in NODE_IDS if peer != node_id},
                    seed=node_id,
                    # Every Ready with entries is synced in the thread, a lone one too.
                    sync_thread_min_entries=1,
                    # Held still for a moment, no follower may start an election, nor
                    # the leader step down for want of answers (check quorum).
                    election_timeout_ms=(1000, 2000),
                ),
                sync_executor=syncs[node_id],
                listen_for_clients=False,
            )
            nodes[node_id] = NodeThread(server)
        for node in nodes.values():
            node.call(node.server.start())

        def leaders() -> list[RaftServer]:
            return [n.server for n in nodes.values() if n.server.node.role == "leader"]

        wait_for(lambda: len(leaders()) == 1, "a leader")
        leader = leaders()[0]
        first = leader.node.log.last_index
        wait_for(lambda: all(n.server.applied_index >= first for n in nodes.values()), "ready")
        held, other = (node_id for node_id in NODE_IDS if node_id != leader.id)
        syncs[other].hold()  # its acknowledgements never come while the test looks
        syncs[held].hold()

        leader_node = nodes[leader.id]
        proposals = [
            leader_node.submit(
                leader.requests.propose(encode_command(Command(op="put", key=f"k{n}", value="v")))
            )
            for n in range(BATCH)
        ]
        assert syncs[held].job_held.wait(DEADLINE_SECONDS), "the follower's sync never came"
        assert nodes[held].hold_loop(release_loop).wait(DEADLINE_SECONDS)
        committed_before = leader.node.log.committed
        syncs[held].gate.set()  # its sync thread syncs, with its loop standing still
        wait_for(lambda: leader.node.log.committed > committed_before, "the leader's commit")
        assert not release_loop.is_set()  # (the follower's loop stood still throughout)
        sent = nodes[held].server.transport.counters().totals().frames_sent_from_thread
        assert sent >= 1
        release_loop.set()
        syncs[other].gate.set()
        for proposal in proposals:
            proposal.result(DEADLINE_SECONDS)
        last = leader.node.log.last_index
        wait_for(lambda: all(n.server.applied_index >= last for n in nodes.values()), "applied")
    finally:
        release_loop.set()
        for sync in syncs.values():
            sync.gate.set()
        for node in nodes.values():
            node.close()
