"""Real processes: back a cluster up (`raft-client snapshot save`), lose every node, and
restore a new cluster from the file (`raft-node restore`)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from raftkv.client import AsyncRaftClient, RaftClient
from raftkv.storage.backup_file import decode_backup, read_backup_file
from tests.process.cluster import BIN, ProcessCluster, wait_for

SNAPSHOT_ENTRIES = 20
KEYS_BEFORE = 45  # over two automatic snapshots' worth
KEYS_AFTER = 5  # then writes the last snapshot does not hold: the backup must


def library_client(cluster: ProcessCluster, order: list[int] | None = None) -> RaftClient:
    ids = order or list(cluster.nodes)
    addresses = {n: ("127.0.0.1", cluster.nodes[n].client_port) for n in ids}
    return RaftClient(addresses, timeout=30)


def restore(
    cluster: ProcessCluster, node_id: int, backup: Path
) -> subprocess.CompletedProcess[str]:
    """`raft-node restore` of one node of the new cluster, with its peers and address."""
    node = cluster.nodes[node_id]
    return subprocess.run(
        [
            str(BIN / "raft-node"),
            "restore",
            str(backup),
            "--id",
            str(node_id),
            "--peers",
            cluster.peers_argument(node_id),
            "--data-dir",
            str(node.data_dir),
            "--listen",
            f"127.0.0.1:{node.peer_port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_backup_then_restore_a_new_cluster_from_it(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = ProcessCluster(tmp_path / "old", extra_args=["--snapshot-entries", str(SNAPSHOT_ENTRIES)])
    new = ProcessCluster(tmp_path / "new")
    backup = tmp_path / "cluster.backup"
    written: dict[str, str] = {}
    try:
        old.start_all()
        leader = old.wait_leader()
        with library_client(old) as client:
            for n in range(KEYS_BEFORE):
                client.put(f"key-{n}", f"value-{n}")
                written[f"key-{n}"] = f"value-{n}"
            wait_for(lambda: old.status(leader)["snapshot_index"] > 0, 20, "a snapshot")
            for n in range(KEYS_BEFORE, KEYS_BEFORE + KEYS_AFTER):
                client.put(f"key-{n}", f"value-{n}")
                written[f"key-{n}"] = f"value-{n}"
        origin_cluster_id = old.status(leader)["cluster_id"]

        saved = old.client("snapshot", "save", str(backup))
        assert saved.returncode == 0, saved.stderr
        match = re.fullmatch(r"OK index=(\d+) term=(\d+) size=(\d+) file=\S+\n", saved.stdout)
        assert match, saved.stdout
        index = int(match.group(1))
        assert int(match.group(3)) == backup.stat().st_size
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["cluster.backup"]
        # Entries after the last automatic snapshot are in it too (the barrier, not the file).
        assert index > old.status(leader)["snapshot_index"]

        status = old.client("snapshot", "status", str(backup), "--json")
        assert status.returncode == 0, status.stderr
        described = json.loads(status.stdout)
        assert described["index"] == index
        assert described["voters"] == [1, 2, 3]
        assert described["cluster_id"] == origin_cluster_id
        assert described["state_machine"] == "kv"
        assert described["checksum_ok"] is True
        human = old.client("snapshot", "status", str(backup))
        assert f"index: {index}\n" in human.stdout
        assert "checksum: OK" in human.stdout

        # Every node lost: processes stopped, data dirs wiped.
        old.stop_all()
        for node in old.nodes.values():
            shutil.rmtree(node.data_dir)

        for node_id in new.nodes:
            restored = restore(new, node_id, backup)
            assert restored.returncode == 0, restored.stderr
            assert restored.stdout.startswith(f"OK restored index={index} ")
            meta = json.loads((new.nodes[node_id].data_dir / "meta.json").read_text())
            assert meta["cluster_id"] is None
        new.start_all()
        new.wait_leader()

        with library_client(new) as client:
            for key, value in written.items():
                assert client.get(key).value == value
            client.put("after-restore", "works")
            assert client.get("after-restore").value == "works"
        checked = new.client("check")
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith("OK n=3 ")
        cluster_ids = {new.status(node_id)["cluster_id"] for node_id in new.nodes}
        assert len(cluster_ids) == 1 and "" not in cluster_ids
        # A new cluster: never the origin's id (nodes of the two must refuse each other).
        assert origin_cluster_id not in cluster_ids
    finally:
        old.stop_all()
        new.stop_all()


def test_a_follower_redirects_the_backup_and_the_clients_follow(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    cluster.put_until_ok("x", "1")

    def redirect() -> tuple[int, int, dict[str, Any]] | None:
        """A follower's answer naming the leader (none while leadership moves: a loaded
        machine can see an election between asking who leads and asking the follower)."""
        leader = cluster.wait_leader()
        follower = next(n for n in cluster.nodes if n != leader)
        code, body = cluster.request(follower, "GET", "/v1/snapshot")
        if code == 421 and body.get("leader_id") == leader:
            return leader, follower, body
        return None

    leader, follower, body = wait_for(redirect, 30, "a follower's redirect to the leader")
    assert body["error"] == "not_leader"
    assert body["leader_url"] == f"http://127.0.0.1:{cluster.nodes[leader].client_port}"

    order = [follower, *(n for n in cluster.nodes if n != follower)]
    with library_client(cluster, order) as client:
        # Only a leader serves a backup: the client, started at a follower, followed a hint.
        backup = client.save_snapshot(tmp_path / "sync.backup")
        assert client.leader is not None
    assert read_backup_file(tmp_path / "sync.backup").header.index == backup.header.index

    async def save_async() -> bytes:
        addresses = {n: ("127.0.0.1", cluster.nodes[n].client_port) for n in order}
        buffer = io.BytesIO()
        async with AsyncRaftClient(addresses, timeout=30) as client:
            await client.save_snapshot(buffer)
        return buffer.getvalue()

    assert decode_backup(asyncio.run(save_async())).header.index >= backup.header.index

    environment_order = ",".join(f"{n}=127.0.0.1:{cluster.nodes[n].client_port}" for n in order)
    saved = subprocess.run(
        [str(BIN / "raft-client"), "--cluster", environment_order, "snapshot", "save", "cli.bk"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert saved.returncode == 0, saved.stderr
    assert read_backup_file(tmp_path / "cli.bk").header.index >= backup.header.index


def test_a_25_megabyte_state_is_backed_up(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, node_ids=(1,))
    value = "v" * (1_000_000 - 100)
    try:
        cluster.start(1, "--single-node", bootstrap=False)
        cluster.wait_leader()
        with library_client(cluster) as client:
            for n in range(26):
                client.put(f"big-{n}", value)
        saved = cluster.client("snapshot", "save", str(tmp_path / "big.backup"), "--timeout", "60")
        assert saved.returncode == 0, saved.stderr
        backup = read_backup_file(tmp_path / "big.backup")
        assert backup.header.payload_bytes > 25_000_000
        assert cluster.status(1)["role"] == "leader"  # the node kept serving meanwhile
    finally:
        cluster.stop_all()
