"""`GET /v1/snapshot` on real servers (memory stores and transport): the leader's backup
holds every acknowledged write; a follower redirects; the state machine's kind is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from raftkv.embed.machine import ObjectStateMachine
from raftkv.kv import KVStore
from raftkv.server.backup import BackupBusy, BackupMaker, state_machine_kind
from raftkv.server.http_server import Request
from raftkv.server.runtime import RaftServer
from raftkv.storage.backup_file import BACKUP_CONTENT_TYPE, decode_backup
from tests.server.test_memory_stores import NODE_IDS, MemoryNode, leader_of, put, run_cluster
from tests.waiting import wait_until

SNAPSHOT_REQUEST = Request("GET", "/v1/snapshot", {}, b"", True)


def test_the_leaders_backup_holds_every_acknowledged_write_and_a_follower_redirects(
    tmp_path: Path,
) -> None:
    nodes = [MemoryNode(node_id) for node_id in NODE_IDS]

    async def back_up(servers: list[RaftServer]) -> None:
        await wait_until(lambda: leader_of(servers) is not None, "a leader")
        leader = leader_of(servers)
        assert leader is not None and leader.api is not None
        indexes = []
        for n in range(20):
            status, answer = await put(leader, f"k{n}", f"v{n}")
            assert status == 200, answer
            indexes.append(answer["index"])
        # Asked at once: the writes are acknowledged, not necessarily applied elsewhere.
        response = await leader.api.handle(SNAPSHOT_REQUEST)
        assert (response.status, response.content_type) == (200, BACKUP_CONTENT_TYPE)
        backup = decode_backup(response.body)
        header = backup.header
        assert header.index >= max(i for i in indexes if isinstance(i, int))
        assert header.term == leader.node.term
        assert header.voters == [1, 2, 3] and header.learners == []
        assert header.cluster_id == leader.cluster_id
        assert header.state_machine == "kv"
        restored = KVStore()
        restored.restore(backup.payload)
        assert all(restored.get(f"k{n}") == f"v{n}" for n in range(20))

        follower = next(server for server in servers if server is not leader)
        assert follower.api is not None
        response = await follower.api.handle(SNAPSHOT_REQUEST)
        answer = json.loads(response.body)
        assert (response.status, answer["error"], answer["leader_id"]) == (
            421,
            "not_leader",
            leader.id,
        )

    asyncio.run(run_cluster(nodes, tmp_path, back_up))


class CustomMachine:
    pass


def test_the_state_machine_kind() -> None:
    assert state_machine_kind(KVStore()) == "kv"
    assert state_machine_kind(ObjectStateMachine({})) == "objects"
    assert state_machine_kind(CustomMachine()) == f"{__name__}.CustomMachine"


class StalledBarrier:
    """A read barrier that never completes: the first backup waits in it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def read_index(self) -> int:
        self.entered.set()
        await asyncio.Event().wait()
        return 0

    async def wait_applied(self, index: int) -> None:
        return None


class LeaderHost:
    """The part of a leader `BackupMaker` reads before the barrier."""

    def __init__(self) -> None:
        self.requests = StalledBarrier()
        self.storage_failure = None
        self.node = type("Node", (), {"role": "leader", "leader_id": 1})()


def test_one_backup_at_a_time() -> None:
    async def two_at_once() -> None:
        host = LeaderHost()
        maker = BackupMaker(host)  # type: ignore[arg-type]
        first = asyncio.create_task(maker.make())
        await host.requests.entered.wait()
        with pytest.raises(BackupBusy):
            await maker.make()
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        # Done (here: cancelled), the next one may start.
        second = asyncio.create_task(maker.make())
        await wait_until(lambda: not second.done() and maker._busy, "the next backup started")
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second

    asyncio.run(two_at_once())
