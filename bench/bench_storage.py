"""Durable append throughput of FileStorage next to the disk's raw fsync rate.

    python bench/bench_storage.py [--dir D] [--seconds S] [--runs R]

For batches of 1, 16 and 256 entries of 100 bytes, each batch is `append` + `sync` (one
write and one fdatasync). The raw rate is 100-byte `os.write` + `os.fdatasync` in a loop
on a plain file in the same directory. Each figure is the median of `--runs` runs; each
run measures the raw rate next to the batches, and syncs/raw is the median of the per-run
ratios.

The last column is the CPU cost of one batch without the disk: the same loop with
`os.fdatasync` replaced by a no-op, i.e. building the entries, encoding, indexing and the
write system call. It tells what the store adds on top of the disk's fsync latency.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from raftkv.core.messages import Entry
from raftkv.storage.file_log import FileStorage

ENTRY_DATA_BYTES = 100
BATCH_SIZES = (1, 16, 256)
SECONDS_DEFAULT = 2.0
RUNS_DEFAULT = 3
CPU_SECONDS = 0.5  # per run of the no-fsync measurement
TERM = 1


def raw_fsync_rate(directory: str, seconds: float) -> float:
    """fdatasyncs per second of 100-byte appends to a plain file."""
    path = os.path.join(directory, "raw-fsync-probe")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    payload = b"x" * ENTRY_DATA_BYTES
    count = 0
    try:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            os.write(descriptor, payload)
            os.fdatasync(descriptor)
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        os.close(descriptor)
        os.unlink(path)
    return count / elapsed


def no_fdatasync(file_descriptor: object) -> None:
    """Stands in for os.fdatasync when measuring the CPU cost alone."""


def durable_append_rate(
    directory: str, batch_size: int, seconds: float, fsync: bool = True
) -> tuple[float, float]:
    """(entries per second, syncs per second) of append + sync batches on a fresh WAL."""
    wal_directory = os.path.join(directory, f"wal-bench-{batch_size}")
    storage = FileStorage(wal_directory)
    data = b"x" * ENTRY_DATA_BYTES
    next_index = 1
    batches = 0
    disk = contextlib.nullcontext() if fsync else mock.patch.object(os, "fdatasync", no_fdatasync)
    try:
        with disk:
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                indexes = range(next_index, next_index + batch_size)
                storage.append([Entry(TERM, index, 0, data) for index in indexes])
                storage.sync()
                next_index += batch_size
                batches += 1
            elapsed = time.perf_counter() - start
    finally:
        storage.close()
        shutil.rmtree(wal_directory)
    return batches * batch_size / elapsed, batches / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="directory on the disk to measure (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=SECONDS_DEFAULT, help="per measurement")
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="runs; medians shown")
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="raftkv-bench-", dir=arguments.dir)
    seconds = arguments.seconds
    try:
        # Each run measures the raw rate next to every batch size, so that a disk whose speed
        # drifts (other load) is compared with itself; ratios are per run, then medians.
        raw_rates: list[float] = []
        rates: dict[int, list[tuple[float, float]]] = {size: [] for size in BATCH_SIZES}
        for _ in range(arguments.runs):
            raw_rates.append(raw_fsync_rate(directory, seconds))
            for batch_size in BATCH_SIZES:
                rates[batch_size].append(durable_append_rate(directory, batch_size, seconds))
        print(f"directory: {directory}  seconds: {seconds}  runs: {arguments.runs}")
        print(
            f"{'batch':>6} {'entries/s':>12} {'syncs/s':>10} {'syncs/raw':>10} {'cpu us/batch':>13}"
        )
        raw = statistics.median(raw_rates)
        print(f"{'raw':>6} {raw:>12,.0f} {raw:>10,.0f} {1.0:>10.2f} {'':>13}")
        for batch_size in BATCH_SIZES:
            results = rates[batch_size]
            entries_rate = statistics.median(result[0] for result in results)
            syncs_rate = statistics.median(result[1] for result in results)
            ratio = statistics.median(
                result[1] / raw_rate for result, raw_rate in zip(results, raw_rates, strict=True)
            )
            cpu_syncs_rate = statistics.median(
                durable_append_rate(directory, batch_size, CPU_SECONDS, fsync=False)[1]
                for _ in range(arguments.runs)
            )
            print(
                f"{batch_size:>6} {entries_rate:>12,.0f} {syncs_rate:>10,.0f} "
                f"{ratio:>10.2f} {1e6 / cpu_syncs_rate:>13.1f}"
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
