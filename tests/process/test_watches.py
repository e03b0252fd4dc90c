"""Watches on real processes (SPEC §6, "Watches"): while writes of unique values flow, the
leader is SIGKILLed and later restarted. A `raft-client watch` pinned to a follower, the async
client's iterator (which starts on the leader and so must resume elsewhere), and a watch of
the restarted node from index 0 each see every acknowledged write exactly once, in log order,
and the same sequence. A node restarted from a snapshot answers 410 for an index before it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
from typing import Any

from raftkv.check.watches import ObservedEvent, WatchObservation, check_watch
from raftkv.client import AsyncRaftClient, RaftClient
from raftkv.kv.changes import KeyChange
from raftkv.kv.ranges import KeyRange
from raftkv.kv.records import KeyRecord
from tests.process.cluster import BIN, ProcessCluster, wait_for

WRITES = 60


class CliWatch:
    """`raft-client watch ...` in a process of its own, its lines collected by a thread."""

    def __init__(self, cluster: ProcessCluster, *arguments: str) -> None:
        command = [str(BIN / "raft-client"), "--cluster", cluster.cluster_argument(), "watch"]
        self.process = subprocess.Popen(
            [*command, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: its exit code (0: how a watch ends) and what it said on stderr."""
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=30)
        self._reader.join(timeout=30)
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


class LibraryWatch:
    """`AsyncRaftClient.watch` on its own event loop in a thread, until told to stop."""

    def __init__(self, nodes: dict[int, tuple[str, int]]) -> None:
        self.nodes = nodes
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        try:
            async with AsyncRaftClient(self.nodes, timeout=30) as client:
                async for event in client.watch(prefix="w/", from_index=0):
                    self.events.append({"key": event.key, "mod_index": event.mod_index,
                                        "value": event.value, "type": event.type})  # fmt: skip
                    if self._stop.is_set():
                        return
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def stop(self) -> None:
        self._stop.set()


def observed(events: list[dict[str, Any]]) -> list[ObservedEvent]:
    return [ObservedEvent.of_line(event) for event in events]


def test_watchers_see_each_acknowledged_write_once_in_order_across_a_leader_kill_and_restart(
    cluster: ProcessCluster,
) -> None:
    leader = cluster.wait_leader()
    follower = next(node for node in cluster.nodes if node != leader)
    pinned = CliWatch(cluster, "w/", "--from-index", "0", "--target", str(follower))
    # The library's map starts at the leader: its first stream is the one the kill breaks.
    order = [leader, *(node for node in cluster.nodes if node != leader)]
    library = LibraryWatch({node: ("127.0.0.1", cluster.nodes[node].client_port) for node in order})
    restarted: CliWatch | None = None
    acknowledged: list[KeyChange] = []
    try:
        wait_for(lambda: cluster.status(follower)["last_applied"] > 0, 20, "the follower")
        addresses = {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}
        with RaftClient(addresses, timeout=30) as writer:
            for number in range(WRITES):
                if number == WRITES // 3:
                    wait_for(lambda n=number: len(library.events) >= n, 30, "the library events")
                    cluster.kill(leader)
                if number == 2 * WRITES // 3:
                    cluster.start(leader, bootstrap=False)
                    restarted = CliWatch(cluster, "--target", str(leader), "--from-index", "0",
                                         "--start", "w/", "--end", "w0")  # fmt: skip
                key, value = f"w/{number:03}", f"value-{number}"
                index = writer.put(key, value).index
                acknowledged.append(KeyChange(index, key, KeyRecord(value, index, index, 1), None))
                writer.put("other", str(number))  # not watched
        assert restarted is not None
        watchers = {"pinned": pinned, "library": library, "restarted": restarted}
        for name, watcher in watchers.items():
            wait_for(lambda w=watcher: len(w.events) >= WRITES, 60, f"every event at {name}")
        library.stop()
        assert library.error is None, library.error
        for watcher in (pinned, restarted):
            code, err = watcher.interrupt()
            assert code == 0, err
        last = acknowledged[-1].index
        for name, watcher in watchers.items():
            verdict = check_watch(
                acknowledged,
                WatchObservation(name, KeyRange.prefix("w/"), 0, observed(watcher.events), last),
            )
            assert verdict.ok, verdict.message
        # Watchers of different nodes saw the same sequence (here: all of it).
        assert pinned.events == restarted.events
        assert [(e["key"], e["mod_index"]) for e in library.events] == [
            (e["key"], e["mod_index"]) for e in pinned.events
        ]
    finally:
        library.stop()
        pinned.kill()
        if restarted is not None:
            restarted.kill()


def test_a_node_restarted_from_a_snapshot_answers_410_before_it_and_clients_go_elsewhere(
    cluster: ProcessCluster,
) -> None:
    leader = cluster.wait_leader()
    follower = next(node for node in cluster.nodes if node != leader)
    cluster.put_until_ok("first", "1")
    # Killed only once it holds the cluster's log: restarted without --peers, a node that
    # never made its start durable would be a stranger to it.
    wait_for(lambda: cluster.status(follower)["last_applied"] > 0, 20, "the follower")
    cluster.kill(follower)
    cluster.extra_args = ["--snapshot-entries", "10"]
    for number in range(40):
        cluster.put_until_ok(f"k{number:02}", str(number))
    cluster.start(follower, bootstrap=False)  # catches up by a snapshot, then restarts on it
    wait_for(lambda: cluster.status(follower)["snapshot_index"] > 1, 30, "a snapshot")
    cluster.kill(follower)
    cluster.start(follower, bootstrap=False)
    # Its history starts at the snapshot it loaded (it may have taken newer ones since).
    loaded = wait_for(lambda: cluster.status(follower)["snapshot_index"], 30, "restart")
    code, body = cluster.request(follower, "GET", "/v1/watch?from_index=1")
    assert code == 410, body
    assert body["error"] == "compacted" and 1 < body["oldest_index"] <= loaded
    refused = cluster.client("--target", str(follower), "watch", "--from-index", "1")
    assert refused.returncode == 6, refused.stderr
    assert json.loads(refused.stderr)["error"] == "compacted"
    # Without a target the client goes on to a node that still holds those changes.
    order = [follower, *(node for node in cluster.nodes if node != follower)]
    nodes = {node: ("127.0.0.1", cluster.nodes[node].client_port) for node in order}

    async def first_events() -> list[str]:
        keys = []
        async with AsyncRaftClient(nodes, timeout=30) as client:
            async for event in client.watch(prefix="k", from_index=1):
                keys.append(event.key)
                if len(keys) == 40:
                    return keys
        raise AssertionError("a watch has no end")

    assert asyncio.run(first_events()) == [f"k{number:02}" for number in range(40)]
