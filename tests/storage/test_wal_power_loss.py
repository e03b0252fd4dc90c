"""Power loss and bit rot: cut segment files short and flip bits (seeded), then reopen.

Each case must end in one of two ways: the store opens and holds exactly the records
before the first damaged byte (every entry intact, nothing after it), or it refuses with
Corruption naming a segment file and an offset. Damage to any segment but the last, which
was fsynced whole before the next one began, must be Corruption.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from storage_helpers import entry_data

from raftkv.core.messages import Entry, HardState
from raftkv.errors import Corruption
from raftkv.storage.file_log import FileStorage
from raftkv.storage.wal_records import (
    ENTRY_FIELDS,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RecordType,
    decode_hard_state,
    records_end,
)

CASES = 200
SEED = 77
SEGMENT_BYTES = 2048
ENTRIES = 300
COMPACT_AT = 200  # entries appended when the log is compacted, deleting the first segments
COMPACT_THROUGH = 60
FLIPS_MAX = 3


@dataclass
class RecordPlace:
    end: int  # the byte after the record
    entry_index: int | None
    hard_state: HardState | None


@dataclass
class Wal:
    directory: Path
    entries: dict[int, Entry]
    records: dict[str, list[RecordPlace]]  # segment file name -> its records in order


def build_wal(directory: Path) -> Wal:
    rng = random.Random(SEED)
    entries: dict[int, Entry] = {}
    with FileStorage(directory, segment_bytes_max=SEGMENT_BYTES) as storage:
        while storage.last_index() < ENTRIES:
            first = storage.last_index() + 1
            term = 1 + first // 50
            batch = [
                Entry(term, index, 0, entry_data(index) * rng.randint(1, 4))
                for index in range(first, first + rng.randint(1, 12))
            ]
            storage.append(batch)
            entries.update((entry.index, entry) for entry in batch)
            storage.set_hard_state(HardState(term, 1, batch[-1].index - 1))
            if first <= COMPACT_AT < first + len(batch):
                storage.compact(COMPACT_THROUGH, entries[COMPACT_THROUGH].term)
            storage.sync()
    records = {path.name: list(scan(path)) for path in sorted(directory.glob("wal-*.log"))}
    return Wal(directory, entries, records)


def scan(path: Path) -> list[RecordPlace]:
    """The records of an undamaged segment."""
    data = memoryview(path.read_bytes())
    places, offset = [], 0
    end = records_end(bytes(data))
    while offset < end:
        _checksum, length, record_type = RECORD_HEADER.unpack_from(data, offset)
        payload = data[offset + RECORD_HEADER_BYTES : offset + RECORD_HEADER_BYTES + length]
        offset += RECORD_HEADER_BYTES + length
        entry_index, hard_state = None, None
        if record_type == RecordType.ENTRY:
            entry_index = ENTRY_FIELDS.unpack_from(payload)[1]
        elif record_type == RecordType.HARD_STATE:
            hard_state = decode_hard_state(payload)
        places.append(RecordPlace(offset, entry_index, hard_state))
    return places


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Wal:
    return build_wal(tmp_path_factory.mktemp("pristine") / "wal")


def damage(rng: random.Random, path: Path) -> int:
    """Cut and/or flip bits in `path`; the offset of the first damaged byte."""
    data = bytearray(path.read_bytes())
    first_damage = len(data)
    mode = rng.choice(["cut", "flip", "both"])
    if mode in ("flip", "both"):
        for _ in range(rng.randint(1, FLIPS_MAX)):
            offset = rng.randrange(len(data))
            data[offset] ^= 1 << rng.randrange(8)
            first_damage = min(first_damage, offset)
    if mode in ("cut", "both"):
        cut = rng.randrange(len(data))
        del data[cut:]
        first_damage = min(first_damage, cut)
    path.write_bytes(bytes(data))
    return first_damage


def file_contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def expected_after_damage(wal: Wal, damaged_name: str, first_damage: int) -> tuple[int, HardState]:
    """Last index and hard state of the records wholly before the damage."""
    last_index, hard_state = 0, HardState()
    for name, places in wal.records.items():
        for place in places:
            if name == damaged_name and place.end > first_damage:
                return last_index, hard_state
            if place.entry_index is not None:
                last_index = place.entry_index
            if place.hard_state is not None:
                hard_state = place.hard_state
    return last_index, hard_state


def test_damage_yields_a_valid_prefix_or_corruption(pristine: Wal, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    names = list(pristine.records)
    assert len(names) >= 4 and names[0] != "wal-0000000000000001.log"
    outcomes = {"prefix": 0, "corruption": 0}
    for case in range(CASES):
        directory = tmp_path / f"case-{case}"
        shutil.copytree(pristine.directory, directory)
        # Half the cases hit the last segment, where a torn tail is possible.
        name = names[-1] if rng.random() < 0.5 else rng.choice(names[:-1])
        first_damage = damage(rng, directory / name)
        damaged = file_contents(directory)
        try:
            storage = FileStorage(directory, segment_bytes_max=SEGMENT_BYTES)
        except Corruption as corruption:
            outcomes["corruption"] += 1
            assert corruption.path is not None and Path(corruption.path).parent == directory
            assert corruption.offset is not None and corruption.offset >= 0
            assert file_contents(directory) == damaged, "a refused WAL must be left as found"
            continue
        with storage:
            outcomes["prefix"] += 1
            assert name == names[-1], f"case {case}: damage to {name} went unnoticed"
            last_index, hard_state = expected_after_damage(pristine, name, first_damage)
            assert storage.last_index() == last_index, f"case {case}"
            assert storage.hard_state() == hard_state, f"case {case}"
            first = storage.first_index()
            assert storage.entries(first, last_index + 1) == [
                pristine.entries[index] for index in range(first, last_index + 1)
            ]
        shutil.rmtree(directory)
    assert outcomes["prefix"] > CASES // 10 and outcomes["corruption"] > CASES // 10, outcomes
