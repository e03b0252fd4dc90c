"""Sequential calls of a replicated method through the embedding API, from the leader and
from a follower of a 3-node cluster on loopback (docs/embedding.md, "Performance").

    .venv/bin/python bench/bench_embed.py [--seconds S] [--runs R]

Each node is a blocking `Node` in its own process, with default timing and durable data
dirs (fsync on every Ready) in a temporary directory. Node 1, in this process, calls
`ReplCounter.inc()` in a loop, one call at a time: first as the leader, then (after
`transfer_leadership(2)`) as a follower, whose calls are forwarded to the leader and wait
for their entry to apply locally. Prints the median calls/s over R runs of S seconds each.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import tempfile
import time
from multiprocessing.synchronize import Event

from raftkv.embed import Node, ReplCounter

IDS = (1, 2, 3)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make(node_id: int, ports: dict[int, int], root: str, counter: ReplCounter) -> Node:
    return Node(
        node_id,
        listen=("127.0.0.1", ports[node_id]),
        data_dir=f"{root}/node{node_id}",
        objects={"counter": counter},
        peers={peer: ("127.0.0.1", port) for peer, port in ports.items() if peer != node_id},
    )


def serve(node_id: int, ports: dict[int, int], root: str, stop: Event) -> None:
    with make(node_id, ports, root, ReplCounter()):
        stop.wait()


def rate(counter: ReplCounter, seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        counter.inc()
        calls += 1
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    ports = {node_id: free_port() for node_id in IDS}
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with tempfile.TemporaryDirectory() as root:
        others = [context.Process(target=serve, args=(n, ports, root, stop)) for n in IDS[1:]]
        for process in others:
            process.start()
        counter = ReplCounter()
        try:
            with make(1, ports, root, counter) as node:
                node.wait_for_leader(30)
                results: dict[str, list[float]] = {"leader": [], "follower": []}
                for _ in range(arguments.runs):
                    for role, leader in (("leader", 1), ("follower", 2)):
                        node.transfer_leadership(leader)
                        counter.inc()  # warm up: the first call after a transfer
                        results[role].append(rate(counter, arguments.seconds))
        finally:
            stop.set()
            for process in others:
                process.join(30)
    for role, rates in results.items():
        runs = ", ".join(f"{value:,.0f}" for value in rates)
        print(f"from the {role}: median {statistics.median(rates):,.0f} calls/s ({runs})")


if __name__ == "__main__":
    main()
