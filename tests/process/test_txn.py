"""Transactions on real processes (SPEC §6, "Transactions"): both client libraries and
`raft-client txn`, and every replica agreeing afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

from raftkv.client import AsyncRaftClient, RaftClient
from tests.process.cluster import BIN, ProcessCluster


def test_transactions_through_both_libraries_and_raft_client(cluster: ProcessCluster) -> None:
    addresses = {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}
    with RaftClient(addresses, timeout=30) as client:
        client.put("a", "1")
        result = client.txn(
            compare=[{"key": "a", "target": "value", "op": "==", "value": "1"}],
            success=[{"op": "put", "key": "b", "value": "2"}, {"op": "get", "key": "a"}],
            failure=[{"op": "range", "prefix": "a"}],
        )
        assert result.succeeded
        assert result.results[1]["kv"]["value"] == "1"
        assert client.get("b").value == "2"

    async def failing() -> bool:
        async with AsyncRaftClient(addresses, timeout=30) as async_client:
            answer = await async_client.txn(
                compare=[{"key": "b", "target": "version", "op": ">", "value": 5}],
                success=[{"op": "delete", "key": "b"}],
                failure=[{"op": "put", "key": "c", "value": "3"}],
            )
            return answer.succeeded

    assert asyncio.run(failing()) is False

    transaction = {
        "compare": [{"key": "c", "target": "exists", "op": "==", "value": True}],
        "success": [{"op": "range", "start": "a", "end": "c", "keys_only": True}],
    }
    completed = subprocess.run(
        [str(BIN / "raft-client"), "txn", "--timeout", "30"],
        input=json.dumps(transaction),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, RAFT_CLUSTER=cluster.cluster_argument()),
    )
    assert completed.returncode == 0, completed.stderr
    first, answer = completed.stdout.splitlines()
    assert first.startswith("OK succeeded=true leader=")
    assert [kv["key"] for kv in json.loads(answer)["kvs"]] == ["a", "b"]
    checked = cluster.client("check", "--timeout", "30")
    assert checked.returncode == 0, checked.stdout + checked.stderr
