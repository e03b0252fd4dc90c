"""FileStorage may sync in a worker thread (the runtime keeps fsync off its event loop)."""

from __future__ import annotations

import threading
from pathlib import Path

from storage_helpers import make_entries

from raftkv.storage.file_log import FileStorage

BATCHES = 200
BATCH_ENTRIES = 5
SEGMENT_BYTES = 2048


def test_syncs_in_a_thread_interleaved_with_appends_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    storage = FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    done = threading.Event()
    errors: list[BaseException] = []

    def keep_syncing() -> None:
        try:
            while not done.is_set():
                storage.sync()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    syncer = threading.Thread(target=keep_syncing)
    syncer.start()
    try:
        for batch in range(BATCHES):
            first = batch * BATCH_ENTRIES + 1
            storage.append(make_entries(first, BATCH_ENTRIES, term=1))
            assert storage.entries(max(1, first - 7), first + BATCH_ENTRIES) == make_entries(
                max(1, first - 7), min(first - 1, 7) + BATCH_ENTRIES, term=1
            )
    finally:
        done.set()
        syncer.join()
    assert not errors
    storage.sync()
    storage.close()
    total = BATCHES * BATCH_ENTRIES
    with FileStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as reopened:
        assert reopened.entries(1, reopened.last_index() + 1) == make_entries(1, total, term=1)
