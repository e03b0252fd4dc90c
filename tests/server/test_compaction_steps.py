"""A taken snapshot's log is dropped a step per Ready pass (`COMPACT_STEP_ENTRIES`), from the
core's log and the WAL alike, until only the trailing entries are left: all at once, the
entries behind a large state's snapshot were freed on the loop in one go (6-32 ms without a
request served, on every node at every snapshot)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.server import snapshots
from raftkv.server.options import SYNC_THREAD_MIN_ENTRIES_DEFAULT
from raftkv.server.runtime import RaftServer
from raftkv.server.snapshots import SnapshotTaker
from tests.server.test_sync_thread import BATCH, CountingExecutor, leader_of, put, run_cluster
from tests.waiting import wait_until

STEP = 7
TRAILING = 10


@pytest.mark.interpreted  # patches server/snapshots.py, which setup.py compiles
def test_the_log_behind_a_snapshot_is_dropped_a_step_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "COMPACT_STEP_ENTRIES", STEP)
    steps: list[int] = []  # entries each pass of the Ready loop compacted, on any node
    original = SnapshotTaker.maybe_take

    async def maybe_take(self: SnapshotTaker) -> None:
        before = self.server.node.log.snapshot_index
        await original(self)
        steps.append(self.server.node.log.snapshot_index - before)

    monkeypatch.setattr(SnapshotTaker, "maybe_take", maybe_take)

    async def body(servers: dict[int, RaftServer], executors: dict[int, CountingExecutor]) -> None:
        leader = await leader_of(servers)
        for round_number in range(6):
            keys = [f"r{round_number}-{n}" for n in range(BATCH)]
            await asyncio.gather(*(leader.requests.propose(put(key)) for key in keys))

        def compacted_to_the_trailing_entries() -> bool:
            return all(
                server.snapshots.last_index > 0
                and server.node.log.snapshot_index
                == server.snapshots.last_index - TRAILING
                == server.storage.first_index() - 1
                for server in servers.values()
            )

        await wait_until(compacted_to_the_trailing_entries, "logs compacted behind snapshots")
        assert max(steps) == STEP  # never more at once
        assert sum(step > 0 for step in steps) >= 3 * 5  # several steps, on every node

    run_cluster(
        tmp_path,
        SYNC_THREAD_MIN_ENTRIES_DEFAULT,
        body,
        snapshot_entries=50,
        snapshot_trailing_entries=TRAILING,
    )
