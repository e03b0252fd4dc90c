"""A node re-added under an id removed earlier (review defect 7): replaying the earlier add
and removal must not stop it; only a removal after its own join does. Driven in-process
through the server's Ready handling; only the network is replaced by a recorder."""

from __future__ import annotations

import asyncio
from pathlib import Path

from raftkv.core import AppendEntries, Entry, EntryKind, Membership
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from tests.server.test_snapshot_install_race import close_server, drain_ready, record_messages

LEADER, JOINER = 1, 4
TERM = 2
FOUNDERS = frozenset({1, 2, 3})


def configuration(index: int, members: frozenset[int]) -> Entry:
    membership = Membership(voters=FOUNDERS, learners=members - FOUNDERS)
    return Entry(term=TERM, index=index, kind=EntryKind.MEMBERSHIP, data=membership.encode())


# The cluster's history as node 4 receives it: founded, 4 added, 4 removed, 4 added again.
HISTORY = [
    Entry(term=1, index=1, kind=EntryKind.MEMBERSHIP, data=Membership(voters=FOUNDERS).encode()),
    configuration(2, FOUNDERS | {JOINER}),
    configuration(3, FOUNDERS),
    configuration(4, FOUNDERS | {JOINER}),
]


def joiner(data_dir: Path, joined_index: int) -> RaftServer:
    options = NodeOptions(
        node_id=JOINER,
        data_dir=str(data_dir),
        listen=("127.0.0.1", 1),
        client_listen=("127.0.0.1", 2),
        join=("127.0.0.1", 3),
        cluster_id="raftkv-test",
    )
    server = RaftServer(options)
    server.peers.joined({}, joined_index)
    server._open_storage()
    server._build_node()
    record_messages(server)
    return server


def replicate(server: RaftServer, entries: list[Entry], commit: int) -> None:
    node = server.node
    previous = entries[0].index - 1
    node.step(
        AppendEntries(
            to=JOINER,
            term=TERM,
            leader_id=LEADER,
            prev_log_index=previous,
            prev_log_term=node.log.term(previous) or 0,
            entries=entries,
            leader_commit=commit,
        )
    )


async def replay(data_dir: Path, joined_index: int) -> list[bool]:
    server = joiner(data_dir, joined_index)
    stopped = []
    # The history arrives in two batches: the earlier removal is applied before the
    # re-add has even been received.
    replicate(server, HISTORY[:3], commit=3)
    await drain_ready(server)
    stopped.append(server.peers.removed.is_set())
    replicate(server, HISTORY[3:], commit=4)
    await drain_ready(server)
    stopped.append(server.peers.removed.is_set())
    # A removal after this node's join does stop it.
    replicate(server, [configuration(5, FOUNDERS)], commit=5)
    await drain_ready(server)
    stopped.append(server.peers.removed.is_set())
    close_server(server)
    return stopped


def test_a_re_added_node_ignores_its_earlier_removal(tmp_path: Path) -> None:
    assert asyncio.run(replay(tmp_path / "node-4", joined_index=4)) == [False, False, True]


def test_the_join_index_is_kept_across_restarts(tmp_path: Path) -> None:
    server = joiner(tmp_path / "node-4", joined_index=4)
    close_server(server)
    restarted = joiner(tmp_path / "node-4", joined_index=0)  # no --join this time
    try:
        assert restarted.peers.joined_index == 4
    finally:
        close_server(restarted)
