"""A snapshot being taken while a received one is installed (review defect 2): the taken one
must be labelled with the index the state machine holds, and never saved over the
installed one. Driven in-process through the server's own Ready handling and snapshot
task, with the real file stores; only the network is replaced by a recorder."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

from raftkv.core import AppendEntries, Entry, InstallSnapshot, Membership
from raftkv.core.messages import AnyMessage
from raftkv.kv import KVStore
from raftkv.kv.commands import Command, encode_command
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer

LEADER, FOLLOWER = 1, 2


class RecordingTransport:
    """Stands in for the TCP transport: the follower's answers, and the peer addresses the
    server gives its transport, are only recorded."""

    def __init__(self) -> None:
        self.sent: list[AnyMessage] = []
        self.addresses: dict[int, tuple[str, int]] = {}

    def send(self, message: AnyMessage) -> None:
        self.sent.append(message)

    def send_at_once(self, message: AnyMessage) -> bool:
        self.sent.append(message)
        return False

    def frame(self, messages: list[AnyMessage]) -> list[object]:
        return []  # as if each were dropped: the server sends them as before (`send`)

    def set_applied_configuration(self, index: int, members: Collection[int]) -> None:
        pass

    def set_peer_address(self, node_id: int, host: str, port: int) -> None:
        self.addresses[node_id] = (host, port)

    def remove_peer(self, node_id: int, removed_at: int = 0) -> None:
        self.addresses.pop(node_id, None)


def record_messages(server: RaftServer) -> RecordingTransport:
    """Give `server` (opened by hand, not started) a transport that records."""
    transport = RecordingTransport()
    server.transport = transport  # type: ignore[assignment]
    server.peers.attach(server.transport)
    return transport


def follower_server(data_dir: Path) -> RaftServer:
    options = NodeOptions(
        node_id=FOLLOWER,
        data_dir=str(data_dir),
        listen=("127.0.0.1", 1),
        client_listen=("127.0.0.1", 2),
        peers={LEADER: ("127.0.0.1", 3)},
        snapshot_entries=1,  # a snapshot is due after every applied entry
    )
    server = RaftServer(options)
    server._open_storage()
    server._build_node()
    server.applied_index = server.node.log.applied
    record_messages(server)
    return server


def close_server(server: RaftServer) -> None:
    """Release what `follower_server` (never started) opened: the WAL, the disk thread, the
    data dir's lock."""
    server._close_own_stores()
    server.disk_executor.shutdown(wait=True)
    assert server.data_dir is not None
    server.data_dir.close()


def put(index: int, term: int, key: str, value: str) -> Entry:
    return Entry(term=term, index=index, data=encode_command(Command("put", key, value)))


def leader_state(through: int) -> bytes:
    store = KVStore()
    store.apply(1, encode_command(Command("put", "x", "from-the-leader")))
    for index in range(2, through + 1):
        store.apply(index, encode_command(Command("put", f"k{index}", "v")))
    return store.snapshot()


def leader_snapshot(membership: Membership, index: int = 50, term: int = 2) -> InstallSnapshot:
    """The leader's whole snapshot at `index` (`leader_state`), in one InstallSnapshot."""
    return InstallSnapshot(
        to=FOLLOWER,
        term=term,
        leader_id=LEADER,
        last_included_index=index,
        last_included_term=term,
        offset=0,
        data=leader_state(index),
        done=True,
        membership=membership.encode(),
    )


async def drain_ready(server: RaftServer) -> None:
    while server.node.has_ready():
        await server._handle_ready(server.node.ready())


async def race(data_dir: Path) -> tuple[int, dict[str, str | None]]:
    server = follower_server(data_dir)
    node = server.node
    await drain_ready(server)  # the bootstrap entry
    term = 2
    node.step(
        AppendEntries(
            to=FOLLOWER,
            term=term,
            leader_id=LEADER,
            prev_log_index=1,
            prev_log_term=1,
            entries=[put(2, term, "x", "old"), put(3, term, "y", "old")],
            leader_commit=3,
        )
    )
    # Applies 2..3; at the end of that Ready a snapshot becomes due and its task is created,
    # but it has not run yet when the next message arrives.
    await server._handle_ready(node.ready())
    assert server.snapshots._task is not None
    installed_index = 50
    node.step(
        leader_snapshot(Membership(voters=frozenset({LEADER, FOLLOWER})), installed_index, term)
    )
    install = asyncio.ensure_future(drain_ready(server))
    taking = server.snapshots._task
    await asyncio.gather(install, taking)
    await drain_ready(server)
    latest = server.snapshot_store.latest()
    assert latest is not None
    restored = KVStore()
    restored.restore(latest[1])
    close_server(server)
    return latest[0].index, {key: restored.get(key) for key in ("x", "y", "k50")}


def test_a_snapshot_taken_during_an_install_never_replaces_it(tmp_path: Path) -> None:
    index, state = asyncio.run(race(tmp_path / "node-2"))
    assert index == 50
    assert state == {"x": "from-the-leader", "y": None, "k50": "v"}, (
        "the newest snapshot file holds the follower's old state under the leader's index"
    )


def test_a_restarted_follower_serves_the_installed_state(tmp_path: Path) -> None:
    asyncio.run(race(tmp_path / "node-2"))
    server = follower_server(tmp_path / "node-2")
    try:
        assert server.node.log.applied == 50
        assert server.state_machine.get("x") == "from-the-leader"  # type: ignore[attr-defined]
    finally:
        close_server(server)


async def read_around_an_install(data_dir: Path) -> list[tuple[str | None, int]]:
    server = follower_server(data_dir)
    node = server.node
    await drain_ready(server)
    node.step(
        AppendEntries(
            to=FOLLOWER,
            term=2,
            leader_id=LEADER,
            prev_log_index=1,
            prev_log_term=1,
            entries=[put(2, 2, "x", "old")],
            leader_commit=2,
        )
    )
    await drain_ready(server)
    node.step(leader_snapshot(Membership(voters=frozenset({LEADER, FOLLOWER}))))
    # The core's log is at 50 already; the state machine is restored only by the next Ready.
    reads = [await server.read("x", "stale")]
    waiter = asyncio.ensure_future(server.requests.wait_applied(50))
    await asyncio.sleep(0)
    assert not waiter.done(), "an applied-index wait returned before the state was restored"
    await drain_ready(server)
    await waiter
    reads.append(await server.read("x", "stale"))
    server.snapshots.cancel()
    close_server(server)
    return reads


def test_a_stale_read_reports_the_index_of_the_state_it_read(tmp_path: Path) -> None:
    reads = asyncio.run(read_around_an_install(tmp_path / "node-2"))
    assert reads == [("old", 2), ("from-the-leader", 50)]
