"""A WAL sync in the node's sync thread leaves the store usable meanwhile: the lock is held
to take the buffer and to record the outcome, not during the write and the fdatasync, so
the event loop reads terms and entries (and appends) while the disk works."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import make_entries

from raftkv.storage.file_log import FileStorage
from raftkv.storage.filesystem import OsFileSystem

WAIT_SECONDS = 10.0


class HeldCall(OsFileSystem):
    """The real file system, one of whose calls (a subclass's) waits until released once
    armed."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        if self.armed:
            self.entered.set()
            assert self.release.wait(WAIT_SECONDS), "the test never released the sync"


class HeldSync(HeldCall):
    """The WAL's fdatasync is held."""

    def fdatasync(self, descriptor: int) -> None:
        self.hold()
        super().fdatasync(descriptor)


class SyncInThread:
    """`storage.sync()` in a thread, held inside its fdatasync until `finish()`."""

    def __init__(self, storage: FileStorage, filesystem: HeldSync) -> None:
        self.filesystem = filesystem
        self.error: BaseException | None = None
        filesystem.armed = True
        self.thread = threading.Thread(target=self._run, args=(storage,))
        self.thread.start()
        assert filesystem.entered.wait(WAIT_SECONDS), "the sync never reached fdatasync"

    def _run(self, storage: FileStorage) -> None:
        try:
            storage.sync()
        except BaseException as error:  # re-raised by finish()
            self.error = error

    def finish(self) -> None:
        self.filesystem.armed = False
        self.filesystem.release.set()
        self.thread.join(WAIT_SECONDS)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def held() -> Iterator[HeldSync]:
    filesystem = HeldSync()
    yield filesystem
    filesystem.release.set()  # never leave a thread waiting, even when a test fails


def test_reads_and_appends_go_on_while_a_sync_is_in_the_disk(
    tmp_path: Path, held: HeldSync
) -> None:
    # No cache: every read of the entries being synced goes to the store's own bytes.
    storage = FileStorage(tmp_path, filesystem=held, cache_entries_max=0)
    storage.append(make_entries(1, 10, term=1))
    storage.sync()
    storage.append(make_entries(11, 10, term=2))
    sync = SyncInThread(storage, held)
    try:
        assert storage.term(15) == 2
        assert storage.entries(5, 21) == make_entries(5, 6, term=1) + make_entries(11, 10, term=2)
        storage.append(make_entries(21, 5, term=2))  # buffered behind the sync in progress
        assert storage.entries(18, 26) == make_entries(18, 3, term=2) + make_entries(21, 5, term=2)
    finally:
        sync.finish()
    assert storage.entries(11, 26) == make_entries(11, 15, term=2)
    storage.sync()  # the entries appended meanwhile
    storage.close()
    reopened = FileStorage(tmp_path)
    assert reopened.last_index() == 25
    assert reopened.entries(1, 26) == make_entries(1, 10, term=1) + make_entries(11, 15, term=2)
    reopened.close()


def test_close_waits_for_a_sync_in_progress(tmp_path: Path, held: HeldSync) -> None:
    """Its descriptor must not be closed (and its number reused) under the write."""
    storage = FileStorage(tmp_path, filesystem=held)
    storage.append(make_entries(1, 8, term=1))
    sync = SyncInThread(storage, held)
    closer = threading.Thread(target=storage.close)
    closer.start()
    closer.join(0.2)  # a bounded look: close must still be waiting for the sync
    assert closer.is_alive()
    sync.finish()
    closer.join(WAIT_SECONDS)
    assert not closer.is_alive()
    reopened = FileStorage(tmp_path)
    assert reopened.entries(1, 9) == make_entries(1, 8, term=1)
    reopened.close()


def test_a_second_sync_waits_for_the_first(tmp_path: Path, held: HeldSync) -> None:
    storage = FileStorage(tmp_path, filesystem=held)
    storage.append(make_entries(1, 4, term=1))
    sync = SyncInThread(storage, held)
    storage.append(make_entries(5, 4, term=1))
    second = threading.Thread(target=storage.sync)
    second.start()
    second.join(0.2)
    assert second.is_alive()
    sync.finish()
    second.join(WAIT_SECONDS)
    assert not second.is_alive()
    storage.close()
    reopened = FileStorage(tmp_path)
    assert reopened.entries(1, 9) == make_entries(1, 8, term=1)
    reopened.close()


def test_a_full_segment_rotates_only_once_what_was_buffered_meanwhile_is_written(
    tmp_path: Path, held: HeldSync
) -> None:
    """A new segment must begin with its header: records appended during the sync that
    filled the segment go into that segment with the next sync, which rotates then."""
    storage = FileStorage(tmp_path, filesystem=held, segment_bytes_max=400)
    storage.append(make_entries(1, 10, term=1))  # past 400 bytes
    sync = SyncInThread(storage, held)
    storage.append(make_entries(11, 3, term=1))
    sync.finish()
    assert len(storage.segment_numbers) == 1
    storage.sync()
    assert len(storage.segment_numbers) == 2
    storage.append(make_entries(14, 2, term=1))
    storage.sync()
    storage.close()
    assert len([name for name in os.listdir(tmp_path) if name.startswith("wal-")]) == 2
    reopened = FileStorage(tmp_path)
    assert reopened.entries(1, 16) == make_entries(1, 15, term=1)
    reopened.close()


class HeldRotation(HeldCall):
    """The directory's fsync (a new segment's creation) is held."""

    def fsync_directory(self, path: str) -> None:
        self.hold()
        super().fsync_directory(path)


def test_the_store_is_usable_while_a_sync_creates_the_next_segment(tmp_path: Path) -> None:
    """Creating a new segment's file costs fsyncs (the previous segment cut to its records,
    the directory), 100 ms and more on a disk busy with a snapshot: the event loop's appends
    and reads must not wait for them behind the WAL's lock."""
    held = HeldRotation()
    try:
        storage = FileStorage(tmp_path, filesystem=held, segment_bytes_max=400)
        storage.append(make_entries(1, 10, term=1))  # past 400 bytes: the next sync rotates
        storage.sync()
        assert len(storage.segment_numbers) == 2
        storage.append(make_entries(11, 2, term=1))
        held.armed = True
        syncing = threading.Thread(target=storage.sync)
        syncing.start()
        assert held.entered.wait(WAIT_SECONDS), "the sync never created the segment"
        meanwhile: list[object] = []

        def use_the_store() -> None:
            storage.append(make_entries(13, 3, term=2))
            meanwhile.append(storage.term(12))
            meanwhile.append(storage.entries(9, 16))

        user = threading.Thread(target=use_the_store)
        user.start()
        user.join(WAIT_SECONDS / 2)  # less than the hold: a held lock fails here, not later
        assert not user.is_alive(), "the store's lock was held while the segment was created"
        assert meanwhile == [
            1,
            make_entries(9, 4, term=1) + make_entries(13, 3, term=2),
        ]
    finally:
        held.armed = False
        held.release.set()
    syncing.join(WAIT_SECONDS)
    assert not syncing.is_alive()
    storage.sync()  # the entries appended meanwhile, in the new segment
    storage.close()
    reopened = FileStorage(tmp_path)
    assert reopened.segment_numbers == storage.segment_numbers
    assert reopened.entries(1, 16) == make_entries(1, 12, term=1) + make_entries(13, 3, term=2)
    reopened.close()
