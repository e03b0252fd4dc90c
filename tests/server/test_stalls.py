"""The node says when it stood still (server/stalls.py): a blocked event loop, seen by the
ticker waking late, and a slow WAL sync, each a warning from 100 ms (one line a second at
most, the next counting those left out) and a histogram (`raft_loop_stall_seconds`,
`raft_fsync_seconds`). An election lost to either used to leave nothing in the log.

The reporter on a hand-driven clock; then three real servers (memory stores, the
in-memory transport) whose loop is blocked, and whose disk is slowed, on purpose."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.server.stalls import STALL_WARN_SECONDS, WARNING_INTERVAL_SECONDS, StallReporter
from raftkv.storage.base import Stores
from raftkv.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.transport.memory import MemoryHub, MemoryTransport
from tests.server.test_health import HOST, NODE_IDS, holds, leader_of, start_server
from tests.server.test_sync_thread import put
from tests.waiting import wait_until

LOOP_WARNING = "the event loop stood still for"
SYNC_WARNING = "slow WAL sync"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _reporter() -> tuple[StallReporter, _Clock, list[float], list[float]]:
    clock = _Clock()
    stalls: list[float] = []
    syncs: list[float] = []
    return StallReporter(stalls.append, syncs.append, clock=clock), clock, stalls, syncs


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and text in record.getMessage()
    ]


def test_every_stall_is_observed_and_a_long_one_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter, _clock, stalls, syncs = _reporter()
    with caplog.at_level(logging.INFO, logger="raftkv.node"):
        reporter.loop_stalled(0.03)
        reporter.synced(0.002)
        assert stalls == [0.03] and syncs == [0.002]
        assert not _warnings(caplog, LOOP_WARNING) and not _warnings(caplog, SYNC_WARNING)
        reporter.loop_stalled(0.25)
        reporter.synced(STALL_WARN_SECONDS)
    assert _warnings(caplog, LOOP_WARNING) == [
        "the event loop stood still for 250 ms (a blocking call, the process paused, or no"
        " CPU for it): no ticks, messages or requests were handled meanwhile"
    ]
    (sync_line,) = _warnings(caplog, SYNC_WARNING)
    assert sync_line.startswith("slow WAL sync: 100 ms")


def test_at_most_one_warning_a_second_per_kind_the_next_counting_those_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter, clock, stalls, _syncs = _reporter()
    with caplog.at_level(logging.INFO, logger="raftkv.node"):
        reporter.loop_stalled(0.2)
        reporter.synced(0.3)  # another kind: its own limit
        clock.now += WARNING_INTERVAL_SECONDS / 2
        reporter.loop_stalled(0.4)
        reporter.loop_stalled(0.5)
        clock.now += WARNING_INTERVAL_SECONDS / 2
        reporter.loop_stalled(0.6)
    lines = _warnings(caplog, LOOP_WARNING)
    assert len(lines) == 2
    assert "200 ms" in lines[0] and "more since" not in lines[0]
    assert "600 ms" in lines[1] and lines[1].endswith("; 2 more since the last such warning")
    assert len(_warnings(caplog, SYNC_WARNING)) == 1
    assert stalls == [0.2, 0.4, 0.5, 0.6]  # the histogram misses none


async def _while_led(
    servers: list[RaftServer],
    body: Callable[[list[RaftServer], RaftServer], Awaitable[None]],
) -> None:
    """Start the servers, wait for a leader, run `body`; stop them whatever happens."""
    try:
        for server in servers:
            await server.start()
        await wait_until(holds(lambda: leader_of(servers) is not None), "a leader")
        leader = leader_of(servers)
        assert leader is not None
        await body(servers, leader)
    finally:
        for server in servers:
            await server.stop()


def _stall_count(server: RaftServer) -> float:
    value = server.metrics.registry.get_sample_value("raft_loop_stall_seconds_count")
    return value or 0.0


def test_a_blocked_event_loop_is_reported_by_every_node_on_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = MemoryHub()

    async def block_the_loop(servers: list[RaftServer], _leader: RaftServer) -> None:
        before = {server.id: _stall_count(server) for server in servers}
        time.sleep(0.3)  # the fault under test: a blocking call on the loop
        await wait_until(
            holds(lambda: all(_stall_count(s) > before[s.id] for s in servers)),
            "every node's ticker to count the stall",
        )

    servers = [start_server(node_id, hub, tmp_path) for node_id in NODE_IDS]
    with caplog.at_level(logging.INFO, logger="raftkv.node"):
        asyncio.run(_while_led(servers, block_the_loop))
    lines = _warnings(caplog, LOOP_WARNING)
    assert len(lines) >= len(NODE_IDS)
    # How long it stood is measured, not guessed: at least the 300 ms it was blocked, less
    # the one tick the ticker had left to wait.
    stood = [int(line.split(LOOP_WARNING)[1].split()[0]) for line in lines]
    assert max(stood) >= 280


class _SlowDisk(MemoryLogStore):
    """A log store whose syncs take `sync_seconds` once `slow` is set (in whichever thread
    syncs it, as a busy disk would)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.sync_seconds = 0.15

    def sync(self) -> None:
        if self.slow:
            time.sleep(self.sync_seconds)  # the fault under test: a slow disk
        super().sync()


@pytest.mark.interpreted  # _SlowDisk subclasses the compiled MemoryLogStore
def test_a_slow_wal_sync_is_a_warning_with_its_duration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disks = {node_id: _SlowDisk() for node_id in NODE_IDS}

    hub = MemoryHub()

    async def slow_the_leaders_disk(_servers: list[RaftServer], leader: RaftServer) -> None:
        disks[leader.id].slow = True
        await leader.requests.propose(put("k"))

    servers = [
        RaftServer(
            NodeOptions(
                node_id=node_id,
                data_dir=str(tmp_path / f"node-{node_id}"),
                listen=(HOST, 9000 + node_id),  # on the memory hub, not real ports
                client_listen=(HOST, 0),  # not listened on (listen_for_clients)
                peers={peer: (HOST, 9000 + peer) for peer in NODE_IDS if peer != node_id},
                seed=node_id,
            ),
            stores=Stores(disks[node_id], MemoryStableStore(), MemorySnapshotStore()),
            transport_factory=functools.partial(MemoryTransport, hub),
            listen_for_clients=False,
        )
        for node_id in NODE_IDS
    ]
    with caplog.at_level(logging.INFO, logger="raftkv.node"):
        asyncio.run(_while_led(servers, slow_the_leaders_disk))
    lines = _warnings(caplog, SYNC_WARNING)
    assert lines, "no slow-sync warning"
    took = int(lines[0].split("slow WAL sync: ")[1].split()[0])
    assert took >= 150
