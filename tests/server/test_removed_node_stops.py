"""A removed node stops even when no leader tells it of its removal; a node restarted from a
snapshot still stops on applying its removal; a member restarted with the `--peers` it was
founded with does not dial one removed since.

The first was seen in `tests/process/test_membership.py`: node 4's removal committed, the
leader stalled on its disk and lost its leadership before telling node 4, and the next leader
never talks to a node outside its configuration; node 4 ran on as a pre-candidate. Now a
member that applied a configuration without it, past the one that made it a member, refuses
its connection saying so, and it stops (the rule itself: tests/transport/test_removal_refusal.py).
A real cluster on the in-memory transport, whose hub keeps the removal from ever reaching the
removed node; and a restart driven through the server's Ready handling."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

import pytest

from raftkv.core import AppendEntries, Entry, EntryKind, Membership
from raftkv.server.http_server import Request
from raftkv.server.options import NodeOptions
from raftkv.server.peers_file import load_peer_addresses
from raftkv.server.runtime import RaftServer
from raftkv.storage.filesystem import OsFileSystem
from raftkv.transport.memory import MemoryHub, MemoryTransport
from tests.server.test_health import HOST, holds, ready_cluster, run_cluster
from tests.server.test_snapshot_install_race import (
    FOLLOWER,
    LEADER,
    close_server,
    drain_ready,
    follower_server,
    leader_snapshot,
)
from tests.waiting import wait_until


def voters(*ids: int) -> Membership:
    return Membership(voters=frozenset(ids))


async def remove_through(leader: RaftServer, node_id: int) -> None:
    """Remove `node_id` through the leader's API, retrying until the removal commits (a
    leader elected moments ago refuses changes until it commits an entry)."""
    request = Request("DELETE", f"/v1/members/{node_id}", {}, b"", True)

    async def removal_committed() -> bool:
        assert leader.api is not None
        return (await leader.api.handle(request)).status == 200

    await wait_until(removal_committed, f"node {node_id}'s removal committed")


# --- a real cluster -----------------------------------------------------------------------
def test_a_removed_node_no_leader_tells_stops_when_a_member_refuses_it_as_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        leader, removed = await ready_cluster(servers)
        other = next(server for server in servers if server not in (leader, removed))
        # Nothing reaches the node from now on: no leader will ever tell it of its removal.
        # It can still dial the members, which is how their refusals reach it.
        hub.block(leader.id, removed.id)
        hub.block(other.id, removed.id)
        await remove_through(leader, removed.id)
        await wait_until(holds(removed.peers.removed.is_set), "the removed node stopping")
        assert removed.id in removed.node.membership.members, (
            "it never held its removal: a member's refusal told it"
        )
        assert not leader.peers.removed.is_set() and not other.peers.removed.is_set()

    with caplog.at_level(logging.WARNING, logger="raftkv"):
        run_cluster(tmp_path, body)
    assert any("refuses it as removed" in record.getMessage() for record in caplog.records)


def test_a_removed_node_that_dials_no_member_stops_when_a_member_tells_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Session 29 (`raft-sim --whole-node --seed 25101 ...`): the removed node cannot reach
    any member (in the simulator, every peer it knew was gone), so no refusal can tell it;
    the members, once they stopped dialing it as a peer, dial it with a removal notice."""

    async def body(hub: MemoryHub, servers: list[RaftServer]) -> None:
        leader, removed = await ready_cluster(servers)
        members = [server for server in servers if server is not removed]
        for member in members:  # cut off both ways: nothing tells it through the log
            hub.block(member.id, removed.id)
            hub.block(removed.id, member.id)
        await remove_through(leader, removed.id)
        # The members forget it as a peer after the grace period (no Raft message goes
        # to it from then on); only their notices may reach it.
        await wait_until(
            lambda: all(removed.id not in member.transport._links for member in members),
            "the members forgot the removed node as a peer",
        )
        assert all(removed.id in member.peers.removal_notices for member in members)
        notices = [member.report.status()["removal_notices"] for member in members]
        assert all(list(notice) == [str(removed.id)] for notice in notices), notices
        hub.heal()
        for member in members:  # it still cannot dial them: only they can reach it
            hub.block(removed.id, member.id)
        await wait_until(holds(removed.peers.removed.is_set), "the removed node stopping")
        assert removed.id in removed.node.membership.members, (
            "it never held its removal: a member's notice told it"
        )
        await wait_until(
            lambda: all(member.peers.removal_notices == {} for member in members),
            "both notices answered",
        )
        assert leader.report.status()["removal_notices"] == {}
        assert not leader.peers.removed.is_set()

    with caplog.at_level(logging.INFO, logger="raftkv"):
        run_cluster(tmp_path, body)
    messages = [record.getMessage() for record in caplog.records]
    assert any("takes the notice" in message for message in messages)
    assert any("answered its removal notice" in message for message in messages)


# --- a restart from a snapshot ------------------------------------------------------------
async def _restart_then_apply_the_removal(data_dir: Path) -> bool:
    server = follower_server(data_dir)
    await drain_ready(server)  # the bootstrap entry
    server.node.step(leader_snapshot(voters(LEADER, FOLLOWER, 3)))
    await drain_ready(server)
    close_server(server)
    # Restarted: the snapshot is all it holds of its configuration history.
    server = follower_server(data_dir)
    try:
        removal = Entry(
            term=2, index=51, kind=EntryKind.MEMBERSHIP, data=voters(LEADER, 3).encode()
        )
        server.node.step(
            AppendEntries(
                to=FOLLOWER,
                term=2,
                leader_id=LEADER,
                prev_log_index=50,
                prev_log_term=2,
                entries=[removal],
                leader_commit=51,
            )
        )
        await drain_ready(server)
        assert server.applied_index == 51
        if server.snapshots._task is not None:
            await server.snapshots._task  # due after every entry; done before the close
        return server.peers.removed.is_set()
    finally:
        close_server(server)


def test_a_node_restarted_from_a_snapshot_stops_on_applying_its_removal(tmp_path: Path) -> None:
    assert asyncio.run(_restart_then_apply_the_removal(tmp_path / "node-2"))


# --- a member restarted with the peers it was founded with ---------------------------------
async def _restart_with_the_founding_peers(data_dir: Path) -> tuple[set[int], set[int]]:
    server = follower_server(data_dir)
    await drain_ready(server)  # the bootstrap entry
    # Caught up by a snapshot whose configuration no longer holds node 3: its removal lies
    # inside the snapshot, never applied here as an entry.
    server.node.step(leader_snapshot(voters(LEADER, FOLLOWER)))
    await drain_ready(server)
    close_server(server)
    options = NodeOptions(
        node_id=FOLLOWER,
        data_dir=str(data_dir),
        listen=(HOST, 9000 + FOLLOWER),
        client_listen=(HOST, 0),
        peers={LEADER: (HOST, 9000 + LEADER), 3: (HOST, 9003)},  # as it was founded
    )
    restarted = RaftServer(
        options, transport_factory=functools.partial(MemoryTransport, MemoryHub())
    )
    await restarted.start()
    try:
        return set(restarted.peers.addresses), set(restarted.transport.counters().peers)
    finally:
        await restarted.stop()


def test_a_member_restarted_with_its_founding_peers_does_not_dial_a_removed_one(
    tmp_path: Path,
) -> None:
    addresses, dialed = asyncio.run(_restart_with_the_founding_peers(tmp_path / "node-2"))
    assert addresses == {LEADER, FOLLOWER}
    assert dialed == {LEADER}
    assert set(load_peer_addresses(str(tmp_path / "node-2"), OsFileSystem())) == {
        LEADER,
        FOLLOWER,
    }
