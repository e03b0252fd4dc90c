"""Ranges on real processes (SPEC §6, "Ranges"): pages followed across a leader change, a
delete range applied once under retries, both client libraries and `raft-client`."""

from __future__ import annotations

import asyncio
import json

from raftkv.client import AsyncRaftClient, RaftClient
from tests.process.cluster import ProcessCluster, wait_for

KEYS = [f"r/{number:02d}" for number in range(25)]


def addresses(cluster: ProcessCluster) -> dict[int, tuple[str, int]]:
    return {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}


def test_ranges_across_a_leader_change_and_delete_range_once(cluster: ProcessCluster) -> None:
    with RaftClient(addresses(cluster), timeout=30) as client:
        for key in [*KEYS, "s/x"]:
            client.put(key, key.upper())
        first = client.range("r/", limit=10)
        assert [kv.key for kv in first.kvs] == KEYS[:10]
        assert (first.count, first.more) == (25, True)
        assert first.kvs[0].value == "R/00" and first.kvs[0].version == 1

        old_leader = cluster.wait_leader()
        cluster.kill(old_leader)
        wait_for(lambda: cluster.leader() not in (None, old_leader), 30, "a new leader")

        # The token names a key, not a node: the next pages come from the new leader.
        seen = [kv.key for kv in first.kvs]
        after = first.next
        while after is not None:
            page = client.range("r/", limit=10, after=after)
            seen += [kv.key for kv in page.kvs]
            after = page.next if page.more else None
        assert seen == KEYS

        async def every_key_async() -> list[str]:
            live = {n: a for n, a in addresses(cluster).items() if n != old_leader}
            async with AsyncRaftClient(live, timeout=30) as async_client:
                return [
                    kv.key
                    async for page in async_client.range_pages(start="r/05", end="s", limit=7)
                    for kv in page.kvs
                ]

        assert asyncio.run(every_key_async()) == KEYS[5:]

        # One delete range, sent twice with one session: applied once, answered alike.
        leader = cluster.wait_leader()
        query = "/v1/kv?prefix=r%2F&client_id=ranges-test&seq=1"
        status, body = cluster.request(leader, "DELETE", query)
        assert (status, body["deleted"]) == (200, 25), body
        client.put("r/new", "N")
        status, retried = cluster.request(leader, "DELETE", query)
        # The first answer's count (its index is the retry's entry, as for every write).
        assert (status, retried["deleted"]) == (200, 25)
        assert [kv.key for kv in client.range("r/").kvs] == ["r/new"]
        assert client.delete_range(start="s/", end="s0").deleted == 1

    # raft-client over the same cluster (the killed node's address is tried and skipped).
    listed = cluster.client("get", "--prefix", "r/", "--timeout", "30")
    assert (listed.returncode, listed.stdout) == (0, "r/new=N\n"), listed.stderr
    deleted = cluster.client("del", "--prefix", "r/", "--json", "--timeout", "30")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deleted"] == 1
    empty = cluster.client("get", "--prefix", "r/", "--keys-only", "--timeout", "30")
    assert (empty.returncode, empty.stdout) == (0, ""), empty.stderr
