"""Real processes: a damaged newest snapshot (storage/recovery.py, rule 2).

If the WAL still holds every entry after the older snapshot, the node starts from the older
one. If the WAL was compacted past it, raft-node refuses to start with exit code 4 and names
the damaged file, instead of resetting its WAL to the older snapshot and coming back without
entries it acknowledged (the defect: last = commit = 100 after 300 acknowledged). The node is
then rebuilt from its peers as docs/operations.md ("A damaged snapshot") describes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import signal
import subprocess
from pathlib import Path

from raftkv.client import AsyncRaftClient
from raftkv.core.membership import Membership
from raftkv.core.messages import Entry, HardState
from raftkv.core.ready import SnapshotMeta
from raftkv.kv.commands import Command, encode_command
from raftkv.kv.store import KVStore
from raftkv.server.options import new_cluster_id
from raftkv.storage import open_data_dir
from raftkv.storage.file_log import FileStorage
from raftkv.storage.snapshot_files import snapshot_file_name
from tests.process.cluster import BIN, ProcessCluster, free_port, wait_for

STARTUP_SECONDS = 20


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def prepare_data_dir(root: Path, compact_through: int) -> Path:
    """Node 1 of cluster {1, 2, 3}: 300 committed puts in term 2, snapshots at 100 and 250
    (the newest damaged), the WAL compacted through `compact_through`."""
    path = root / "node-1"
    data_dir = open_data_dir(path, 1, new_cluster_id())
    storage = data_dir.open_storage()
    snapshots = data_dir.open_snapshots()
    membership = Membership(voters=frozenset({1, 2, 3}))
    kv = KVStore()
    entries = []
    for index in range(1, 301):
        command = encode_command(Command(op="put", key=f"k{index % 7}", value=f"v{index}"))
        entries.append(Entry(2, index, 0, command))
        kv.apply(index, command)
        if index in (100, 250):
            snapshots.save(SnapshotMeta(index, 2, membership), kv.snapshot())
    storage.append(entries)
    storage.set_hard_state(HardState(2, 1, 300))
    storage.compact(compact_through, 2)
    storage.sync()
    storage.close()
    data_dir.close()
    damage(path / "snapshots" / snapshot_file_name(250, 2))
    return path


def start_node(data_dir: Path, client_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(BIN / "raft-node"),
            "--id",
            "1",
            "--peers",
            f"2=127.0.0.1:{free_port()},3=127.0.0.1:{free_port()}",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--client-listen",
            f"127.0.0.1:{client_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def node_status(client_port: int) -> dict[str, int]:
    connection = http.client.HTTPConnection("127.0.0.1", client_port, timeout=5)
    try:
        connection.request("GET", "/v1/status")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def test_a_damaged_snapshot_the_wal_no_longer_covers_refuses_to_start_with_exit_4(
    tmp_path: Path,
) -> None:
    data_dir = prepare_data_dir(tmp_path, compact_through=150)
    client_port = free_port()
    process = start_node(data_dir, client_port)
    try:
        try:
            output, _ = process.communicate(timeout=STARTUP_SECONDS)
        except subprocess.TimeoutExpired:
            status = wait_for(lambda: node_status(client_port), 10, "the node's status")
            raise AssertionError(
                "the node started instead of refusing: last_log_index="
                f"{status['last_log_index']} commit_index={status['commit_index']} "
                "(300 were committed)"
            ) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 4, output
    assert "corrupt" in output.lower() and snapshot_file_name(250, 2) in output
    assert "entries 101..150" in output
    assert "Traceback" not in output
    # Nothing was reset: the WAL still holds every entry it held.
    storage = FileStorage(data_dir / "wal")
    try:
        assert (storage.first_index(), storage.last_index()) == (151, 300)
        assert storage.hard_state().commit == 300
    finally:
        storage.close()


def test_a_damaged_snapshot_the_wal_still_covers_is_passed_over(tmp_path: Path) -> None:
    data_dir = prepare_data_dir(tmp_path, compact_through=100)
    client_port = free_port()

    def applied_everything() -> dict[str, int] | None:
        status = node_status(client_port)
        return status if status["last_applied"] == 300 else None

    process = start_node(data_dir, client_port)
    try:
        status = wait_for(
            applied_everything,
            STARTUP_SECONDS,
            "the node to start from the older snapshot and apply everything",
        )
        assert status["last_log_index"] == 300 and status["snapshot_index"] == 100
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "snapshot 250/2 is damaged" in output and snapshot_file_name(250, 2) in output


# --- the same end to end, and the documented way back ----------------------------------------
SNAPSHOT_ENTRIES = 1_100  # more than the 1,000 entries kept behind a snapshot
WRITES = 2_500


def write_many(cluster: ProcessCluster, count: int) -> None:
    addresses = {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}

    async def run() -> None:
        async with AsyncRaftClient(addresses, timeout=30) as client:
            for start in range(0, count, 50):
                await asyncio.gather(
                    *(client.put(f"key-{k % 50}", f"value-{k}") for k in range(start, start + 50))
                )

    asyncio.run(run())


def test_raft_node_exits_4_naming_the_damaged_snapshot_and_is_rebuilt_from_its_peers(
    tmp_path: Path,
) -> None:
    cluster = ProcessCluster(tmp_path, extra_args=["--snapshot-entries", str(SNAPSHOT_ENTRIES)])
    try:
        cluster.start_all()
        cluster.wait_leader()
        write_many(cluster, WRITES)
        victim = next(n for n in cluster.nodes if n != cluster.wait_leader())
        node = cluster.nodes[victim]

        def compacted_past_the_older_snapshot() -> bool:
            names = sorted((node.data_dir / "snapshots").glob("*.snap"))
            older_index = int(names[0].name.split("-")[1])
            first_index = cluster.status(victim)["log_first_index"]
            return len(names) == 2 and first_index > older_index + 1

        wait_for(compacted_past_the_older_snapshot, 30, "two snapshots and the log compacted")
        cluster.kill(victim, signal.SIGTERM)
        newest, older = sorted((node.data_dir / "snapshots").glob("*.snap"), reverse=True)
        older_index = int(older.name.split("-")[1])
        storage = FileStorage(node.data_dir / "wal")
        try:
            assert storage.first_index() > older_index + 1, "the WAL still covers the older one"
        finally:
            storage.close()
        damage(newest)

        cluster.start(victim, bootstrap=False)
        process = node.process
        assert process is not None
        assert process.wait(timeout=STARTUP_SECONDS) == 4
        log = cluster.log_text(victim)
        assert "corrupt" in log.lower() and newest.name in log and "Traceback" not in log

        # docs/operations.md, "A damaged snapshot": set the data dir aside, join a new
        # member, remove the damaged one.
        shutil.move(node.data_dir, tmp_path / f"node-{victim}.damaged")
        replacement = max(cluster.nodes) + 1
        cluster.add_node(replacement)
        leader = cluster.wait_leader()
        cluster.start(replacement, "--join", f"127.0.0.1:{cluster.nodes[leader].client_port}")
        wait_for(
            lambda: replacement in cluster.status(cluster.wait_leader())["voters"],
            60,
            "the new node to be a voter",
        )
        removed = cluster.client("members", "remove", str(victim))
        assert removed.returncode == 0, removed.stderr
        members = [n for n in cluster.nodes if n != victim]
        wait_for(
            lambda: sorted(cluster.status(cluster.wait_leader(among=members))["voters"]) == members,
            30,
            "the damaged node's removal",
        )
        commit = cluster.status(cluster.wait_leader(among=members))["commit_index"]
        wait_for(lambda: cluster.status(replacement)["last_applied"] >= commit, 60, "the new node")
        check = cluster.client("--cluster", cluster.cluster_argument_among(members), "check")
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        cluster.stop_all()
