"""The data dir: whose it is (meta.json), one process at a time (LOCK), and its stores."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from storage_helpers import child_environment, make_entries

from raftkv.errors import Corruption, DataDirMismatch
from raftkv.storage.datadir import META_FILE_NAME, open_data_dir

# Deadline for the lock-holding child to report that it holds the lock.
CHILD_DEADLINE_SECONDS = 30.0


def test_first_open_records_the_ids(tmp_path: Path) -> None:
    with open_data_dir(tmp_path / "node-1", 1, "cluster-a") as data_dir:
        assert (data_dir.node_id, data_dir.cluster_id) == (1, "cluster-a")
    meta = json.loads((tmp_path / "node-1" / META_FILE_NAME).read_text())
    assert meta == {
        "format_version": 1,
        "node_id": 1,
        "cluster_id": "cluster-a",
        "joined_index": 0,
    }
    with open_data_dir(tmp_path / "node-1", 1, "cluster-a") as data_dir:
        assert data_dir.cluster_id == "cluster-a"


def test_another_node_id_is_refused_naming_both(tmp_path: Path) -> None:
    open_data_dir(tmp_path, 1, "cluster-a").close()
    with pytest.raises(DataDirMismatch, match="belongs to node 1, not node 2"):
        open_data_dir(tmp_path, 2, "cluster-a")


def test_another_cluster_is_refused_naming_both(tmp_path: Path) -> None:
    open_data_dir(tmp_path, 1, "cluster-a").close()
    with pytest.raises(DataDirMismatch, match="cluster 'cluster-a', not cluster 'cluster-b'"):
        open_data_dir(tmp_path, 1, "cluster-b")


def test_an_unknown_cluster_accepts_and_records_later(tmp_path: Path) -> None:
    with open_data_dir(tmp_path, 3, None) as data_dir:
        assert data_dir.cluster_id is None
        data_dir.record_cluster_id("cluster-a")
        data_dir.record_cluster_id("cluster-a")
        with pytest.raises(DataDirMismatch, match="cluster-b"):
            data_dir.record_cluster_id("cluster-b")
    with open_data_dir(tmp_path, 3, None) as data_dir:
        assert data_dir.cluster_id == "cluster-a"
    with pytest.raises(DataDirMismatch):
        open_data_dir(tmp_path, 3, "cluster-b")


def test_a_known_cluster_is_recorded_when_none_was(tmp_path: Path) -> None:
    open_data_dir(tmp_path, 3, None).close()
    open_data_dir(tmp_path, 3, "cluster-a").close()
    with open_data_dir(tmp_path, 3, None) as data_dir:
        assert data_dir.cluster_id == "cluster-a"


def test_a_second_opener_in_this_process_is_refused(tmp_path: Path) -> None:
    first = open_data_dir(tmp_path, 1, "cluster-a")
    message = f"data dir {tmp_path} is in use by another process"
    with pytest.raises(DataDirMismatch, match=re.escape(message)):
        open_data_dir(tmp_path, 1, "cluster-a")
    first.close()
    open_data_dir(tmp_path, 1, "cluster-a").close()


def test_a_second_opener_in_another_process_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from raftkv.storage.datadir import open_data_dir\n"
            "data_dir = open_data_dir(sys.argv[1], 1, 'cluster-a')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_environment(),
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(DataDirMismatch, match="in use by another process"):
            open_data_dir(tmp_path, 1, "cluster-a")
        holder.stdin.close()  # the child exits and its lock goes with it
        holder.wait(timeout=CHILD_DEADLINE_SECONDS)
        open_data_dir(tmp_path, 1, "cluster-a").close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_non_empty_directory_without_metadata_is_refused(tmp_path: Path) -> None:
    (tmp_path / "someone-elses-file").write_text("hello")
    with pytest.raises(DataDirMismatch, match=r"has no meta\.json"):
        open_data_dir(tmp_path, 1, "cluster-a")


def test_unreadable_metadata_is_corruption(tmp_path: Path) -> None:
    open_data_dir(tmp_path, 1, "cluster-a").close()
    (tmp_path / META_FILE_NAME).write_text("{not json")
    with pytest.raises(Corruption) as caught:
        open_data_dir(tmp_path, 1, "cluster-a")
    assert caught.value.path == str(tmp_path / META_FILE_NAME)


def test_the_stores_live_inside(tmp_path: Path) -> None:
    with open_data_dir(tmp_path, 1, "cluster-a") as data_dir:
        storage = data_dir.open_storage(segment_bytes_max=4096)
        storage.append(make_entries(1, 3, term=1))
        storage.sync()
        storage.close()
        assert data_dir.open_snapshots().latest() is None
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "LOCK",
        META_FILE_NAME,
        "snapshots",
        "wal",
    ]
