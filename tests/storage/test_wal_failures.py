"""A full disk or an I/O error: StorageError, then a failed store that refuses every write."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import make_entries

from raftkv.core.messages import HardState
from raftkv.errors import StorageError
from raftkv.storage.file_log import FileStorage

SEGMENT_BYTES = 600


def every_write_fails(storage: FileStorage) -> list[Callable[[], None]]:
    return [
        lambda: storage.append(make_entries(storage.last_index() + 1, 1, term=9)),
        lambda: storage.set_hard_state(HardState(9, 9, 9)),
        lambda: storage.compact(storage.first_index(), 1),
        lambda: storage.reset(1000, 9),
        storage.sync,
    ]


def raise_oserror(code: int) -> Callable[..., int]:
    def fail(*arguments: object) -> int:
        raise OSError(code, os.strerror(code))

    return fail


def reopened_entries(directory: Path) -> tuple[int, list[object]]:
    with FileStorage(directory, segment_bytes_max=SEGMENT_BYTES) as storage:
        return storage.last_index(), list(storage.entries(1, storage.last_index() + 1))


@pytest.mark.parametrize("failing", ["pwrite", "fdatasync"])
def test_enospc_fails_the_sync_and_every_later_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    storage = FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    storage.append(make_entries(1, 10, term=1))
    storage.sync()
    storage.append(make_entries(11, 5, term=1))
    with monkeypatch.context() as patch:
        patch.setattr(os, failing, raise_oserror(errno.ENOSPC))
        with pytest.raises(StorageError, match=r"disk full \(ENOSPC\)"):
            storage.sync()
    assert storage.failed is not None
    for write in every_write_fails(storage):
        with pytest.raises(StorageError, match="failed earlier"):
            write()
    storage.close()
    last_index, entries = reopened_entries(tmp_path)
    # Never reported durable, so either way is right; what was synced is all there.
    assert last_index in (10, 15)
    assert entries == make_entries(1, last_index, term=1)


def test_an_io_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = FileStorage(tmp_path)
    storage.append(make_entries(1, 3, term=1))
    monkeypatch.setattr(os, "fdatasync", raise_oserror(errno.EIO))
    with pytest.raises(StorageError, match=r"I/O error while writing .*wal-0000000000000001\.log"):
        storage.sync()
    storage.close()


def test_a_write_cut_short_by_a_full_disk_leaves_a_recoverable_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    storage.append(make_entries(1, 10, term=1))
    storage.sync()
    storage.append(make_entries(11, 10, term=1))
    real_write = os.pwrite

    def write_half_then_fail(descriptor: int, data: bytes, offset: int) -> int:
        if len(data) > 1:
            return real_write(descriptor, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", write_half_then_fail)
        with pytest.raises(StorageError, match="ENOSPC"):
            storage.sync()
    storage.close()
    last_index, entries = reopened_entries(tmp_path)
    assert 10 <= last_index < 20
    assert entries == make_entries(1, last_index, term=1)


def test_a_failed_rotation_fails_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    real_open = os.open

    def no_new_files(path: str, flags: int, *arguments: int) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *arguments)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", no_new_files)
        with pytest.raises(StorageError, match="disk full"):
            for first in range(1, 1000, 10):
                storage.append(make_entries(first, 10, term=1))
                storage.sync()
    with pytest.raises(StorageError):
        storage.append(make_entries(storage.last_index() + 1, 1, term=1))
    storage.close()
    last_index, entries = reopened_entries(tmp_path)
    assert entries == make_entries(1, last_index, term=1)


def test_a_closed_store_refuses_writes(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        storage.append(make_entries(1, 1, term=1))
