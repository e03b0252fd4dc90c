"""A follower's sync of a batch is not waited for by its Ready loop (server/deferred_syncs.py):
the next AppendEntries is appended while it runs, and the acknowledgements leave from the
sync thread the moment the batch is durable, not after the event loop is woken to send them
(under load that wake-up waited for a CPU: docs/ARCHITECTURE.md, session 50).

Three real servers over TCP, each with its own event loop in a thread of its own, so that
one follower's loop can be held still while its sync thread finishes, and its syncs held
while its loop runs. The other follower's syncs are held meanwhile, so the leader's commit
needs exactly the first follower's acknowledgements."""

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


class Cluster:
    """Three servers, one leader elected and its first entry applied everywhere; `held` is
    a follower, `other` the other one."""

    def __init__(self, data_root: Path) -> None:
        ports = {node_id: free_port() for node_id in NODE_IDS}
        self.syncs = {node_id: HeldSyncThread(f"sync-{node_id}") for node_id in NODE_IDS}
        self.nodes: dict[int, NodeThread] = {}
        for node_id in NODE_IDS:
            server = RaftServer(
                NodeOptions(
                    node_id=node_id,
                    data_dir=str(data_root / f"node-{node_id}"),
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
                sync_executor=self.syncs[node_id],
                listen_for_clients=False,
            )
            self.nodes[node_id] = NodeThread(server)

    def start(self) -> None:
        for node in self.nodes.values():
            node.call(node.server.start())

        def leaders() -> list[RaftServer]:
            return [n.server for n in self.nodes.values() if n.server.node.role == "leader"]

        wait_for(lambda: len(leaders()) == 1, "a leader")
        self.leader = leaders()[0]
        self.wait_applied_everywhere(self.leader.node.log.last_index)
        self.held, self.other = (node_id for node_id in NODE_IDS if node_id != self.leader.id)

    def propose_batch(self, prefix: str) -> list[Future[Any]]:
        leader_node = self.nodes[self.leader.id]
        return [
            leader_node.submit(
                self.leader.requests.propose(
                    encode_command(Command(op="put", key=f"{prefix}{n}", value="v"))
                )
            )
            for n in range(BATCH)
        ]

    def wait_applied_everywhere(self, index: int) -> None:
        wait_for(
            lambda: all(n.server.applied_index >= index for n in self.nodes.values()),
            f"index {index} applied everywhere",
        )

    def close(self) -> None:
        for sync in self.syncs.values():
            sync.gate.set()
        for node in self.nodes.values():
            node.close()


def test_a_follower_whose_loop_stands_still_still_acknowledges_a_durable_batch(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path)
    release_loop = threading.Event()
    try:
        cluster.start()
        leader, syncs, held = cluster.leader, cluster.syncs, cluster.held
        syncs[cluster.other].hold()  # its acknowledgements never come while the test looks
        syncs[held].hold()
        proposals = cluster.propose_batch("k")
        assert syncs[held].job_held.wait(DEADLINE_SECONDS), "the follower's sync never came"
        assert cluster.nodes[held].hold_loop(release_loop).wait(DEADLINE_SECONDS)
        committed_before = leader.node.log.committed
        syncs[held].gate.set()  # its sync thread syncs, with its loop standing still
        wait_for(lambda: leader.node.log.committed > committed_before, "the leader's commit")
        assert not release_loop.is_set()  # (the follower's loop stood still throughout)
        held_server = cluster.nodes[held].server
        assert held_server.transport.counters().totals().frames_sent_from_thread >= 1
        release_loop.set()
        syncs[cluster.other].gate.set()
        for proposal in proposals:
            proposal.result(DEADLINE_SECONDS)
        cluster.wait_applied_everywhere(leader.node.log.last_index)
    finally:
        release_loop.set()
        cluster.close()


def test_a_follower_appends_the_next_batch_while_its_sync_runs_and_acknowledges_once_durable(
    tmp_path: Path,
) -> None:
    """Its Ready loop goes on: the second batch reaches its WAL while the first batch's
    sync is held; no acknowledgement of either leaves before its sync, so the leader (the
    other follower held too) commits neither until the sync is let go."""
    cluster = Cluster(tmp_path)
    try:
        cluster.start()
        leader, syncs, held = cluster.leader, cluster.syncs, cluster.held
        held_server = cluster.nodes[held].server
        committed_before = leader.node.log.committed
        syncs[cluster.other].hold()
        syncs[held].hold()
        first = cluster.propose_batch("first-")
        assert syncs[held].job_held.wait(DEADLINE_SECONDS), "the follower's sync never came"
        second = cluster.propose_batch("second-")
        wait_for(lambda: leader.node.log.last_index >= committed_before + 2 * BATCH, "proposed")
        last = leader.node.log.last_index
        wait_for(lambda: held_server.storage.last_index() >= last, "the second batch appended")
        assert leader.node.log.committed == committed_before  # nothing acknowledged early
        syncs[held].gate.set()
        for proposal in first + second:
            proposal.result(DEADLINE_SECONDS)
        assert leader.node.log.committed >= last
        syncs[cluster.other].gate.set()
        cluster.wait_applied_everywhere(last)
        wait_for(lambda: held_server.node.log.stable >= last, "the follower's syncs reported")
    finally:
        cluster.close()
