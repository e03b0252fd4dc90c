"""The learner-promotion task (review defect 8): it outlives every refusal a leader can
answer with, and promotes only a learner that is caught up and alive. Driven in-process
on a single-voter leader with one learner; only the network is replaced by a recorder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.core import AppendEntriesResponse, Membership
from raftkv.server import members
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from tests.server.test_snapshot_install_race import close_server, drain_ready, record_messages

LEADER, LEARNER = 1, 2


def single_voter_with_a_learner(data_dir: Path) -> RaftServer:
    options = NodeOptions(
        node_id=LEADER,
        data_dir=str(data_dir),
        listen=("127.0.0.1", 1),
        client_listen=("127.0.0.1", 2),
    )
    server = RaftServer(options)
    server._open_storage()
    server._build_node()
    record_messages(server)
    server.node.bootstrap(Membership(voters=frozenset({LEADER}), learners=frozenset({LEARNER})))
    return server


def learner_answers(server: RaftServer) -> None:
    node = server.node
    node.step(
        AppendEntriesResponse(
            to=LEADER, term=node.term, from_id=LEARNER, success=True, match_index=1
        )
    )


async def promote_through_a_refusal(data_dir: Path) -> tuple[bool, Membership]:
    server = single_voter_with_a_learner(data_dir)
    node = server.node
    await drain_ready(server)
    node.campaign(pre_vote=False)  # one voter: leader at once, its no-op not yet durable
    learner_answers(server)
    # The first attempt is refused: no entry of this term is committed yet.
    task = asyncio.create_task(server.members.promote_caught_up_learners())
    for _ in range(20):
        await asyncio.sleep(0)
    refused_alive = not task.done()
    await drain_ready(server)  # the no-op commits
    for _ in range(200):
        if LEARNER in node.membership.voters:
            break
        await asyncio.sleep(0)
    task.cancel()
    membership = node.membership
    close_server(server)
    return refused_alive, membership


def test_the_promotion_task_survives_a_refusal_and_promotes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members, "PROMOTION_CHECK_SECONDS", 0)
    alive, membership = asyncio.run(promote_through_a_refusal(tmp_path / "node-1"))
    assert alive, "the promotion task died on a refusal"
    assert LEARNER in membership.voters, f"the learner was never promoted: {membership}"


async def promote_a_silent_learner(data_dir: Path) -> tuple[int | None, int | None]:
    server = single_voter_with_a_learner(data_dir)
    node = server.node
    await drain_ready(server)
    node.campaign(pre_vote=False)
    await drain_ready(server)
    # Caught up (match 1 of a log whose only other entry is the no-op) but never heard from.
    silent = server.members.promote_one_learner()
    learner_answers(server)
    heard = server.members.promote_one_learner()
    close_server(server)
    return silent, heard


def test_a_learner_that_never_answered_is_not_promoted(tmp_path: Path) -> None:
    silent, heard = asyncio.run(promote_a_silent_learner(tmp_path / "node-1"))
    assert silent is None, "a learner that is not answering was promoted"
    assert heard == LEARNER


async def promote_an_empty_learner(data_dir: Path) -> tuple[int | None, int | None]:
    server = single_voter_with_a_learner(data_dir)
    node = server.node
    await drain_ready(server)
    node.campaign(pre_vote=False)
    await drain_ready(server)
    # Alive and "close" to the commit index (2), but it holds nothing yet, not even the
    # configuration at index 1 that names it.
    node.step(
        AppendEntriesResponse(
            to=LEADER, term=node.term, from_id=LEARNER, success=True, match_index=0
        )
    )
    empty = server.members.promote_one_learner()
    learner_answers(server)  # now it holds index 1
    holding = server.members.promote_one_learner()
    close_server(server)
    return empty, holding


def test_a_learner_is_promoted_only_once_it_holds_the_configuration_naming_it(
    tmp_path: Path,
) -> None:
    """A voter that holds no configuration votes for nobody; promoted while empty, it could
    leave a joint configuration with no electable node (whole-node simulator, seed 138)."""
    empty, holding = asyncio.run(promote_an_empty_learner(tmp_path / "node-1"))
    assert empty is None, "a learner holding nothing was promoted"
    assert holding == LEARNER
