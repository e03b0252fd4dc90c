"""`raft-bench --breakdown`: where a write's cost goes, per node, read off the kernel's
accounting of each raft-node process (not by instrumenting the node, so what is measured is
the node as shipped):

- CPU µs per committed write: user + system time of the whole process (all its threads, the
  disk thread included) from /proc/PID/stat, over the writes the leader applied; and of it,
  the event loop's thread alone (/proc/PID/task/PID/stat): the thread every request, message
  and apply goes through, whose limit is one core, while the sync and disk threads mostly
  wait on the disk;
- I/O syscalls per write: read-like and write-like system calls (/proc/PID/io syscr + syscw:
  socket reads and writes, WAL writes; not epoll or fsync);
- wake-ups per write: context switches of all the process's threads (/proc/PID/task/*/status);
- the event loop's wait for a CPU per write: the time its thread was runnable but not running
  (/proc/PID/task/PID/schedstat's run delay), what three nodes and wrk sharing two cores cost
  it (docs/ARCHITECTURE.md, session 36); `n/a` on a kernel without schedstats;
- WAL syncs per second and their mean time (the node's `raft_fsync_seconds` histogram), next
  to the raw fdatasync rate of the same file system measured with the WAL's kind of write,
  alone and three files at once (a node's each), the physical limits of a design that syncs
  once per batch;
- a write's stages inside the nodes, mean µs of the sampled writes (the nodes'
  `raft_write_stage_seconds`, server/write_stages.py): the leader's queue, disk, replication
  (network and a follower), apply and handler resumption, and each follower's queue and disk.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from raftkv.server.write_stages import FOLLOWER_STAGES, LEADER_STAGES

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAGE_ORDER = LEADER_STAGES + FOLLOWER_STAGES
_FSYNC_COUNT = re.compile(r"^raft_fsync_seconds_count (\S+)$", re.M)
_FSYNC_SUM = re.compile(r"^raft_fsync_seconds_sum (\S+)$", re.M)
_STAGE = re.compile(r'^raft_write_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$', re.M)


@dataclass(frozen=True)
class ProcessSample:
    cpu_seconds: float
    io_syscalls: int
    context_switches: int
    fsyncs: float
    fsync_seconds: float
    # stage -> (seconds, samples) of raft_write_stage_seconds
    stages: dict[str, tuple[float, float]]
    # CPU of the event loop's thread (the main thread) alone.
    loop_cpu_seconds: float = 0.0
    # How long that thread was runnable but waiting for a CPU (None: no schedstat).
    loop_wait_seconds: float | None = None

    def minus(self, earlier: ProcessSample) -> ProcessSample:
        stages = {}
        for stage, (total, count) in self.stages.items():
            total_before, count_before = earlier.stages.get(stage, (0.0, 0.0))
            stages[stage] = (total - total_before, count - count_before)
        return ProcessSample(
            self.cpu_seconds - earlier.cpu_seconds,
            self.io_syscalls - earlier.io_syscalls,
            self.context_switches - earlier.context_switches,
            self.fsyncs - earlier.fsyncs,
            self.fsync_seconds - earlier.fsync_seconds,
            stages,
            self.loop_cpu_seconds - earlier.loop_cpu_seconds,
            None
            if self.loop_wait_seconds is None or earlier.loop_wait_seconds is None
            else self.loop_wait_seconds - earlier.loop_wait_seconds,
        )

    def stage_means_us(self) -> dict[str, float]:
        return {
            stage: 1e6 * total / count for stage, (total, count) in self.stages.items() if count
        }


def cpu_seconds(pid: int) -> float:
    """User + system time process `pid` (all its threads) has used so far. Raises OSError
    once the process is gone."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def loop_cpu_seconds(pid: int) -> float:
    """User + system time of process `pid`'s main thread (a raft-node's event loop)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def loop_wait_seconds(pid: int) -> float | None:
    """How long process `pid`'s main thread has been runnable but not running, or None if
    the kernel keeps no schedstat (CONFIG_SCHED_INFO)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            raise  # the process is gone: as cpu_seconds does
        return None
    return int(fields[1]) / 1e9  # run time, run delay, time slices; nanoseconds


def _stat_cpu_seconds(stat: Path) -> float:
    # Fields 14 and 15 of stat are utime and stime; the command name (field 2) may hold
    # spaces, so count from after its closing parenthesis.
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def sample(pid: int, client_url: str) -> ProcessSample:
    """What the kernel and the node's metrics count for process `pid` so far."""
    proc = Path(f"/proc/{pid}")
    cpu = cpu_seconds(pid)
    loop_cpu = loop_cpu_seconds(pid)
    loop_wait = loop_wait_seconds(pid)
    io = dict(line.split(": ") for line in proc.joinpath("io").read_text().splitlines())
    switches = 0
    for task in proc.joinpath("task").iterdir():
        try:
            status = task.joinpath("status").read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        switches += sum(
            int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line
        )
    with urllib.request.urlopen(client_url + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    count, total = _FSYNC_COUNT.search(metrics), _FSYNC_SUM.search(metrics)
    stages: dict[str, tuple[float, float]] = {}
    for kind, stage, value in _STAGE.findall(metrics):
        seconds, samples = stages.get(stage, (0.0, 0.0))
        stages[stage] = (float(value), samples) if kind == "sum" else (seconds, float(value))
    return ProcessSample(
        cpu,
        int(io["syscr"]) + int(io["syscw"]),
        switches,
        float(count.group(1)) if count else 0.0,
        float(total.group(1)) if total else 0.0,
        stages,
        loop_cpu,
        loop_wait,
    )


def raw_fdatasync_rate(directory: Path, seconds: float = 2.0, files: int = 1) -> float:
    """fdatasyncs per second, in all, of `files` threads each writing 4 KiB in place into a
    file of its own in `directory` and syncing it, as the WAL writes (over a preallocated
    tail: `storage/file_log.py`). An append probe measures something else, the journal
    commit of the file's new size on every sync: about half this rate on this project's
    machine, which once made the shared disk look like the limit at C = 16 when three
    nodes' syncs, one per node at a time, had twice that rate to go."""
    counts = [0] * files
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def probe(number: int) -> None:
        path = directory / f"fdatasync-probe-{number}"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.pwrite(descriptor, bytes(_PROBE_FILE_BYTES), 0)
            os.fsync(descriptor)
            block, offset = b"\1" * 4096, 0
            # One sync at least: preparing the file can outlast a short window on a slow
            # disk (a 50 ms probe once counted none, a rate of 0).
            while counts[number] == 0 or time.monotonic() < deadline:
                os.pwrite(descriptor, block, offset)
                os.fdatasync(descriptor)
                counts[number] += 1
                offset = (offset + len(block)) % _PROBE_FILE_BYTES
        finally:
            os.close(descriptor)
            path.unlink()

    threads = [threading.Thread(target=probe, args=(number,)) for number in range(files)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


# The probe's file: written whole and synced before the timed writes, which wrap around it.
_PROBE_FILE_BYTES = 1 << 20


def report(roles: dict[str, ProcessSample], writes: float, seconds: float) -> str:
    """One row per node ("leader", "follower 2", ...) of a measured run of `writes` writes."""
    lines = [
        f"{'node':<14}{'CPU µs/write':>14}{'of it loop':>12}{'I/O calls/write':>17}"
        f"{'wake-ups/write':>16}{'WAL syncs/s':>13}{'sync ms':>9}{'loop waited µs/write':>22}"
    ]
    for role, delta in roles.items():
        per = max(writes, 1.0)
        mean_sync = 1000 * delta.fsync_seconds / delta.fsyncs if delta.fsyncs else 0.0
        lines.append(
            f"{role:<14}{1e6 * delta.cpu_seconds / per:>14.0f}"
            f"{1e6 * delta.loop_cpu_seconds / per:>12.0f}{delta.io_syscalls / per:>17.1f}"
            f"{delta.context_switches / per:>16.1f}{delta.fsyncs / seconds:>13.0f}"
            f"{mean_sync:>9.3f}"
            + (
                f"{'n/a':>22}"
                if delta.loop_wait_seconds is None
                else f"{1e6 * delta.loop_wait_seconds / per:>22.0f}"
            )
        )
    lines.append("a sampled write's stages, mean µs:")
    for role, delta in roles.items():
        means = delta.stage_means_us()
        shown = " · ".join(f"{stage} {means[stage]:.0f}" for stage in STAGE_ORDER if stage in means)
        if role == "leader" and means:
            inside = sum(means.get(stage, 0.0) for stage in LEADER_STAGES)
            shown += f" = {inside:.0f} from proposal to handler"
        if shown:
            lines.append(f"  {role:<12}{shown}")
    return "\n".join(lines)


def row_heading(connections: int, result: Mapping[str, float], led_throughout: bool) -> str:
    """A row's first line: wrk's rate and p50, and a warning when the row did not measure
    writes (requests refused, or the leader changed while it ran: wrk's rate then counts
    fast refusals, and the per-write figures divide by the few writes applied)."""
    heading = f"\nwrites, C = {connections}: {result['rate']:,.0f}/s, p50 {result['p50_ms']:.2f} ms"
    errors = result.get("errors", 0.0)
    if errors:
        heading += f", {errors:,.0f} answers not 2xx"
    if errors or not led_throughout:
        heading += (
            "\nNOT A MEASUREMENT OF WRITES: the leader changed or refused writes during this"
            " row (see the stalls below); run again"
        )
    return heading


def applied_index(client_url: str) -> int:
    with urllib.request.urlopen(client_url + "/v1/status", timeout=5) as response:
        status = json.loads(response.read())
    return int(status["last_applied"])


def measure(
    nodes: dict[str, tuple[int, str]],
    leader_url: str,
    run: Callable[[], object],
    seconds: float,
) -> str:
    """Sample every node (role → (pid, client URL)) around `run()` (one wrk measurement)."""
    before = {role: sample(pid, url) for role, (pid, url) in nodes.items()}
    first = applied_index(leader_url)
    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    writes = applied_index(leader_url) - first
    deltas = {role: sample(pid, url).minus(before[role]) for role, (pid, url) in nodes.items()}
    return report(deltas, writes, min(seconds, elapsed) or elapsed)
