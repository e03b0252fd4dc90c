"""A user's own replicated state machine through the Python API.

Three RaftServer instances (one per node, here all in one process and one event loop for the
example's sake; normally one per machine) replicate a bank of named counters. The state
machine implements the StateMachine seam: `apply`, `snapshot`, `restore`, `applied_hash`.

    .venv/bin/python examples/replicated_counter.py
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import tempfile

from raftkv.server import NodeOptions, RaftServer


class Counters:
    """Deterministic: the same commands in the same order give the same state everywhere."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._hash = hashlib.blake2b(digest_size=16)

    def apply(self, index: int, command: bytes) -> int:
        self._hash.update(index.to_bytes(8, "big") + command)
        request = json.loads(command)
        name, amount = request["name"], int(request["add"])
        self.counts[name] = self.counts.get(name, 0) + amount
        return self.counts[name]

    def snapshot(self) -> bytes:
        return json.dumps({"counts": self.counts, "hash": self._hash.hexdigest()}).encode()

    def restore(self, data: bytes) -> None:
        state = json.loads(data)
        self.counts = state["counts"]
        self._hash = hashlib.blake2b(state["hash"].encode(), digest_size=16)

    @property
    def applied_hash(self) -> str:
        return self._hash.hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def main() -> None:
    ids = [1, 2, 3]
    peer_ports = {n: free_port() for n in ids}
    with tempfile.TemporaryDirectory() as root:
        servers = {
            n: RaftServer(
                NodeOptions(
                    node_id=n,
                    data_dir=f"{root}/node-{n}",
                    listen=("127.0.0.1", peer_ports[n]),
                    client_listen=("127.0.0.1", free_port()),
                    peers={p: ("127.0.0.1", peer_ports[p]) for p in ids if p != n},
                    seed=n,
                ),
                state_machine=Counters(),
            )
            for n in ids
        }
        for server in servers.values():
            await server.start()
        try:
            while not any(s.node.role == "leader" for s in servers.values()):
                await asyncio.sleep(0.05)
            leader = next(s for s in servers.values() if s.node.role == "leader")
            for amount in (5, 10, -3):
                command = json.dumps({"name": "apples", "add": amount}).encode()
                total, index = await leader.requests.propose(command)
                print(f"node{leader.id} applied add {amount:+d} at index {index}: apples = {total}")
            # Followers apply the same entries; wait until they have.
            target = leader.node.log.committed
            while any(s.node.log.applied < target for s in servers.values()):
                await asyncio.sleep(0.05)
            for server in servers.values():
                machine = server.state_machine
                assert isinstance(machine, Counters)
                print(f"node{server.id}: {machine.counts} hash {machine.applied_hash[:12]}")
        finally:
            for server in servers.values():
                await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
