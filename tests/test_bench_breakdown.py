"""raft-bench --breakdown's arithmetic and probes (the numbers themselves come from
`make bench`, never from tests)."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from raftkv.cli.bench_breakdown import (
    ProcessSample,
    cpu_seconds,
    loop_cpu_seconds,
    loop_wait_seconds,
    raw_fdatasync_rate,
    report,
    row_heading,
)

T = TypeVar("T")


def test_report_divides_each_node_s_counts_by_the_writes() -> None:
    before = ProcessSample(
        1.0, 100, 10, 5.0, 0.005, {}, loop_cpu_seconds=0.8, loop_wait_seconds=2.0
    )
    after = ProcessSample(
        1.5, 600, 110, 105.0, 0.105, {}, loop_cpu_seconds=1.1, loop_wait_seconds=2.25
    )
    table = report({"leader": after.minus(before)}, writes=1000, seconds=2.0)
    row = table.splitlines()[1].split()
    # 0.5 s of CPU over 1,000 writes, 0.3 s of it the loop's; 500 I/O calls; 100 wake-ups;
    # 100 syncs in 2 s of 1 ms; the loop waited 0.25 s for a CPU
    assert row == ["leader", "500", "300", "0.5", "0.1", "50", "1.000", "250"]


def test_a_kernel_without_schedstat_gives_no_loop_wait() -> None:
    without = ProcessSample(1.0, 0, 0, 0.0, 0.0, {}, loop_cpu_seconds=0.5)
    later = ProcessSample(2.0, 0, 0, 0.0, 0.0, {}, loop_cpu_seconds=1.0)
    row = report({"leader": later.minus(without)}, writes=1000, seconds=1.0).splitlines()[1]
    assert row.split()[-1] == "n/a"


def test_the_loop_s_wait_is_the_time_it_was_runnable_without_a_cpu() -> None:
    """A child pinned to one CPU beside a busy process of its own on the same CPU: its main
    thread, working 0.2 s of CPU, waits about as long for it (the scheduler shares the CPU
    between the two), and that is what the wait counts."""
    waited = _measure_child(_CROWDED_CHILD, loop_wait_seconds)
    assert waited is not None, "this kernel keeps schedstat (Linux with CONFIG_SCHED_INFO)"
    assert waited >= 0.05


def test_the_loop_s_cpu_is_the_main_thread_s_alone() -> None:
    """A child whose second thread works 0.3 s of CPU and whose main thread idles: the
    process's CPU counts that work, the main thread's does not."""
    whole, loop = _measure_child(
        _WORKER_THREAD_CHILD, lambda pid: (cpu_seconds(pid), loop_cpu_seconds(pid))
    )
    assert whole >= 0.3
    assert loop <= whole - 0.25


def _measure_child(source: str, measure: Callable[[int], T]) -> T:
    """Run `source` in a child, `measure(pid)` once it printed "worked", and kill it (by
    pid, whatever happens)."""
    child = subprocess.Popen(
        [sys.executable, "-c", source], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "worked"
        return measure(child.pid)
    finally:
        child.kill()
        child.wait()


_WORKER_THREAD_CHILD = """
import sys, threading, time
def work():
    deadline = time.thread_time() + 0.3
    while time.thread_time() < deadline:
        pass
worker = threading.Thread(target=work)
worker.start()
worker.join()
print("worked", flush=True)
sys.stdin.read()  # idle until killed (or the test's end closes the pipe)
"""


_CROWDED_CHILD = """
import os, subprocess, sys, time
cpu = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {cpu})  # inherited by the busy process below
# Bounded, so that it ends by itself should this child be killed before its `finally`.
spin = "import time; end = time.monotonic() + 20; exec('while time.monotonic() < end: pass')"
busy = subprocess.Popen([sys.executable, "-c", spin])
try:
    deadline = time.thread_time() + 0.2
    while time.thread_time() < deadline:
        pass
finally:
    busy.kill()
    busy.wait()
print("worked", flush=True)
sys.stdin.read()  # idle until killed (or the test's end closes the pipe)
"""


def test_raw_fdatasync_rate_measures_and_cleans_up(tmp_path: Path) -> None:
    assert raw_fdatasync_rate(tmp_path, seconds=0.05) > 0
    assert list(tmp_path.iterdir()) == []


def test_raw_fdatasync_rate_of_several_files_at_once_measures_and_cleans_up(
    tmp_path: Path,
) -> None:
    assert raw_fdatasync_rate(tmp_path, seconds=0.05, files=3) > 0
    assert list(tmp_path.iterdir()) == []


def test_report_gives_each_stage_s_mean_over_the_samples_of_the_run() -> None:
    before = ProcessSample(0, 0, 0, 0, 0, {"queue": (1.0, 10.0), "apply": (0.5, 10.0)})
    after = ProcessSample(
        0, 0, 0, 0, 0, {"queue": (1.0004, 14.0), "apply": (0.5002, 14.0), "resume": (1e-4, 4.0)}
    )
    follower = ProcessSample(0, 0, 0, 0, 0, {"follower_disk": (0.0006, 4.0)})
    table = report(
        {
            "leader": after.minus(before),
            "follower 2": follower.minus(ProcessSample(0, 0, 0, 0, 0, {})),
        },
        writes=4,
        seconds=1.0,
    )
    stages = table.split("mean µs:")[1].strip().splitlines()
    # 0.4 ms over 4 samples: 100 µs; 0.2 ms: 50; 0.1 ms: 25, in the stages' order
    assert stages[0].split() == [
        "leader", "queue", "100", "·", "apply", "50", "·", "resume", "25", "=", "175", "from",
        "proposal", "to", "handler",
    ]  # fmt: skip
    assert stages[1].split() == ["follower", "2", "follower_disk", "150"]


def test_a_row_that_did_not_measure_writes_says_so() -> None:
    """A leader change mid-row (this machine's disk stalls can cost one) once printed 34,377
    writes/s at C=16 and 4,960,000 CPU µs per write at C=64: wrk counted fast refusals, and
    the per-write figures divided by the few writes applied. Such a row now says so."""
    good = {"rate": 1180.0, "p50_ms": 0.82, "errors": 0.0}
    assert row_heading(1, good, led_throughout=True) == "\nwrites, C = 1: 1,180/s, p50 0.82 ms"
    refused = row_heading(16, {**good, "errors": 120_000.0}, led_throughout=True)
    assert "120,000 answers not 2xx" in refused and "NOT A MEASUREMENT" in refused
    assert "NOT A MEASUREMENT" in row_heading(64, good, led_throughout=False)
