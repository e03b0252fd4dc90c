"""Real processes: concurrent clients doing put/get/cas/del on 5 keys while the leader is
SIGKILLed and restarted again and again; the recorded history must be linearizable
(checked by raftkv.check, Wing-Gong/Lowe search per key)."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

from raftkv.chaos.workload import perform
from raftkv.check import HistoryRecorder, check_history
from raftkv.check.history import OperationKind
from raftkv.client import AsyncRaftClient
from tests.process.cluster import ProcessCluster

KEYS = [f"k{n}" for n in range(5)]
KINDS: list[OperationKind] = ["get", "put", "cas", "del"]
CLIENTS = 8
LEADER_KILLS = 3


async def client_loop(
    name: str,
    client: AsyncRaftClient,
    recorder: HistoryRecorder,
    rng: random.Random,
    stop: asyncio.Event,
    progress: asyncio.Event,
) -> None:
    """One client, a call at a time, each recorded as raft-chaos's clients record theirs."""
    counter = 0
    while not stop.is_set():
        progress.set()
        key = rng.choice(KEYS)
        kind = rng.choices(KINDS, weights=[4, 4, 2, 1])[0]
        counter += 1
        expected = f"{rng.choice(['c0', 'c1', 'c2', 'c3'])}-{rng.randrange(1, 4)}"
        await perform(client, recorder, name, kind, key, f"{name}-{counter}", expected)


async def operations_recorded(
    recorder: HistoryRecorder, progress: asyncio.Event, more: int
) -> None:
    """Wait (with a deadline) until the clients have issued `more` further operations."""
    target = len(recorder.history().operations) + more
    async with asyncio.timeout(60):
        while len(recorder.history().operations) < target:
            progress.clear()
            await progress.wait()  # set by the clients after each operation


async def kill_leaders(
    cluster: ProcessCluster, recorder: HistoryRecorder, progress: asyncio.Event, stop: asyncio.Event
) -> None:
    for _ in range(LEADER_KILLS):
        await operations_recorded(recorder, progress, 150)  # work against this leader for a while
        leader = await asyncio.to_thread(cluster.wait_leader)
        await asyncio.to_thread(cluster.kill, leader, signal.SIGKILL)
        others = [n for n in cluster.nodes if n != leader]
        await asyncio.to_thread(cluster.wait_leader, 20, others)
        await asyncio.to_thread(cluster.start, leader, bootstrap=False)
    await operations_recorded(recorder, progress, 150)
    stop.set()


def test_history_with_leader_crashes_is_linearizable(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    recorder = HistoryRecorder()
    addresses = {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}

    async def run() -> None:
        stop = asyncio.Event()
        progress = asyncio.Event()
        async with AsyncRaftClient(addresses, timeout=3) as client:
            clients = [
                client_loop(f"c{n}", client, recorder, random.Random(n), stop, progress)
                for n in range(CLIENTS)
            ]
            await asyncio.gather(kill_leaders(cluster, recorder, progress, stop), *clients)

    asyncio.run(run())
    history = recorder.history()
    recorder.dump(tmp_path / "history.jsonl")
    operations = list(history.operations)
    assert len(operations) > 200
    assert sum(1 for o in operations if o.status == "ok" and o.op != "get") > 50
    result = check_history(operations, time_budget_seconds=120)
    assert result.ok is True, result.explain()


def test_retry_of_the_same_request_on_a_new_leader_applies_once(cluster: ProcessCluster) -> None:
    """Thesis §6.3: a cas sent to the old leader just before it dies and retried on the new
    leader with the same (client_id, seq) takes effect once and answers the same."""
    cluster.put_until_ok("x", "a")
    old_leader = cluster.wait_leader()
    request = {"value": "b", "if_value": "a", "client_id": "retrying-client", "seq": 1}
    code, first = cluster.request(old_leader, "PUT", "/v1/kv/x", request)
    assert code == 200 and first["ok"]
    cluster.kill(old_leader, signal.SIGKILL)
    new_leader = cluster.wait_leader(among=[n for n in cluster.nodes if n != old_leader])
    code, retry = cluster.request(new_leader, "PUT", "/v1/kv/x", request)
    # Applied again, the cas would fail (x is already "b"); the session answers "ok" instead.
    assert code == 200 and retry["ok"], retry
    code, body = cluster.request(new_leader, "GET", "/v1/kv/x")
    assert body["value"] == "b"
    # Without a session the same cas is applied again, and fails: the control experiment.
    code, body = cluster.request(new_leader, "PUT", "/v1/kv/x", {"value": "b", "if_value": "a"})
    assert code == 409 and body["error"] == "cas_failed"
