"""A lock service on `ReplLock` (docs/embedding.md, "Batteries"): named locks that expire
unless renewed, with expiry decided by the leader and replicated.

Three `AsyncNode`s run in one event loop here, for the example's sake (normally one per
machine). Worker A, on one node, takes the lock "report" with a time to live, renews it
while it works, then stops renewing (as if its process hung). Worker B, on another node,
keeps trying: it is refused while A holds the lock, and gets it once A's lock expired,
never sooner than a ttl after A's last renewal was sent.

    .venv/bin/python examples/lock_service.py
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import tempfile
import time

from raftkv.embed import AsyncNode, ReplLock

TTL_SECONDS = 1.0
LOCK = "report"
START = time.monotonic()


def now() -> float:
    """Seconds since the example started."""
    return time.monotonic() - START


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def worker_a(locks: ReplLock) -> float:
    """Takes the lock, renews it three times, then stops; when its last renewal was sent."""
    assert await locks.acquire(LOCK, "worker-a", TTL_SECONDS)
    print(f"{now():5.2f} worker-a acquired {LOCK!r} (ttl {TTL_SECONDS} s)")
    for _ in range(3):
        await asyncio.sleep(TTL_SECONDS / 3)
        last_renewal = now()
        assert await locks.renew(LOCK, "worker-a")
    print(f"{now():5.2f} worker-a renewed it 3 times, then stops renewing")
    return last_renewal


async def worker_b(locks: ReplLock) -> float:
    """Tries every 0.1 s until it holds the lock; when it got it."""
    await asyncio.sleep(0.1)  # let worker-a go first
    refusals = 0
    while not await locks.acquire(LOCK, "worker-b", TTL_SECONDS):
        if refusals == 0:
            print(f"{now():5.2f} worker-b refused: {locks.holder(LOCK)} holds it")
        refusals += 1
        await asyncio.sleep(0.1)
    print(f"{now():5.2f} worker-b acquired {LOCK!r} after {refusals} refusals")
    return now()


async def main() -> None:
    ids = [1, 2, 3]
    ports = {node_id: free_port() for node_id in ids}
    locks = {node_id: ReplLock() for node_id in ids}
    with tempfile.TemporaryDirectory() as root:
        async with contextlib.AsyncExitStack() as running:
            nodes = {}
            for node_id in ids:
                node = AsyncNode(
                    node_id,
                    listen=("127.0.0.1", ports[node_id]),
                    data_dir=f"{root}/node{node_id}",
                    objects={"locks": locks[node_id]},
                    peers={p: ("127.0.0.1", port) for p, port in ports.items() if p != node_id},
                )
                await node.start()
                running.push_async_callback(node.stop)  # stopped on any exit
                nodes[node_id] = node

            leader = await nodes[1].wait_for_leader(timeout=10)
            a_node, b_node = [node_id for node_id in ids if node_id != leader]
            print(f"node{leader} leads; worker-a on node{a_node}, worker-b on node{b_node}")
            last_renewal, acquired = await asyncio.gather(
                worker_a(locks[a_node]), worker_b(locks[b_node])
            )
            held = acquired - last_renewal
            print(f"worker-b got the lock {held:.2f} s after worker-a's last renewal was sent")
            assert held >= TTL_SECONDS  # ReplLock's guarantee (docs/embedding.md)
            # Every replica agrees on the holder (a linearizable read on each).
            for node_id, node in nodes.items():
                holder = await node.read(functools.partial(locks[node_id].holder, LOCK))
                print(f"node{node_id}: {LOCK!r} held by {holder}")
            assert await locks[b_node].release(LOCK, "worker-b")
    print("all nodes stopped")


if __name__ == "__main__":
    asyncio.run(main())
