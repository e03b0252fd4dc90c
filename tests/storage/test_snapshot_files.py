"""FileSnapshotStore: atomic saves, the newest N kept, damaged files reported (never passed
over: whether an older snapshot may stand in is recovery's decision, test_recovery.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from storage_helpers import snapshot_meta

from raftkv.core.membership import Membership
from raftkv.core.ready import SnapshotMeta
from raftkv.errors import Corruption, StorageError
from raftkv.storage import snapshot_files as snapshot_files_module
from raftkv.storage.filesystem import Bytes, OsFileSystem
from raftkv.storage.snapshot_files import FileSnapshotStore, snapshot_file_name


def snapshot_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def damage(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_save_and_read_back_with_membership(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    meta = SnapshotMeta(
        42,
        7,
        Membership(
            voters=frozenset({1, 2}),
            voters_outgoing=frozenset({1, 3}),
            learners=frozenset({4}),
            addresses={1: "127.0.0.1:9001", 4: "10.0.0.4:9004"},
        ),
    )
    data = os.urandom(300_000)
    store.save(meta, data)
    assert FileSnapshotStore(tmp_path).latest() == (meta, data)
    assert snapshot_files(tmp_path) == [snapshot_file_name(42, 7)]


def test_only_the_newest_are_kept(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path, keep=2)
    for index in (10, 30, 20, 40):
        store.save(snapshot_meta(index, 1), f"state {index}".encode())
    assert snapshot_files(tmp_path) == [snapshot_file_name(30, 1), snapshot_file_name(40, 1)]
    assert store.latest() == (snapshot_meta(40, 1), b"state 40")


def test_a_damaged_newest_is_corruption_not_an_older_one(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path, keep=3)
    for index in (10, 20, 30):
        store.save(snapshot_meta(index, 1), b"state %d" % index)
    newest = tmp_path / snapshot_file_name(30, 1)
    damage(newest, newest.stat().st_size - 1)
    with pytest.raises(Corruption, match="damaged snapshot") as caught:
        store.latest()
    assert caught.value.path == str(newest)
    refs = store.stored()
    assert [(ref.index, ref.term, ref.location) for ref in refs] == [
        (index, 1, str(tmp_path / snapshot_file_name(index, 1))) for index in (30, 20, 10)
    ]
    assert store.load(refs[1]) == (snapshot_meta(20, 1), b"state 20")


@pytest.mark.parametrize("how", ["data", "header", "truncated", "empty"])
def test_every_kind_of_damage_is_noticed(tmp_path: Path, how: str) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(snapshot_meta(10, 1), b"older")
    store.save(snapshot_meta(20, 1), b"newer")
    newest = tmp_path / snapshot_file_name(20, 1)
    if how == "data":
        damage(newest, newest.stat().st_size - 2)
    elif how == "header":
        damage(newest, 13)
    elif how == "truncated":
        os.truncate(newest, newest.stat().st_size - 1)
    else:
        os.truncate(newest, 0)
    newest_ref, older_ref = store.stored()
    with pytest.raises(Corruption) as caught:
        store.load(newest_ref)
    assert caught.value.path == str(newest) and caught.value.offset is not None
    assert store.load(older_ref) == (snapshot_meta(10, 1), b"older")


def test_every_damaged_file_is_corruption_with_its_path(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(snapshot_meta(10, 1), b"older")
    store.save(snapshot_meta(20, 1), b"newer")
    for name in snapshot_files(tmp_path):
        damage(tmp_path / name, 40)
    for ref in store.stored():
        with pytest.raises(Corruption, match="checksum mismatch") as caught:
            store.load(ref)
        assert caught.value.path == ref.location
        assert caught.value.offset is not None


def test_a_renamed_file_does_not_pass_for_another_snapshot(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(snapshot_meta(10, 1), b"state")
    os.rename(tmp_path / snapshot_file_name(10, 1), tmp_path / snapshot_file_name(99, 1))
    with pytest.raises(Corruption, match="does not match the name"):
        store.latest()


def test_a_failed_save_leaves_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(snapshot_meta(10, 1), b"older")

    def disk_full(source: str, destination: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", disk_full)
        with pytest.raises(StorageError, match="disk full"):
            store.save(snapshot_meta(20, 1), b"newer")
    assert snapshot_files(tmp_path) == [snapshot_file_name(10, 1)]
    assert store.latest() == (snapshot_meta(10, 1), b"older")


def test_an_unfinished_save_is_cleaned_up_on_open(tmp_path: Path) -> None:
    FileSnapshotStore(tmp_path).save(snapshot_meta(10, 1), b"older")
    (tmp_path / (snapshot_file_name(20, 1) + ".tmp")).write_bytes(b"half a snap")
    store = FileSnapshotStore(tmp_path)
    assert snapshot_files(tmp_path) == [snapshot_file_name(10, 1)]
    assert store.latest() == (snapshot_meta(10, 1), b"older")


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileSnapshotStore(tmp_path, keep=0)


class SyncCountingFileSystem(OsFileSystem):
    """The real file system, noting each write's size and each sync in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, descriptor: int, data: Bytes) -> int:
        self.calls.append(f"write {len(data)}")
        return super().write(descriptor, data)

    def fdatasync(self, descriptor: int) -> None:
        self.calls.append("fdatasync")
        super().fdatasync(descriptor)

    def fsync(self, descriptor: int) -> None:
        self.calls.append("fsync")
        super().fsync(descriptor)


def test_a_big_snapshot_is_flushed_as_it_is_written(tmp_path: Path) -> None:
    """In pieces of SNAPSHOT_FLUSH_BYTES, each synced: 18 MB written in one burst held the
    WAL's fdatasync behind it for 60-80 ms."""
    filesystem = SyncCountingFileSystem()
    store = FileSnapshotStore(tmp_path, filesystem=filesystem)
    piece = snapshot_files_module.SNAPSHOT_FLUSH_BYTES
    data = os.urandom(3 * piece + 5)
    store.save(snapshot_meta(10, 2), data)
    writes = filesystem.calls[1:]  # after the header's write
    assert writes[:7] == [f"write {piece}", "fdatasync"] * 3 + ["write 5"]
    assert writes[7] == "fsync"
    assert store.load(store.stored()[-1])[1] == data
    filesystem.calls.clear()
    store.save(snapshot_meta(20, 2), b"small")
    assert filesystem.calls.count("fdatasync") == 0 and filesystem.calls.count("fsync") == 1
