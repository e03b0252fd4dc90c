"""Real processes: snapshots, log compaction and InstallSnapshot end to end (§7).

Sizes scale with RAFTKV_LONG=1 (the issue's full 50,000 / 200,000 writes); by default they
are scaled down so CI stays fast, with snapshots taken often enough to exercise the same
paths many times over."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from raftkv.client import AsyncRaftClient
from tests.process.cluster import ProcessCluster, wait_for

LONG = os.environ.get("RAFTKV_LONG") == "1"
CATCH_UP_WRITES = 50_000 if LONG else 4_000
LONG_RUN_WRITES = 200_000 if LONG else 12_000
SNAPSHOT_ENTRIES = 1_000 if LONG else 300
CONCURRENCY = 32


def write_many(cluster: ProcessCluster, count: int, keys: int, among: list[int]) -> dict[str, str]:
    """Write `count` values over `keys` keys with concurrent clients; returns what was
    acknowledged last for each key."""
    addresses = {n: ("127.0.0.1", cluster.nodes[n].client_port) for n in among}
    acknowledged: dict[str, str] = {}

    async def run() -> None:
        async with AsyncRaftClient(addresses, timeout=30) as client:
            limit = asyncio.Semaphore(CONCURRENCY)

            async def one(k: int) -> None:
                async with limit:
                    key = f"key-{k % keys}"
                    await client.put(key, f"value-{k}")
                    acknowledged[key] = f"value-{k}"

            # Each key's writes go one after another so "last acknowledged" is well defined.
            for start in range(0, count, keys):
                await asyncio.gather(*(one(k) for k in range(start, min(count, start + keys))))

    asyncio.run(run())
    return acknowledged


def data_dir_bytes(cluster: ProcessCluster, node_id: int) -> int:
    root = cluster.nodes[node_id].data_dir
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def start_cluster(cluster: ProcessCluster) -> None:
    cluster.extra_args = ["--snapshot-entries", str(SNAPSHOT_ENTRIES)]
    cluster.start_all()
    cluster.wait_leader()


def test_follower_behind_compaction_catches_up_through_install_snapshot(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)
    try:
        start_cluster(cluster)
        leader = cluster.wait_leader()
        follower = next(n for n in cluster.nodes if n != leader)
        # Killed before its first start-up finished (a loaded CI machine), it would come
        # back without the founding configuration, and is restarted without --peers.
        wait_for(
            lambda: cluster.status(follower)["leader"] == leader,
            30,
            "the follower to follow the leader",
        )
        cluster.kill(follower)
        survivors = [n for n in cluster.nodes if n != follower]
        acknowledged = write_many(cluster, CATCH_UP_WRITES, 500, survivors)
        leader = cluster.wait_leader(among=survivors)
        status = cluster.status(leader)
        assert status["log_first_index"] > 2, "the leader compacted its log"
        cluster.start(follower, bootstrap=False)
        wait_for(
            lambda: cluster.status(follower)["last_applied"] >= status["commit_index"],
            60,
            "the follower to catch up",
        )
        wait_for(
            lambda: "snapshot installed" in cluster.log_text(follower), 30, "the install logged"
        )
        check = cluster.client("check")
        assert check.returncode == 0, check.stdout + check.stderr
        for key in list(acknowledged)[:50]:
            code, body = cluster.request(follower, "GET", f"/v1/kv/{key}?consistency=stale")
            assert code == 200 and body["value"] == acknowledged[key]
    finally:
        cluster.stop_all()


def test_long_run_keeps_data_dirs_bounded(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)
    try:
        start_cluster(cluster)
        write_many(cluster, LONG_RUN_WRITES // 2, 1000, list(cluster.nodes))
        first_half = {n: data_dir_bytes(cluster, n) for n in cluster.nodes}
        write_many(cluster, LONG_RUN_WRITES // 2, 1000, list(cluster.nodes))
        # Bound: two WAL segments (16 MiB each) plus the snapshots kept; the log must not
        # keep growing with the number of writes.
        bound = 2 * (16 << 20) + 4 * (1 << 20)
        for node_id in cluster.nodes:
            size = data_dir_bytes(cluster, node_id)
            assert size < bound, f"node {node_id} data dir is {size} bytes"
            statuses = cluster.status(node_id)
            assert statuses["log_entries"] < 3 * SNAPSHOT_ENTRIES + 2000
        assert all(size > 0 for size in first_half.values())
    finally:
        cluster.stop_all()


def test_whole_cluster_killed_right_after_a_snapshot(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)
    try:
        start_cluster(cluster)
        acknowledged = write_many(cluster, SNAPSHOT_ENTRIES * 2 + 50, 100, list(cluster.nodes))
        leader = cluster.wait_leader()
        wait_for(lambda: cluster.status(leader)["snapshot_index"] > 0, 30, "a snapshot")
        highest = cluster.status(leader)["commit_index"]
        for node_id in cluster.nodes:
            cluster.kill(node_id, signal.SIGKILL)
        for node_id in cluster.nodes:
            cluster.start(node_id, bootstrap=False)
        leader = cluster.wait_leader(timeout=30)
        for key, value in acknowledged.items():
            code, body = cluster.request(leader, "GET", f"/v1/kv/{key}")
            assert code == 200 and body["value"] == value
        body = cluster.put_until_ok("after", "restart")
        assert body["index"] > highest
    finally:
        cluster.stop_all()


def test_corrupt_newest_snapshot_falls_back_and_all_corrupt_exits_4(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.extra_args = ["--snapshot-entries", "50"]
        cluster.start_all()
        write_many(cluster, 400, 40, list(cluster.nodes))
        victim = next(n for n in cluster.nodes if n != cluster.wait_leader())
        snapshots_dir = cluster.nodes[victim].data_dir / "snapshots"
        wait_for(lambda: len(list(snapshots_dir.glob("*.snap"))) >= 2, 30, "two snapshots")
        cluster.kill(victim, signal.SIGTERM)
        snapshots = sorted(snapshots_dir.glob("*.snap"))
        newest = snapshots[-1]
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))
        cluster.start(victim, bootstrap=False)
        leader = cluster.wait_leader()
        wait_for(
            lambda: (
                cluster.status(victim)["last_applied"] >= cluster.status(leader)["commit_index"]
            ),
            30,
            "the node to recover from its older snapshot",
        )
        assert newest.name in cluster.log_text(victim)
        cluster.kill(victim, signal.SIGTERM)
        for snapshot in snapshots_dir.glob("*.snap"):
            damaged = bytearray(snapshot.read_bytes())
            third = len(damaged) // 3
            damaged[third : third + 8] = bytes(b ^ 0x5A for b in damaged[third : third + 8])
            snapshot.write_bytes(bytes(damaged))
        cluster.start(victim, bootstrap=False)
        process = cluster.nodes[victim].process
        assert process is not None
        assert process.wait(timeout=60) == 4
        assert "Traceback" not in cluster.log_text(victim)
    finally:
        cluster.stop_all()
