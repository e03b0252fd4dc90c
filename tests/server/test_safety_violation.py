"""A peer's message that contradicts the committed log is refused loudly, and the node
goes on; an error inside the core stops the node loudly instead of killing a task."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from raftkv.core import AppendEntries
from raftkv.errors import InvariantViolation
from tests.server.test_snapshot_install_race import (
    FOLLOWER,
    LEADER,
    close_server,
    drain_ready,
    follower_server,
    put,
)


async def forged_history(data_dir: Path) -> tuple[float, str | None, list[str]]:
    server = follower_server(data_dir)
    node = server.node
    await drain_ready(server)
    node_entries = [put(2, 2, "x", "1"), put(3, 2, "x", "2")]
    server._on_message(
        AppendEntries(
            to=FOLLOWER,
            term=2,
            leader_id=LEADER,
            prev_log_index=1,
            prev_log_term=1,
            entries=node_entries,
            leader_commit=3,
        )
    )
    await drain_ready(server)
    server._on_message(
        AppendEntries(
            to=FOLLOWER,
            term=2,
            leader_id=LEADER,
            prev_log_index=1,
            prev_log_term=1,
            entries=[put(2, 3, "x", "forged")],
            leader_commit=3,
        )
    )
    refused = server.metrics.safety_violations._value.get()
    failure = server.storage_failure
    data = [e.data.decode(errors="replace") for e in node.log.entries]
    close_server(server)
    return refused, failure, data


def test_a_message_contradicting_the_committed_log_is_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL, logger="raftkv.node"):
        refused, failure, data = asyncio.run(forged_history(tmp_path / "node-2"))
    assert refused == 1
    assert failure is None, "a peer's bad message must not stop this node"
    assert not any("forged" in text for text in data)
    assert any("SAFETY VIOLATION" in record.getMessage() for record in caplog.records)


async def broken_tick(data_dir: Path) -> str | None:
    server = follower_server(data_dir)

    def tick() -> None:
        raise InvariantViolation("a broken invariant")

    server.node.tick = tick  # type: ignore[method-assign]
    server._tasks = [asyncio.create_task(server._ticker(), name="ticker")]
    for task in server._tasks:
        task.add_done_callback(server._watch)
    for _ in range(1000):
        if server.storage_failure is not None:
            break
        await asyncio.sleep(server.options.tick_ms / 1000)
    alive = not server._tasks[0].done()
    server._stopping = True
    server._tasks[0].cancel()
    close_server(server)
    assert alive, "the ticker died (it also times out waiting requests)"
    return server.storage_failure


@pytest.mark.interpreted
def test_an_error_in_a_tick_stops_the_node_loudly(tmp_path: Path) -> None:
    assert asyncio.run(broken_tick(tmp_path / "node-2")) == "internal error in the ticker"
