"""Benchmark of watches (not a test): the CPU a node spends serving many watchers while writes
flow, and whether every event reaches every watcher (SPEC §6, "Watches").

Starts a local 3-node durable cluster (raft-bench's), opens WATCHERS watches of one prefix on
a follower (from reader processes of their own, each connection counting the `put` lines it
receives), and writes RATE puts a second of that prefix to the leader for SECONDS. It does
the same without watchers first, so the difference is what the watchers cost. The node's CPU
comes from /proc (user + system, % of one core):

    .venv/bin/python bench/bench_watch.py [--watchers 1000] [--rate 1000] [--seconds 10]
    .venv/bin/python bench/bench_watch.py --wrk-connections 64    # writes as fast as wrk can

One run (2 shared cores, load average about 6 from other work; wrk over 64 connections): with
1,000 watchers the follower used 43% of a core while the cluster applied 1,136 writes/s, and
every watcher received all 11,495 events (none cut off); without watchers, 12% at 2,102
writes/s. The readers (two Python processes) compete for the same two cores, which is why
the write rate halves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

from raftkv.cli.bench import LocalCluster, http_json, run_wrk

PREFIX = "bench/"
READER_PROCESSES = 2
# One client address holds at most 1,000 connections to a node (SPEC §6): the watchers
# come from several loopback addresses.
SOURCE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
DELIVERY_DEADLINE_SECONDS = 60.0
WRITE_CONCURRENCY_MAX = 64


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Counter(asyncio.Protocol):
    """One watch connection: counts the `put` lines it receives (whole lines only)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.puts = 0
        self._pending = b""
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        cast(asyncio.WriteTransport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        whole, _, self._pending = (self._pending + data).rpartition(b"\n")
        self.puts += whole.count(b'{"type":"put"')

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def read_watches(port: int, count: int, first: int, pipe: Connection) -> None:
    """A reader process: `count` watches of PREFIX on the node at `port`; answers each
    "count" asked on `pipe` with the per-watch numbers of puts received, until "stop"."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        request = f"GET /v1/watch?prefix={PREFIX} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        counters = []
        for number in range(first, first + count):
            source = SOURCE_ADDRESSES[number % len(SOURCE_ADDRESSES)]
            _, counter = await loop.create_connection(
                lambda: _Counter(request), "127.0.0.1", port, local_addr=(source, 0)
            )
            counters.append(counter)
        pipe.send("connected")
        while True:
            asked = await loop.run_in_executor(None, pipe.recv)
            if asked == "stop":
                return
            pipe.send([-1 if counter.lost else counter.puts for counter in counters])

    uvloop.run(main())


def scrape(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for match in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
        total += float(match.group(1))
    return total


async def write_paced(
    nodes: dict[int, tuple[str, int]], rate: int, seconds: float, tag: str
) -> int:
    """PUT `rate` keys a second of PREFIX for `seconds` (through the client library, which
    follows the leader); the number acknowledged."""
    from raftkv.client import AsyncRaftClient
    from raftkv.errors import ClientError

    acknowledged = 0
    limit = asyncio.Semaphore(WRITE_CONCURRENCY_MAX)

    async def put(client: AsyncRaftClient, number: int) -> None:
        nonlocal acknowledged
        async with limit:
            try:
                await client.put(f"{PREFIX}{tag}-{number}", f"value-{number}")
            except ClientError:
                return
            acknowledged += 1

    loop = asyncio.get_running_loop()
    async with AsyncRaftClient(nodes, timeout=30) as client:
        started = loop.time()
        tasks = []
        for number in range(int(rate * seconds)):
            delay = started + number / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(put(client, number)))
        await asyncio.gather(*tasks)
    return acknowledged


WRK_PUT_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/PREFIX" .. "TAG-" .. counter,
                    {["Content-Type"] = "application/json"}, '{"value":"0123456789abcdef"}')
end
"""


def write_with_wrk(leader: str, connections: int, seconds: float, tag: str, root: Path) -> int:
    """As many PUTs of new keys as `connections` kept-alive connections of wrk get through;
    the number applied (the keys of the tag: each applied put made one)."""
    script = root / f"{tag}.lua"
    script.write_text(WRK_PUT_SCRIPT.replace("PREFIX", PREFIX).replace("TAG", tag))
    run_wrk(leader, connections, seconds, script)
    page = http_json(f"{leader}/v1/kv?prefix={PREFIX}{tag}-&keys_only=true&limit=1")
    assert isinstance(page, dict)
    return int(page["count"])


def measure(
    cluster: LocalCluster,
    follower: int,
    leader: str,
    arguments: argparse.Namespace,
    tag: str,
    root: Path,
) -> tuple[float, float, int, float]:
    """(follower CPU %, leader CPU %, writes acknowledged, seconds taken) over one write
    run: paced at `--rate` through the client library, or as fast as wrk gets them in."""
    rate, seconds = arguments.rate, arguments.seconds
    follower_pid = cluster.processes[cluster.ids.index(follower)].pid
    leader_id = next(n for n in cluster.ids if leader.endswith(str(cluster.client_ports[n])))
    leader_pid = cluster.processes[cluster.ids.index(leader_id)].pid
    before = cpu_seconds(follower_pid), cpu_seconds(leader_pid), time.monotonic()
    nodes = {n: ("127.0.0.1", port) for n, port in cluster.client_ports.items()}
    if arguments.wrk_connections:
        acknowledged = write_with_wrk(leader, arguments.wrk_connections, seconds, tag, root)
    else:
        acknowledged = asyncio.run(write_paced(nodes, rate, seconds, tag))
    elapsed = time.monotonic() - before[2]
    follower_cpu = (cpu_seconds(follower_pid) - before[0]) / elapsed * 100
    leader_cpu = (cpu_seconds(leader_pid) - before[1]) / elapsed * 100
    return follower_cpu, leader_cpu, acknowledged, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--wrk-connections",
        type=int,
        default=0,
        metavar="C",
        help="write with wrk over C connections, as fast as they go, instead of paced",
    )
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="raftkv-bench-watch-"))
    cluster = LocalCluster(root, [])
    readers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        cluster.start()
        leader = cluster.leader_url()
        follower = next(n for n in cluster.ids if not leader.endswith(str(cluster.client_ports[n])))
        follower_url = f"http://127.0.0.1:{cluster.client_ports[follower]}"
        http_json(leader + "/v1/kv/warm-up", "PUT", b'{"value":"x"}')
        idle = measure(cluster, follower, leader, arguments, "idle", root)
        context = multiprocessing.get_context("fork")
        share = -(-arguments.watchers // READER_PROCESSES)
        for first in range(0, arguments.watchers, share):
            ours, theirs = context.Pipe()
            count = min(share, arguments.watchers - first)
            process = context.Process(
                target=read_watches, args=(cluster.client_ports[follower], count, first, theirs)
            )
            process.start()
            readers.append((process, ours))
        for _, pipe in readers:
            if pipe.recv() != "connected":
                raise SystemExit("a reader did not connect")
        deadline = time.monotonic() + 30
        while scrape(follower_url, "raft_watchers") < arguments.watchers:
            if time.monotonic() > deadline:
                raise SystemExit("the follower did not take every watcher")
            time.sleep(0.1)
        watched = measure(cluster, follower, leader, arguments, "watched", root)
        acknowledged = watched[2]
        deadline = time.monotonic() + DELIVERY_DEADLINE_SECONDS
        while True:
            counts: list[int] = []
            for _, pipe in readers:
                pipe.send("count")
                counts += pipe.recv()
            if min(counts) >= acknowledged or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cut_offs = scrape(follower_url, "raft_watch_cut_offs_total")
        sent = scrape(follower_url, "raft_watch_events_sent_total")
        complete = sum(1 for count in counts if count == acknowledged)
        writes = (
            f"wrk over {arguments.wrk_connections} connections"
            if arguments.wrk_connections
            else f"{arguments.rate} writes/s"
        )
        print(f"{arguments.watchers} watchers of one prefix on a follower, {writes}"
              f" for {arguments.seconds:g} s (machine: {os.cpu_count()} cores, shared with"
              " the readers and writers)")  # fmt: skip
        for name, run in (("without watchers", idle), ("with watchers", watched)):
            print(f"  {name + ':':<18}follower CPU {run[0]:.0f}%, leader CPU {run[1]:.0f}%,"
                  f" {run[2]} writes acknowledged in {run[3]:.1f} s"
                  f" ({run[2] / run[3]:.0f}/s)")  # fmt: skip
        print(f"  delivered: {complete} of {len(counts)} watchers got all {acknowledged} events"
              f" (min {min(counts)}, max {max(counts)}); events sent {sent:.0f};"
              f" cut off {cut_offs:.0f}")  # fmt: skip
        return 0 if complete == len(counts) and cut_offs == 0 else 1
    finally:
        for process, pipe in readers:
            with contextlib.suppress(OSError):
                pipe.send("stop")
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
