"""Your own replicated object through the embedding API (docs/embedding.md).

Three blocking `Node`s replicate a bank of named counters; here all three run in one
process for the example's sake (normally one per machine, each with its own object).
Calls are made on the followers: they are forwarded to the leader, applied on every replica
in log order, and each caller gets its own replica's result, or the exception the method
raised there.

    .venv/bin/python examples/replicated_counter.py
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import tempfile

from raftkv.embed import Node, replicated


class Counters:
    """Deterministic: the same calls in the same order give the same state everywhere."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @replicated
    def add(self, name: str, amount: int) -> int:
        """Add `amount` to counter `name`; its new value. Never below zero: raises instead,
        and then changes nothing (on every replica)."""
        total = self.counts.get(name, 0) + amount
        if total < 0:
            raise ValueError(f"{name} cannot go below zero (it would be {total})")
        self.counts[name] = total
        return total

    def get(self, name: str) -> int:
        """Not replicated: a read of this replica."""
        return self.counts.get(name, 0)

    def all(self) -> dict[str, int]:
        return dict(self.counts)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    ids = [1, 2, 3]
    ports = {node_id: free_port() for node_id in ids}
    counters = {node_id: Counters() for node_id in ids}
    with tempfile.TemporaryDirectory() as root, contextlib.ExitStack() as running:
        nodes: dict[int, Node] = {}
        for node_id in ids:
            node = Node(
                node_id,
                listen=("127.0.0.1", ports[node_id]),
                data_dir=f"{root}/node{node_id}",
                objects={"counters": counters[node_id]},
                peers={p: ("127.0.0.1", port) for p, port in ports.items() if p != node_id},
            )
            nodes[node_id] = running.enter_context(node)  # started; stopped on any exit

        leader = nodes[1].wait_for_leader(timeout=10)
        first, second = [node_id for node_id in ids if node_id != leader]
        print(f"node{leader} leads; calling from followers node{first} and node{second}")

        for caller, amount in [(first, 5), (second, 10), (first, -3)]:
            total = counters[caller].add("apples", amount)
            print(f"node{caller}: add({amount:+d}) -> apples = {total}")

        try:
            counters[second].add("apples", -100)
        except ValueError as error:  # the exception the method raised on node{second}
            print(f"node{second}: add(-100) raised ValueError: {error}")

        # A linearizable read sees every call acknowledged before it began.
        apples = nodes[first].read(lambda: counters[first].get("apples"))
        print(f"node{first}: linearizable read -> apples = {apples}")
        assert apples == 12

        # Every replica applied the same calls in the same order: the same state (and the
        # same digest of it, to compare at a glance).
        for node_id, counter in counters.items():
            counts = nodes[node_id].read(counter.all)
            digest = hashlib.sha256(repr(sorted(counts.items())).encode()).hexdigest()
            print(f"node{node_id}: {counts} hash {digest[:12]}")
    print("all nodes stopped")


if __name__ == "__main__":
    main()
