"""How a node learns where its peers are, beyond what it was started with (found by the
whole-node simulator): a follower caught up by a snapshot, or one that has appended (not
yet applied) the configuration adding a member, must be able to talk to that member; a
node's peer list is on disk before its WAL; and a node that stopped taking part claims no
lease. Driven through the server's own Ready handling, with the network recorded."""

from __future__ import annotations

import asyncio
import errno
import random
from pathlib import Path

import pytest

from raftkv.core import AppendEntries, Entry, EntryKind, InstallSnapshot, Membership
from raftkv.errors import StorageError
from raftkv.kv import KVStore
from raftkv.server.options import NodeOptions
from raftkv.server.peers_file import load_peer_addresses
from raftkv.server.runtime import RaftServer
from raftkv.storage.simulated_disk import SimulatedFileSystem
from tests.server.test_snapshot_install_race import (
    RecordingTransport,
    close_server,
    drain_ready,
    record_messages,
)

LEADER, FOLLOWER, NEWCOMER = 1, 2, 3
NEWCOMER_ADDRESS = ("10.0.0.3", 9003)


def options(data_dir: Path, **overrides: object) -> NodeOptions:
    values: dict[str, object] = {
        "node_id": FOLLOWER,
        "data_dir": str(data_dir),
        "listen": ("127.0.0.1", 9002),
        "client_listen": ("127.0.0.1", 8002),
        "peers": {LEADER: ("127.0.0.1", 9001)},
    }
    values.update(overrides)
    return NodeOptions(**values)  # type: ignore[arg-type]


def opened(server: RaftServer) -> tuple[RaftServer, RecordingTransport]:
    server._open_storage()
    server._build_node()
    server.applied_index = server.node.log.applied
    return server, record_messages(server)


def with_newcomer() -> Membership:
    return Membership(
        voters=frozenset({LEADER, FOLLOWER}),
        learners=frozenset({NEWCOMER}),
        addresses={
            LEADER: "127.0.0.1:9001",
            FOLLOWER: "127.0.0.1:9002",
            NEWCOMER: f"{NEWCOMER_ADDRESS[0]}:{NEWCOMER_ADDRESS[1]}",
        },
    )


def assert_knows_newcomer(server: RaftServer, transport: RecordingTransport) -> None:
    assert transport.addresses.get(NEWCOMER) == NEWCOMER_ADDRESS
    assert server.peers.addresses.get(NEWCOMER) == NEWCOMER_ADDRESS
    assert server.data_dir is not None
    saved = load_peer_addresses(server.data_dir.path, server.data_dir.filesystem)
    assert saved.get(NEWCOMER) == NEWCOMER_ADDRESS, "not in peers.json: lost at a restart"


def test_a_follower_caught_up_by_a_snapshot_learns_the_members_it_names(tmp_path: Path) -> None:
    server, transport = opened(RaftServer(options(tmp_path)))

    async def main() -> None:
        await drain_ready(server)  # the bootstrap entry
        server.node.step(
            InstallSnapshot(
                to=FOLLOWER,
                term=2,
                leader_id=LEADER,
                last_included_index=40,
                last_included_term=2,
                offset=0,
                data=KVStore().snapshot(),
                done=True,
                membership=with_newcomer().encode(),
            )
        )
        await drain_ready(server)

    try:
        asyncio.run(main())
        assert server.node.log.snapshot_index == 40
        assert_knows_newcomer(server, transport)
    finally:
        close_server(server)


def test_a_configuration_appended_but_not_applied_already_names_the_members(
    tmp_path: Path,
) -> None:
    """Raft uses a configuration once it is in the log (§6); a lagging node that waited for
    it to apply could not answer a leader it names."""
    server, transport = opened(RaftServer(options(tmp_path)))

    async def main() -> None:
        await drain_ready(server)
        server.node.step(
            AppendEntries(
                to=FOLLOWER,
                term=2,
                leader_id=LEADER,
                prev_log_index=1,
                prev_log_term=1,
                entries=[Entry(2, 2, EntryKind.MEMBERSHIP, with_newcomer().encode())],
                leader_commit=1,  # appended, not committed
            )
        )
        await drain_ready(server)

    try:
        asyncio.run(main())
        assert server.node.log.committed == 1 and server.node.log.last_index == 2
        assert_knows_newcomer(server, transport)
    finally:
        close_server(server)


def test_the_peer_list_is_on_disk_before_the_wal(tmp_path: Path) -> None:
    """A node with a WAL counts as started (`--join` is ignored from then on): a crash
    between creating the WAL and writing peers.json left a joined node knowing nobody."""
    disk = SimulatedFileSystem(random.Random(1))
    disk.fail_next("makedirs", errno.EIO, "wal")
    server = RaftServer(options(tmp_path, peers={}), filesystem=disk)
    server.peers.joined({LEADER: ("127.0.0.1", 9001)}, 0)
    with pytest.raises(StorageError):
        server._open_storage()
    saved = load_peer_addresses(str(tmp_path), disk)
    assert saved.get(LEADER) == ("127.0.0.1", 9001)
    assert server.data_dir is not None
    server.data_dir.close()
    server.disk_executor.shutdown(wait=True)


def test_an_unreadable_peer_list_is_a_storage_error(tmp_path: Path) -> None:
    """EIO reading peers.json at start-up: a StorageError (raft-node's clear message and
    exit code), not a bare OSError escaping start() (found by the whole-node simulator)."""
    disk = SimulatedFileSystem(random.Random(1))
    server = RaftServer(options(tmp_path, peers={}), filesystem=disk)
    server.peers.joined({LEADER: ("127.0.0.1", 9001)}, 0)
    server._open_storage()
    assert server.data_dir is not None
    server.data_dir.close()
    disk.fail_next("read", errno.EIO, "peers.json")
    with pytest.raises(StorageError, match=r"peers\.json"):
        load_peer_addresses(str(tmp_path), disk)
    server.disk_executor.shutdown(wait=True)


def test_a_node_that_stopped_taking_part_claims_no_lease(tmp_path: Path) -> None:
    server, _ = opened(RaftServer(options(tmp_path, peers={}, single_node=True)))

    async def main() -> None:
        await drain_ready(server)
        node = server.node
        for _ in range(50):
            node.tick()
            await drain_ready(server)
            if node.role == "leader":
                break
        assert node.role == "leader"
        server._last_tick_time = asyncio.get_running_loop().time()
        assert server.lease_usable(), "a single voter's lease holds"
        server._stop_participating("disk full")
        assert node.role == "leader"  # the core does not know
        assert not server.lease_usable()

    try:
        asyncio.run(main())
    finally:
        close_server(server)
