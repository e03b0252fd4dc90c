"""Crash consistency for real: a child appends and fsyncs, the parent kill -9s it at random.

The child prints each acknowledged (synced) last index; after every kill the parent
reopens the WAL and checks that every acknowledged entry is there and intact, that the
entries are consecutive and that nothing past the tail is garbage. Small segments and
frequent compactions put kills inside rotations and segment deletions too.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage_helpers import child_environment, entry_data

from raftkv.core.messages import Entry
from raftkv.storage.file_log import FileStorage

ROUNDS = 20
SEED = 20240601
KILL_DELAY_SECONDS_MAX = 0.05
# Generous: a slow machine may take long to start Python; this is a deadline, not a sleep.
STARTUP_DEADLINE_SECONDS = 30.0
SEGMENT_BYTES = 4096
READ_CHUNK_BYTES = 65536

CHILD = """
import random, sys
from raftkv.core.messages import Entry, HardState
from raftkv.storage.file_log import FileStorage
from storage_helpers import entry_data

directory, seed, segment_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
storage = FileStorage(directory, segment_bytes_max=segment_bytes)
term = storage.hard_state().term + 1
print("open", flush=True)
while True:
    first = storage.last_index() + 1
    count = rng.randint(1, 40)
    indexes = range(first, first + count)
    storage.append([Entry(term, index, 0, entry_data(index)) for index in indexes])
    storage.set_hard_state(HardState(term, 1, first + count - 1))
    if rng.random() < 0.2 and storage.last_index() - storage.first_index() > 100:
        through = storage.last_index() - 50
        storage.compact(through, storage.term(through))
    storage.sync()
    print(first + count - 1, flush=True)
"""


def run_until_killed(directory: Path, seed: int, kill_delay: float) -> list[int]:
    """Start the child, kill -9 it `kill_delay` seconds after it opened; its acks."""
    helpers_directory = str(Path(__file__).parent)
    environment = child_environment()
    environment["PYTHONPATH"] = os.pathsep.join([helpers_directory, environment["PYTHONPATH"]])
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(seed), str(SEGMENT_BYTES)],
        stdout=subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None
    output = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
            kill_at: float | None = None
            while True:
                now = time.monotonic()
                if kill_at is None and b"open\n" in output:
                    kill_at = now + kill_delay
                stop_at = deadline if kill_at is None else kill_at
                if now >= stop_at:
                    assert kill_at is not None, f"the child did not open in time: {output!r}"
                    break
                if selector.select(timeout=stop_at - now):
                    chunk = os.read(process.stdout.fileno(), READ_CHUNK_BYTES)
                    if not chunk:
                        code = process.wait()
                        raise AssertionError(f"the child exited early ({code}): {output!r}")
                    output += chunk
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    output += process.stdout.read()
    process.stdout.close()
    # Only whole lines count: a line cut by the kill was never fully acknowledged.
    lines = output.split(b"\n")[:-1]
    return [int(line) for line in lines[1:]]


def check_recovered(directory: Path, acknowledged: int) -> int:
    with FileStorage(directory, segment_bytes_max=SEGMENT_BYTES) as storage:
        first, last = storage.first_index(), storage.last_index()
        assert last >= acknowledged, f"acknowledged {acknowledged}, recovered only {last}"
        assert storage.hard_state().commit >= acknowledged
        assert storage.term(first - 1) is not None
        entries = storage.entries(first, last + 1)
        assert [entry.index for entry in entries] == list(range(first, last + 1))
        for entry in entries:
            assert entry == Entry(entry.term, entry.index, 0, entry_data(entry.index))
            assert entry.term <= storage.hard_state().term
        return last


def test_acknowledged_entries_survive_kill_9(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "wal"
    acknowledged = 0
    for round_number in range(ROUNDS):
        delay = rng.uniform(0, KILL_DELAY_SECONDS_MAX)
        acks = run_until_killed(directory, rng.randrange(1 << 32), delay)
        assert acks == sorted(acks)
        acknowledged = max([acknowledged, *acks])
        recovered = check_recovered(directory, acknowledged)
        assert recovered >= acknowledged, f"round {round_number}"
    assert acknowledged > 0
