"""A membership change whose entry is replaced by a later leader's is reported lost, not
done (found by the whole-node simulator: `DELETE /v1/members/2` answered 200 although the
removal at index 98 was overwritten, and the operator retired a node that was still a
member). Driven through the server's own Ready handling; the network is recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.core import AppendEntries, AppendEntriesResponse, RequestVoteResponse
from raftkv.server.requests import ProposalLost
from tests.server.test_snapshot_install_race import (
    FOLLOWER,
    LEADER,
    close_server,
    drain_ready,
    follower_server,
    put,
    record_messages,
)


async def a_change_overwritten_by_the_next_leader(data_dir: Path) -> object:
    server = follower_server(data_dir)  # node 2, voters {1, 2}
    record_messages(server)
    node = server.node
    await drain_ready(server)
    node.campaign(pre_vote=False)
    await drain_ready(server)
    node.step(RequestVoteResponse(to=FOLLOWER, term=2, from_id=LEADER, granted=True))
    await drain_ready(server)
    assert node.role == "leader"
    noop = node.log.last_index
    node.step(
        AppendEntriesResponse(to=FOLLOWER, term=2, from_id=LEADER, success=True, match_index=noop)
    )
    await drain_ready(server)
    assert node.log.committed == noop
    change = asyncio.ensure_future(server.members.add(3, "127.0.0.1:9003"))
    for _ in range(5):
        await asyncio.sleep(0)
    await drain_ready(server)
    index = noop + 1
    assert node.log.term(index) == 2, "the change was appended"
    # Node 1 wins term 3 without it and commits its own entry at that index.
    node.step(
        AppendEntries(
            to=FOLLOWER,
            term=3,
            leader_id=LEADER,
            prev_log_index=noop,
            prev_log_term=2,
            entries=[put(index, 3, "x", "the next leader's")],
            leader_commit=index,
        )
    )
    await drain_ready(server)
    try:
        async with asyncio.timeout(5):
            return await change
    except ProposalLost as error:
        return error
    finally:
        close_server(server)


def test_a_membership_change_replaced_by_the_next_leader_is_reported_lost(
    tmp_path: Path,
) -> None:
    outcome = asyncio.run(a_change_overwritten_by_the_next_leader(tmp_path / "node-2"))
    assert isinstance(outcome, ProposalLost), f"reported as done: {outcome}"
    with pytest.raises(ProposalLost):
        raise outcome
