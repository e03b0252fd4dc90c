"""Real processes: the dashboard's event stream read with a plain HTTP client shows the three
nodes and the leader; after the leader is killed (SIGKILL) it shows it down and a new leader
within a few seconds."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from typing import Any

from tests.process.cluster import ProcessCluster

SEEN_WITHIN_SECONDS = 8.0


class EventStream:
    """`GET /v1/ui/events` on one node, read line by line."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.connection.request("GET", "/v1/ui/events")
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type") == "text/event-stream"

    def next_snapshot(self) -> dict[str, Any]:
        while True:
            line = self.response.readline()
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                snapshot = json.loads(line[len(b"data: ") :])
                assert isinstance(snapshot, dict)
                return snapshot

    def until(self, wanted: Any, seconds: float, what: str) -> dict[str, Any]:
        """The first snapshot for which `wanted(snapshot)` holds, within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            snapshot = self.next_snapshot()
            if wanted(snapshot):
                return snapshot
        raise AssertionError(f"no snapshot showed {what} within {seconds} s")

    def close(self) -> None:
        self.connection.close()


def by_id(snapshot: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {node["id"]: node for node in snapshot["nodes"]}


def test_the_event_stream_shows_the_leader_killed_and_a_new_one(cluster: ProcessCluster) -> None:
    old_leader = cluster.wait_leader()
    cluster.put_until_ok("k", "v")
    watcher = next(node_id for node_id in cluster.nodes if node_id != old_leader)
    code, page = cluster.request(watcher, "GET", "/ui")
    assert code == 200 and "window.dashboard" in page and "https://" not in page

    stream = EventStream(cluster.nodes[watcher].client_port)
    try:
        snapshot = stream.until(
            lambda s: (
                s["leader"] == old_leader and all(node["status"] == "up" for node in s["nodes"])
            ),
            SEEN_WITHIN_SECONDS,
            "three nodes up and the leader",
        )
        assert sorted(by_id(snapshot)) == sorted(cluster.nodes)
        assert snapshot["served_by"] == watcher
        assert len(snapshot["progress"]) == 2

        process = cluster.nodes[old_leader].process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        killed_at = time.monotonic()
        snapshot = stream.until(
            lambda s: (
                by_id(s)[old_leader]["status"] == "down" and s["leader"] not in (None, old_leader)
            ),
            SEEN_WITHIN_SECONDS,
            "the old leader down and a new leader",
        )
        assert time.monotonic() - killed_at < SEEN_WITHIN_SECONDS
        roles = [e for e in snapshot["timeline"] if e["kind"] == "role" and e["role"] == "leader"]
        assert roles and roles[-1]["node"] == snapshot["leader"]
    finally:
        stream.close()
