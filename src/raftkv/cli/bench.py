"""`raft-bench`: throughput and latency of a real local durable cluster (3 nodes, or
`--nodes 5|7`).

Starts the raft-node processes (fsync on) in a temporary directory, then drives the leader
with wrk (a C load generator, Debian package `wrk`) over keep-alive connections with
16-byte values: writes at C = 1, 16, 64 and reads at C = 64 for each consistency level.
To show that wrk is not the bottleneck, every row reports the CPU wrk itself used (% of one
core, from its rusage): a generator that is the bottleneck sits near 100%. A request the
node answers without consensus (`GET /v1/status`) at C = 64 is measured too, for scale.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Protocol

import raftkv
from raftkv.cli.bench_stalls import StallLogs, stall_summary
from raftkv.cli.version import add_version_flag

BIN = Path(sys.executable).parent
STARTUP_DEADLINE_SECONDS = 30
# How much of a node's log raft-bench shows when the node exited at start-up.
NODE_LOG_LINES_SHOWN = 5
_pause = threading.Event()


class Measure(Protocol):
    """A wrk run: (url, connections, seconds, script, threads) -> rate, requests, p50_ms,
    p99_ms, ... (`threads`: wrk's, each with its share of the connections)."""

    def __call__(
        self, url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]: ...


# Each wrk round starts at START, where the previous round's completed requests ended: a
# counter from 0 in every round would write the same first keys again and again.
PRELOAD_SCRIPT = """
counter = START - 1
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/preload-" .. (counter % KEYS),
                    {["Content-Type"] = "application/json"}, '{"value":"VALUE"}')
end
"""

# Preloaded values (`--preload-keys`): 64 bytes, as the "real state" measurements.
PRELOAD_VALUE_BYTES = 64

PUT_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/key" .. (counter % 1000),
                    {["Content-Type"] = "application/json"}, '{"value":"0123456789abcdef"}')
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_json(url: str, method: str = "GET", body: bytes | None = None) -> object:
    request = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class LocalCluster:
    def __init__(self, root: Path, extra: list[str], nodes: int = 3) -> None:
        self.root = root
        self.ids = list(range(1, nodes + 1))
        self.peer_ports = {n: free_port() for n in self.ids}
        self.client_ports = {n: free_port() for n in self.ids}
        self.extra = extra
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for node_id in self.ids:
            peers = ",".join(
                f"{n}=127.0.0.1:{self.peer_ports[n]}" for n in self.ids if n != node_id
            )
            command = [
                str(BIN / "raft-node"),
                "--id",
                str(node_id),
                "--peers",
                peers,
                "--data-dir",
                str(self.root / f"node-{node_id}"),
                "--listen",
                f"127.0.0.1:{self.peer_ports[node_id]}",
                "--client-listen",
                f"127.0.0.1:{self.client_ports[node_id]}",
                "--seed",
                str(node_id),
                "--log-level",
                "warning",
                *self.extra,
            ]
            log = open(self.root / f"node-{node_id}.log", "ab")  # noqa: SIM115
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=log))
            log.close()

    def log_paths(self) -> list[Path]:
        """Each node's log (warnings and worse: `--log-level warning`)."""
        return [self.root / f"node-{node_id}.log" for node_id in self.ids]

    def leader_url(self) -> str:
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            self._check_running()
            for node_id in self.ids:
                url = f"http://127.0.0.1:{self.client_ports[node_id]}"
                try:
                    status = http_json(url + "/v1/status")
                except OSError:
                    continue
                if isinstance(status, dict) and status.get("role") == "leader":
                    return url
            _pause.wait(0.05)
        raise SystemExit("raft-bench: no leader elected")

    def _check_running(self) -> None:
        """Stop at once, saying why, when a node has exited: at start-up a flag it refused
        (`--node-arg`, a `RAFTKV_*` variable in the environment) was reported as the cluster
        electing no leader 30 s later; during a run, a crash would be measured as a smaller
        cluster."""
        for node_id, process in zip(self.ids, self.processes, strict=True):
            status = process.poll()
            if status is None:
                continue
            log = self.root / f"node-{node_id}.log"  # (removed with the bench dir)
            try:
                lines = log.read_text(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            tail = "\n".join(f"  {line}" for line in lines[-NODE_LOG_LINES_SHOWN:])
            raise SystemExit(
                f"raft-bench: node {node_id} exited (status {status}); the end of its"
                f" log:\n{tail or '  (empty)'}"
            )

    def following_the_leader(self, measure: Measure) -> Measure:
        """`measure` sent to whichever node leads now when given one of this cluster's URLs:
        after a leader change every request to the old leader would be a fast 421, measured
        as if it were the system's speed (a row that saw the change counts its errors)."""
        urls = [f"http://127.0.0.1:{port}" for port in self.client_ports.values()]
        told: set[tuple[str, str]] = set()  # each change said once, not for every row

        def measure_on_leader(
            url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
        ) -> dict[str, float]:
            base = next((node for node in urls if url == node or url.startswith(node + "/")), None)
            if base is not None:
                leader = self.leader_url()
                if leader != base and (base, leader) not in told:
                    told.add((base, leader))
                    print(f"raft-bench: the leader is now {leader} (was {base})", file=sys.stderr)
                url = leader + url[len(base) :]
            return measure(url, connections, seconds, script, threads)

        return measure_on_leader

    def stop(self) -> None:
        stop_processes(self.processes)


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then wait; kill one that does not stop."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def parse_latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


# wrk's `--latency` prints p50 and p99; its 99.9th percentile (a target of the comparison
# with etcd) only a script's done() hook can print. Added to every run's script.
P999_HOOK = """
done = function(summary, latency, requests)
  io.write(string.format("p99.9 latency: %d us\\n", latency:percentile(99.9)))
end
"""


def run_wrk(
    url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="raftkv-wrk-") as directory:
        hooked = Path(directory) / "script.lua"
        hooked.write_text((script.read_text() if script is not None else "") + P999_HOOK)
        return _run_wrk(url, connections, seconds, hooked, threads)


def _run_wrk(
    url: str, connections: int, seconds: float, script: Path, threads: int = 1
) -> dict[str, float]:
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
    ]
    # The nodes are children too, but still running: only wrk's usage lands in this delta.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60
    ).stdout
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    requests = re.search(r"(\d+) requests in", output)
    p999 = re.search(r"^p99\.9 latency: (\d+) us$", output, re.M)
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "requests": float(requests.group(1)) if requests else 0.0,
        "p50_ms": parse_latency(output, "50"),
        "p99_ms": parse_latency(output, "99"),
        "p999_ms": float(p999.group(1)) / 1000 if p999 else float("nan"),
        "errors": float(errors.group(1)) if errors else 0.0,
        "wrk_cpu_percent": 100 * cpu / elapsed,
        "wrk_cpu_seconds": cpu,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raft-bench", description=__doc__)
    add_version_flag(parser)
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument("--node-arg", action="append", default=[], help="extra raft-node flag")
    parser.add_argument(
        "--preload-keys",
        type=int,
        default=0,
        help="first write this many distinct keys of 64-byte values (a big state makes "
        "every snapshot taken during the measurements copy it)",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=3,
        choices=(1, 3, 5, 7),
        help="cluster size (default 3; with --compare etcd, the size of each)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="measure only the write rows, and print for each node its CPU µs, I/O system "
        "calls and wake-ups per write and its WAL syncs per second (cli/bench_breakdown.py)",
    )
    parser.add_argument(
        "--compare",
        choices=("etcd",),
        help="run the same workloads on a local 3-member etcd too, side by side, alternating, "
        "and print each row's medians and the ratio",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="--compare: measurements of each row on each system (default 3)",
    )
    parser.add_argument(
        "--rows",
        metavar="NAMES",
        help="--compare: only these rows, comma-separated as the report names them "
        '("write C=16,write C=64")',
    )
    arguments = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("raft-bench needs wrk (apt-get install wrk)", file=sys.stderr)
        return 1
    if arguments.compare == "etcd":
        return compare_with_etcd(arguments)
    root = Path(tempfile.mkdtemp(prefix="raftkv-bench-"))
    cluster = LocalCluster(root, arguments.node_arg, arguments.nodes)
    try:
        cluster.start()
        url = cluster.leader_url()
        # The nodes import this same install, so they run what this process runs.
        print(
            f"{arguments.nodes} raft-node processes, fsync on, loopback;"
            f" raftkv modules {raftkv.running_code()}"
        )
        put_script = root / "put.lua"
        put_script.write_text(PUT_SCRIPT)
        if arguments.breakdown:
            return print_breakdown(cluster, put_script, arguments.seconds)
        http_json(url + "/v1/kv/bench-key", "PUT", b'{"value":"0123456789abcdef"}')
        if arguments.preload_keys:
            started = time.monotonic()
            preload_raftkv(url, arguments.preload_keys, PRELOAD_VALUE_BYTES, root)
            print(
                f"preloaded {arguments.preload_keys} keys of {PRELOAD_VALUE_BYTES} bytes in "
                f"{time.monotonic() - started:.0f} s"
            )
        rows: list[tuple[str, int, dict[str, float]]] = []
        for connections in (1, 16, 64):
            rows.append(
                ("write", connections, run_wrk(url, connections, arguments.seconds, put_script))
            )
        for consistency in ("linearizable", "lease", "stale"):
            read_url = f"{url}/v1/kv/bench-key?consistency={consistency}"
            rows.append((f"read {consistency}", 64, run_wrk(read_url, 64, arguments.seconds, None)))
        rows.append(
            ("status (no consensus)", 64, run_wrk(url + "/v1/status", 64, arguments.seconds, None))
        )
        print(
            f"{'operation':<24}{'C':>4}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
            f"{'wrk cpu':>9}"
        )
        for name, connections, result in rows:
            print(
                f"{name:<24}{connections:>4}{result['rate']:>10.0f}{result['p50_ms']:>9.2f}"
                f"{result['p99_ms']:>9.2f}{result['errors']:>8.0f}"
                f"{result['wrk_cpu_percent']:>8.0f}%"
            )
        print(stall_summary(cluster.log_paths()))
        return 0
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def print_breakdown(cluster: LocalCluster, script: Path, seconds: int) -> int:
    from raftkv.cli import bench_breakdown

    alone = bench_breakdown.raw_fdatasync_rate(cluster.root)
    together = bench_breakdown.raw_fdatasync_rate(cluster.root, files=len(cluster.ids))
    print(
        "raw fdatasync rate of the data dir's file system (4 KiB written in place, as the WAL"
        f" does): alone {alone:,.0f}/s; {len(cluster.ids)} files at once {together:,.0f}/s"
        " in all"
    )
    for connections in (1, 16, 64):
        # Roles are read again for every row: a leader change (a disk stall of this machine
        # can cost one) would otherwise measure a follower as "leader" from then on.
        url = cluster.leader_url()
        nodes: dict[str, tuple[int, str]] = {}
        for node_id, process in zip(cluster.ids, cluster.processes, strict=True):
            node_url = f"http://127.0.0.1:{cluster.client_ports[node_id]}"
            role = "leader" if node_url == url else f"follower {node_id}"
            nodes[role] = (process.pid, node_url)
        result: dict[str, float] = {}

        def run(
            url: str = url, connections: int = connections, result: dict[str, float] = result
        ) -> None:
            result.update(run_wrk(url, connections, seconds, script))

        table = bench_breakdown.measure(nodes, url, run, seconds)
        led_throughout = cluster.leader_url() == url
        print(bench_breakdown.row_heading(connections, result, led_throughout))
        print(table)
    print(stall_summary(cluster.log_paths()))
    return 0


def preload_raftkv(url: str, keys: int, value_bytes: int, root: Path) -> None:
    """Write the keys preload-0 .. preload-(keys-1), `value_bytes` bytes each."""
    script = PRELOAD_SCRIPT.replace("KEYS", str(keys)).replace("VALUE", "v" * value_bytes)
    preload_in_rounds(url, keys, script, root / "preload.lua", run_wrk)


def preload_in_rounds(
    url: str,
    keys: int,
    script: str,
    path: Path,
    measure: Measure,
) -> None:
    """Run `script` (a wrk script whose keys count up from START) in 5-second rounds, each
    starting where the previous one's completed requests ended, until every key was
    written. A request still in flight at a round's end is sent again by the next round."""
    start = 0
    while start < keys:
        path.write_text(script.replace("START", str(start)))
        done = int(measure(url, 64, 5, path)["requests"])
        if done == 0:
            raise SystemExit(f"raft-bench: preloading {url} made no progress")
        start += done


def compare_with_etcd(arguments: argparse.Namespace) -> int:
    """`--compare etcd`: both clusters up at once, every row measured on each in turn."""
    from raftkv.cli import bench_etcd

    missing = bench_etcd.etcd_available()
    if missing is not None:
        print(missing, file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="raftkv-bench-"))
    cluster = LocalCluster(root, arguments.node_arg, arguments.nodes)
    etcd = bench_etcd.EtcdCluster(root, free_port, arguments.nodes)
    stalls = StallLogs(cluster.log_paths)
    try:
        cluster.start()
        etcd.start()
        raftkv_url = cluster.leader_url()
        etcd_url = etcd.leader_url()
        body = json.dumps({"value": bench_etcd.VALUE}).encode()
        http_json(f"{raftkv_url}/v1/kv/{bench_etcd.READ_KEY}", "PUT", body)
        etcd.put(etcd_url, bench_etcd.READ_KEY, bench_etcd.VALUE)
        if arguments.preload_keys:
            started = time.monotonic()
            preload_raftkv(raftkv_url, arguments.preload_keys, PRELOAD_VALUE_BYTES, root)
            bench_etcd.preload_etcd(
                etcd_url, arguments.preload_keys, PRELOAD_VALUE_BYTES, run_wrk, root
            )
            print(
                f"preloaded {arguments.preload_keys} keys of {PRELOAD_VALUE_BYTES} bytes "
                f"into each in {time.monotonic() - started:.0f} s"
            )
        results = bench_etcd.compare(
            bench_etcd.select_rows(
                bench_etcd.workloads(
                    raftkv_url,
                    etcd_url,
                    list(cluster.client_ports.values()),
                    list(etcd.client_ports.values()),
                ),
                arguments.rows,
            ),
            cluster.following_the_leader(run_wrk),
            root,
            seconds=arguments.seconds,
            repetitions=arguments.repetitions,
            processes={
                "raftkv": lambda: [process.pid for process in cluster.processes],
                "etcd": lambda: [process.pid for process in etcd.processes],
            },
            raftkv_stalls=stalls,
        )
        print(
            f"raftkv vs etcd ({_etcd_version()}), {arguments.nodes} members each, fsync on, "
            f"loopback; raftkv modules {raftkv.running_code()}; "
            f"medians of {arguments.repetitions} alternating runs of {arguments.seconds} s"
        )
        print(bench_etcd.report(results))
        print(bench_etcd.cpu_report(results))
        print(f"raftkv's {stall_summary(cluster.log_paths())}")
        print(f"raftkv's stalls by row: {stalls.by_label()}")
        return 0
    finally:
        cluster.stop()
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)


def _etcd_version() -> str:
    output = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=10)
    first = output.stdout.splitlines()[0] if output.stdout else "etcd"
    return first.replace("etcd Version: ", "etcd ")


if __name__ == "__main__":
    sys.exit(main())
