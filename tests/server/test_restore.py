"""Seeding a new cluster's data dir from a backup (server/restore.py, `raft-node restore`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftkv.cli import node as node_cli
from raftkv.core import Membership, SnapshotMeta
from raftkv.core.messages import HardState
from raftkv.embed.machine import ObjectStateMachine
from raftkv.kv import Command, KVStore, encode_command
from raftkv.server.restore import RestoreRefused, restore_data_dir
from raftkv.storage import open_data_dir
from raftkv.storage.backup_file import Backup, decode_backup, encode_backup
from raftkv.storage.recovery import recover

ORIGIN = Membership(voters=frozenset({7, 8, 9}), addresses={7: "old:7", 8: "old:8", 9: "old:9"})
NEW_PEERS = {1: ("127.0.0.1", 9101), 2: ("127.0.0.1", 9102), 3: ("127.0.0.1", 9103)}


def kv_backup(index: int = 30, term: int = 4) -> Backup:
    store = KVStore()
    for position in range(1, index + 1):
        store.apply(position, encode_command(Command(op="put", key=f"k{position}", value="v")))
    meta = SnapshotMeta(index, term, ORIGIN)
    return decode_backup(encode_backup("raftkv-origin", meta, "kv", store.snapshot()))


def test_restore_then_recovery_gives_the_snapshot_with_the_new_membership(tmp_path: Path) -> None:
    data_dir = tmp_path / "node-2"
    restore_data_dir(kv_backup(), data_dir, 2, NEW_PEERS, state_machine=KVStore())
    with open_data_dir(data_dir, 2) as opened:
        assert opened.cluster_id is None  # never the origin's: taken at the first start
        wal = opened.open_storage()
        try:
            recovered = recover(wal, wal, opened.open_snapshots())
        finally:
            wal.close()
    assert recovered.snapshot is not None
    meta, payload = recovered.snapshot
    assert (meta.index, meta.term) == (30, 4)
    assert meta.membership.voters == frozenset({1, 2, 3})
    assert meta.membership.addresses == {n: f"127.0.0.1:{9100 + n}" for n in (1, 2, 3)}
    assert recovered.entries == []
    assert recovered.hard_state == HardState(term=4, voted_for=None, commit=30)
    assert recovered.applied_index == 30
    assert recovered.warnings == []
    restored = KVStore()
    restored.restore(payload)
    assert restored.data["k30"] == "v"
    peers = json.loads((data_dir / "peers.json").read_text())
    assert peers == {"1": "127.0.0.1:9101", "2": "127.0.0.1:9102", "3": "127.0.0.1:9103"}
    assert not (tmp_path / "node-2.restoring").exists()


def test_a_given_cluster_id_is_recorded(tmp_path: Path) -> None:
    data_dir = tmp_path / "node-1"
    restore_data_dir(
        kv_backup(), data_dir, 1, NEW_PEERS, state_machine=KVStore(), cluster_id="fresh"
    )
    with open_data_dir(data_dir, 1) as opened:
        assert opened.cluster_id == "fresh"


def test_an_empty_existing_directory_is_used(tmp_path: Path) -> None:
    data_dir = tmp_path / "node-1"
    data_dir.mkdir()
    restore_data_dir(kv_backup(), data_dir, 1, NEW_PEERS, state_machine=KVStore())
    assert (data_dir / "wal").is_dir()


def test_a_data_dir_holding_state_is_refused_and_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "node-1"
    data_dir.mkdir()
    (data_dir / "meta.json").write_text("{}")
    with pytest.raises(RestoreRefused, match="already holds state"):
        restore_data_dir(kv_backup(), data_dir, 1, NEW_PEERS, state_machine=KVStore())
    assert sorted(p.name for p in data_dir.iterdir()) == ["meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-1"]


def test_a_backup_of_another_state_machine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RestoreRefused, match="'kv' state machine; this node runs 'objects'"):
        restore_data_dir(
            kv_backup(), tmp_path / "n", 1, NEW_PEERS, state_machine=ObjectStateMachine({})
        )
    assert not (tmp_path / "n").exists()


def test_a_node_id_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RestoreRefused, match="positive integer"):
        restore_data_dir(kv_backup(), tmp_path / "n", 0, {0: ("h", 1)}, state_machine=KVStore())


# --- the command line ----------------------------------------------------------------------
def write_backup(tmp_path: Path) -> Path:
    path = tmp_path / "backup.bin"
    backup = kv_backup()
    meta = SnapshotMeta(backup.header.index, backup.header.term, ORIGIN)
    path.write_bytes(encode_backup("raftkv-origin", meta, "kv", backup.payload))
    return path


def test_raft_node_restore_seeds_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_backup(tmp_path)
    data_dir = tmp_path / "node-3"
    code = node_cli.main(
        ["restore", str(path), "--id", "3", "--peers", "1,2", "--data-dir", str(data_dir)]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("OK restored index=30 term=4 node=3 voters=1,2,3")
    meta = json.loads((data_dir / "meta.json").read_text())
    assert (meta["node_id"], meta["cluster_id"]) == (3, None)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--id", "0"], "positive integers"),
        (["--id", "x"], "positive integers"),
        (["--id", "1", "--peers", "2=nowhere"], "--peers"),
    ],
)
def test_raft_node_restore_refuses_bad_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    path = write_backup(tmp_path)
    data_dir = tmp_path / "node"
    code = node_cli.main(["restore", str(path), "--data-dir", str(data_dir), *arguments])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not data_dir.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing"])
def test_raft_node_restore_refuses_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path = write_backup(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x80]))
    else:
        path.unlink()
    data_dir = tmp_path / "node"
    code = node_cli.main(["restore", str(path), "--id", "1", "--data-dir", str(data_dir)])
    assert code == 1
    assert "raft-node restore: refused:" in capsys.readouterr().err
    assert not data_dir.exists()


def test_raft_node_restore_refuses_a_used_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_backup(tmp_path)
    data_dir = tmp_path / "node-1"
    arguments = ["restore", str(path), "--id", "1", "--data-dir", str(data_dir)]
    assert node_cli.main(arguments) == 0
    assert node_cli.main(arguments) == 1
    assert "already holds state" in capsys.readouterr().err
