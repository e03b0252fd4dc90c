"""A new segment whose first write (header and hard state) was torn after the header.

Found by the simulated disk (test_simulated_power_loss.py): recovery kept such a segment,
appends went on in it without a hard state, and once compaction deleted the older segments
the vote and term went with them. Shown here on the real disk, and on the simulated one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from raftkv.core.messages import Entry, HardState
from raftkv.storage.file_log import FileStorage
from raftkv.storage.filesystem import OS_FILE_SYSTEM, FileSystem
from raftkv.storage.simulated_disk import SimulatedFileSystem
from raftkv.storage.wal_records import RECORD_HEADER_BYTES, SEGMENT_HEADER_FIELDS
from raftkv.storage.wal_recovery import segment_file_name

SEGMENT_BYTES = 256
HEADER_RECORD_BYTES = RECORD_HEADER_BYTES + SEGMENT_HEADER_FIELDS.size
VOTE = HardState(3, 2, 0)


def cut(filesystem: FileSystem, path: str, size: int) -> None:
    descriptor = filesystem.open(path, os.O_RDWR)
    try:
        filesystem.ftruncate(descriptor, size)
        filesystem.fsync(descriptor)
    finally:
        filesystem.close(descriptor)


@pytest.mark.parametrize("kept", [HEADER_RECORD_BYTES, HEADER_RECORD_BYTES + 5, 20])
@pytest.mark.parametrize("disk", ["real", "simulated"])
def test_the_vote_survives_a_torn_segment_start_and_a_later_compaction(
    tmp_path: Path, disk: str, kept: int
) -> None:
    filesystem: FileSystem = OS_FILE_SYSTEM
    directory = str(tmp_path / "wal")
    if disk == "simulated":
        filesystem, directory = SimulatedFileSystem(random.Random(1)), "/wal"

    def open_storage() -> FileStorage:
        return FileStorage(directory, segment_bytes_max=SEGMENT_BYTES, filesystem=filesystem)

    storage = open_storage()
    storage.set_hard_state(VOTE)
    storage.append([Entry(3, index, 0, b"x" * 40) for index in range(1, 6)])
    storage.sync()  # segment 1 is full: the next sync starts segment 2
    storage.append([Entry(3, 6, 0, b"y")])
    storage.sync()
    storage.close()
    # The crash kept only the first `kept` bytes of segment 2's first write.
    cut(filesystem, os.path.join(directory, segment_file_name(2)), kept)
    storage = open_storage()
    assert (storage.hard_state(), storage.last_index()) == (VOTE, 5)
    assert storage.segment_numbers == [1]
    storage.compact(5, 3)  # segment 1 holds no live entry once entry 6 is appended
    storage.append([Entry(3, 6, 0, b"z")])
    storage.sync()
    storage.append([Entry(3, 7, 0, b"z")])
    storage.sync()
    storage.close()
    storage = open_storage()
    assert storage.hard_state() == VOTE
    assert (storage.first_index(), storage.last_index()) == (6, 7)
    storage.close()
