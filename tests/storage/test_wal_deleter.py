"""Obsolete WAL segments deleted by a deleter (the node's disk thread), not inside `sync`:
unlinking a 64 MiB segment and syncing the directory took 60-70 ms with the event loop
waiting, on a disk busy with a snapshot."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest
from storage_helpers import make_entries

from raftkv.errors import StorageError
from raftkv.storage.file_log import FileStorage

SEGMENT_BYTES = 600


class HeldDeleter:
    """Runs nothing until told to: what a busy disk thread looks like to the WAL."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Future[None], Callable[[], None]]] = []

    def __call__(self, job: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        self.jobs.append((future, job))
        return future

    def run_all(self) -> None:
        jobs, self.jobs = self.jobs, []
        for future, job in jobs:
            try:
                job()
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(None)


def segments(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def compacted_storage(directory: Path, deleter: HeldDeleter) -> FileStorage:
    storage = FileStorage(directory, segment_bytes_max=SEGMENT_BYTES, deleter=deleter)
    for first in range(1, 200, 20):
        storage.append(make_entries(first, 20, term=1))
        storage.sync()
    storage.compact(180, 1)
    return storage


def test_obsolete_segments_are_deleted_by_the_deleter_not_by_sync(tmp_path: Path) -> None:
    deleter = HeldDeleter()
    storage = compacted_storage(tmp_path, deleter)
    before = segments(tmp_path)
    assert len(before) > 3
    storage.append(make_entries(201, 1, term=1))
    storage.sync()
    assert set(before) <= set(segments(tmp_path))  # the sync left them to the deleter
    assert len(deleter.jobs) == 1
    deleter.run_all()
    deleted = set(before) - set(segments(tmp_path))
    assert deleted and min(deleted) == before[0]
    assert [entry.index for entry in storage.entries(181, 202)] == list(range(181, 202))
    storage.close()
    # What was kept reopens whole.
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as reopened:
        assert reopened.first_index() <= 181 and reopened.last_index() == 201


def test_segments_left_undeleted_by_a_crash_are_harmless(tmp_path: Path) -> None:
    deleter = HeldDeleter()
    storage = compacted_storage(tmp_path, deleter)
    storage.append(make_entries(201, 1, term=1))
    storage.sync()
    storage.close()  # the deleter never ran: a crash before the disk thread got to it
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as reopened:
        assert reopened.last_index() == 201
        assert [entry.index for entry in reopened.entries(181, 202)] == list(range(181, 202))


def test_a_failed_deletion_fails_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deleter = HeldDeleter()
    storage = compacted_storage(tmp_path, deleter)
    storage.append(make_entries(201, 1, term=1))
    storage.sync()

    def unlink_fails(path: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", unlink_fails)
        deleter.run_all()
    # As if the sync had failed deleting them itself: the store refuses every write since.
    with pytest.raises(StorageError, match="failed earlier: I/O error while deleting"):
        storage.append(make_entries(202, 1, term=1))
    with pytest.raises(StorageError, match="deleting"):
        storage.sync()
    assert storage.failed is not None
    storage.close()
