"""The dashboard page's script (`GET /ui`) in the QuickJS engine against a stand-in DOM
(tests/server/dashboard_smoke.js), fed snapshots the real gathering made: the stable hooks
a browser test will use (`#leader`, `.node[data-id]` with `data-role`, `data-term`,
`data-status`, `#timeline`, `#throughput`, `#latency`, `window.dashboard`) show them, and a
dropped stream is said plainly and retried."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import quickjs

from raftkv.server.dashboard import Dashboard
from raftkv.server.http_api import _dashboard_page

PAGE_SCRIPT_SECONDS_MAX = 60


class Cluster:
    """Three nodes as node 1 sees them: itself leading at term `term`, node 2 answering,
    node 3 down (its link not connected)."""

    def __init__(self, term: int, writes: int) -> None:
        self.id = 1
        self.term = term
        self.writes = writes

    def report(self, node_id: int, role: str) -> dict[str, Any]:
        return {
            "id": node_id,
            "role": role,
            "term": self.term,
            "leader": 1,
            "commit_index": 6,
            "last_applied": 6,
            "last_log_index": 7,
            "log_tail": [[index, 1 if index < 4 else self.term] for index in range(1, 8)],
            "progress": (
                [
                    {
                        "id": 2,
                        "match": 7,
                        "next": 8,
                        "state": "replicate",
                        "active": True,
                        "lag": 0,
                    },
                    {"id": 3, "match": 3, "next": 4, "state": "probe", "active": False, "lag": 4},
                ]
                if role == "leader"
                else []
            ),
            "timeline": [
                {
                    "time": 1000.0 + node_id,
                    "kind": "role",
                    "role": role,
                    "term": self.term,
                    "leader": 1,
                },
                {
                    "time": 1010.0,
                    "kind": "membership",
                    "index": 1,
                    "members": [1, 2, 3],
                    "learners": [],
                },
            ],
            "counters": {
                "proposals": self.writes,
                "writes": self.writes,
                "write_seconds": self.writes * 0.002,
            },
        }

    def dashboard_report_dict(self) -> dict[str, Any]:
        return self.report(1, "leader")

    def dashboard_peers(self) -> list[int]:
        return [2, 3]

    def peer_connected(self, peer: int) -> bool:
        return peer == 2

    async def ask(self, peer: int, timeout_seconds: float) -> dict[str, Any]:
        return self.report(peer, "follower")


def recorded_snapshots() -> list[dict[str, Any]]:
    async def record() -> list[dict[str, Any]]:
        cluster = Cluster(term=2, writes=0)
        dashboard = Dashboard(cluster, cluster.ask)
        snapshots = []
        for writes in (0, 100, 250):
            cluster.writes = writes
            snapshots.append(await dashboard.gather())
        return snapshots

    return asyncio.run(record())


def run_page_script(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    context = quickjs.Context()
    context.set_time_limit(PAGE_SCRIPT_SECONDS_MAX)
    context.set("page", _dashboard_page().decode())
    context.set("snapshots", json.dumps(snapshots))
    smoke = Path(__file__).with_name("dashboard_smoke.js").read_text(encoding="utf-8")
    outcome: dict[str, Any] = json.loads(context.eval(smoke))
    return outcome


def test_the_page_shows_each_snapshot_and_says_when_the_stream_drops() -> None:
    snapshots = recorded_snapshots()
    outcome = run_page_script(snapshots)
    assert outcome["url"] == "/v1/ui/events?token=reader-token"
    assert outcome["before"]["connected"] is False and outcome["before"]["nodes"] == []

    last = outcome["after"][-1]
    assert last["connected"] is True and last["snapshotLeader"] == 1
    assert last["leader"].startswith("node1")
    nodes = {node["id"]: node for node in last["nodes"]}
    assert set(nodes) == {"1", "2", "3"}
    assert all(node["className"] == "node" for node in nodes.values())
    assert (nodes["1"]["role"], nodes["1"]["term"], nodes["1"]["status"]) == ("leader", "2", "up")
    assert (nodes["2"]["role"], nodes["2"]["status"]) == ("follower", "up")
    assert (nodes["3"]["role"], nodes["3"]["status"]) == ("down", "down")
    assert "DOWN" in nodes["3"]["text"]
    assert last["logCells"] == [7, 7, 1]  # node 3: no entries, and the word "down"
    assert last["progressRows"] == 2
    assert any("became leader in term 2" in line for line in last["timeline"])
    assert any("membership" in line for line in last["timeline"])
    assert last["throughputPaths"] == 1 and last["latencyPaths"] == 1
    assert "writes/s" in last["throughputNow"]

    dropped = outcome["dropped"]
    assert dropped["connected"] is False and "lost the connection" in dropped["connection"]
    assert dropped["nodes"] == last["nodes"]  # the last state stays in view
    assert outcome["retries"] == 1 and outcome["reconnected"] == 2


def test_the_rates_come_from_the_leaders_counters() -> None:
    snapshots = recorded_snapshots()
    rates = snapshots[-1]["rates"]
    assert len(rates) == 2  # the first gathering has nothing to compare with
    assert all(rate["writes_per_second"] > 0 for rate in rates)
    assert all(abs(rate["latency_ms"] - 2.0) < 1e-6 for rate in rates)
