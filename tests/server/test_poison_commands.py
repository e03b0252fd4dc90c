"""A command the state machine raises on is that command's result, never a node failure
(issue #14): one stray `PUT /v1/kv/x` to a cluster running its own state machine used to stop
every replica, and every restart replayed it and stopped again.

Three real servers (WAL and snapshot files in their data dirs, the in-memory transport) run
`Ledger`, a state machine that raises on a negative amount and on anything that is not its
JSON (a KV store command is MessagePack). The KV routes are not served for it at all; on a
KV store that raises, the client gets `command_failed` 422."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from raftkv.core import Entry, EntryKind
from raftkv.errors import CommandFailed, InvariantViolation
from raftkv.kv import Command, KVStore, Result, encode_command
from raftkv.kv.base import StateMachine
from raftkv.server.http_server import Request
from raftkv.server.options import NodeOptions
from raftkv.server.requests import (
    FAILURE_WARNING_INTERVAL_SECONDS,
    RequestFailed,
    RequestTracker,
)
from raftkv.server.runtime import RaftServer
from raftkv.transport.memory import MemoryHub, MemoryTransport
from tests.waiting import wait_until

NODE_IDS = (1, 2, 3)
HOST = "127.0.0.1"
# Node 1 never snapshots (a restart replays every entry from its WAL); the others snapshot
# every few entries (a restart starts from a snapshot).
SNAPSHOT_ENTRIES = {1: 0, 2: 2, 3: 2}


class Ledger:
    """Counters by name. Deterministic, refusals included: every command is chained into
    the hash before it is decoded, so replicas compare at a refused index too."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._hash = b"\x00" * 16

    def apply(self, index: int, command: bytes) -> int:
        self._hash = hashlib.blake2b(
            self._hash + index.to_bytes(8, "big") + command, digest_size=16
        ).digest()
        request = json.loads(command)  # raises on a KV store command (MessagePack)
        name, amount = request["name"], request["add"]
        if amount < 0:
            raise ValueError(f"negative amount {amount}")
        self.counts[name] = self.counts.get(name, 0) + amount
        return self.counts[name]

    def snapshot(self) -> bytes:
        return json.dumps({"counts": self.counts, "hash": self._hash.hex()}).encode()

    def restore(self, data: bytes) -> None:
        state = json.loads(data)
        self.counts = state["counts"]
        self._hash = bytes.fromhex(state["hash"])

    @property
    def applied_hash(self) -> str:
        return self._hash.hex()


class FussyStore(KVStore):
    """The KV store, except that it raises on the key "poison"."""

    def apply(self, index: int, command: bytes) -> Result:
        result = super().apply(index, command)
        if b"poison" in command:
            raise KeyError("poison")
        return result


class BrokenLedger(Ledger):
    """A ledger with a bug of raftkv's kind: a broken invariant on the name "bug"."""

    def apply(self, index: int, command: bytes) -> int:
        if b'"bug"' in command:
            raise InvariantViolation("the ledger's books do not balance")
        return super().apply(index, command)


def add(name: str, amount: int) -> bytes:
    return json.dumps({"name": name, "add": amount}).encode()


def kv_put(key: str, value: str) -> bytes:
    """What `PUT /v1/kv/{key}` proposes."""
    return encode_command(Command(op="put", key=key, value=value))


def new_server(
    node_id: int, hub: MemoryHub, data_root: Path, state_machine: StateMachine
) -> RaftServer:
    options = NodeOptions(
        node_id=node_id,
        data_dir=str(data_root / f"node-{node_id}"),
        listen=(HOST, 9000 + node_id),
        client_listen=(HOST, 8000 + node_id),
        peers={peer: (HOST, 9000 + peer) for peer in NODE_IDS if peer != node_id},
        seed=node_id,
        snapshot_entries=SNAPSHOT_ENTRIES[node_id],
    )
    return RaftServer(
        options,
        state_machine,
        transport_factory=functools.partial(MemoryTransport, hub),
        listen_for_clients=False,
    )


def leader_of(servers: dict[int, RaftServer]) -> RaftServer | None:
    leaders = [server for server in servers.values() if server.node.role == "leader"]
    return leaders[0] if len(leaders) == 1 else None


async def elect(servers: dict[int, RaftServer]) -> RaftServer:
    await wait_until(lambda: leader_of(servers) is not None, "a leader")
    leader = leader_of(servers)
    assert leader is not None
    return leader


def run_cluster(
    data_root: Path,
    make_state_machine: Callable[[], StateMachine],
    body: Callable[
        [dict[int, RaftServer], Callable[[int], Awaitable[RaftServer]]], Awaitable[None]
    ],
) -> None:
    """Start three servers on one hub, run `body(servers, restart)`, stop them all.
    `restart(id)` stops that server and starts a new one, with a new state machine, on the
    same data dir."""

    async def main() -> None:
        hub = MemoryHub()
        servers = {n: new_server(n, hub, data_root, make_state_machine()) for n in NODE_IDS}

        async def restart(node_id: int) -> RaftServer:
            await servers[node_id].stop()
            servers[node_id] = new_server(node_id, hub, data_root, make_state_machine())
            await servers[node_id].start()
            return servers[node_id]

        try:
            for server in servers.values():
                await server.start()
            await body(servers, restart)
        finally:
            for server in servers.values():
                await server.stop()

    asyncio.run(main())


async def request(
    server: RaftServer,
    method: str,
    path: str,
    body: bytes = b"",
    query: dict[str, str] | None = None,
) -> Any:
    assert server.api is not None
    response = await server.api.handle(Request(method, path, query or {}, body, True))
    return response.status, json.loads(response.body) if response.body else None


def failed_metric(server: RaftServer) -> float:
    for line in server.metrics.render().decode().splitlines():
        if line.startswith("raft_commands_failed_total "):
            return float(line.split()[1])
    raise AssertionError("no raft_commands_failed_total metric")


def snapshot_index(server: RaftServer) -> int:
    return server.node.snapshot[0].index if server.node.snapshot is not None else 0


def converged(servers: dict[int, RaftServer], index: int) -> bool:
    """Every server applied through `index` and they all hold the same state."""
    return all(server.applied_index >= index for server in servers.values()) and (
        len({server.state_machine.applied_hash for server in servers.values()}) == 1
    )


def test_a_command_the_state_machine_raises_on_fails_alone_on_every_replica_and_replay(
    tmp_path: Path,
) -> None:
    async def body(
        servers: dict[int, RaftServer], restart: Callable[[int], Awaitable[RaftServer]]
    ) -> None:
        leader = await elect(servers)
        assert (await leader.requests.propose(add("apples", 5)))[0] == 5
        with pytest.raises(CommandFailed) as negative:
            await leader.requests.propose(add("apples", -1))
        assert isinstance(negative.value.error, ValueError)
        assert str(negative.value) == "ValueError: negative amount -1"
        # The stray request: a KV store command the ledger cannot decode.
        with pytest.raises(CommandFailed) as foreign:
            await leader.requests.propose(kv_put("x", "1"))
        assert isinstance(foreign.value.error, ValueError)  # JSON or UTF-8 decoding
        failed = [negative.value.index, foreign.value.index]
        total, _ = await leader.requests.propose(add("apples", 2))
        total, last = await leader.requests.propose(add("pears", 1))
        assert total == 1
        for server in servers.values():
            await server.requests.wait_applied(last)
        for server in servers.values():
            assert server.storage_failure is None, server.id
            ledger = server.state_machine
            assert isinstance(ledger, Ledger)
            assert ledger.counts == {"apples": 7, "pears": 1}, server.id
            assert failed_metric(server) == 2.0, server.id
        for index in [*failed, last]:
            assert len({s.applied_hashes[index] for s in servers.values()}) == 1, index

        # Node 1 has no snapshot: it replays the failed entries from its WAL.
        assert servers[1].node.snapshot is None
        replayed = await restart(1)
        await wait_until(lambda: converged(servers, last), "node 1 to catch up after a restart")
        assert replayed.storage_failure is None
        assert replayed.requests.commands_failed_total == 2
        assert isinstance(replayed.state_machine, Ledger)
        assert replayed.state_machine.counts == {"apples": 7, "pears": 1}

        # Node 3 starts from a snapshot that holds the failed entries' effects.
        await wait_until(lambda: snapshot_index(servers[3]) >= failed[-1], "node 3's snapshot")
        from_snapshot = await restart(3)
        assert snapshot_index(from_snapshot) >= failed[-1]
        await wait_until(lambda: converged(servers, last), "node 3 to catch up after a restart")
        assert from_snapshot.storage_failure is None
        assert from_snapshot.requests.commands_failed_total == 0  # none re-applied

        # The cluster still takes commands.
        leader = await elect(servers)
        assert (await leader.requests.propose(add("apples", 1)))[0] == 8

    run_cluster(tmp_path, Ledger, body)


def test_kv_routes_on_another_state_machine_are_not_found_and_propose_nothing(
    tmp_path: Path,
) -> None:
    async def body(
        servers: dict[int, RaftServer], restart: Callable[[int], Awaitable[RaftServer]]
    ) -> None:
        leader = await elect(servers)
        last_index = leader.node.log.last_index
        for method, body in (("PUT", b'{"value": "1"}'), ("GET", b""), ("DELETE", b"")):
            status, answer = await request(leader, method, "/v1/kv/x", body)
            assert (status, answer["error"]) == (404, "not_found"), (method, answer)
            assert answer["message"].startswith(
                "this node's state machine is not the key-value store"
            )
        assert leader.node.log.last_index == last_index
        assert leader.requests.proposals_total == 0
        assert (await request(leader, "GET", "/v1/status"))[0] == 200
        assert (await request(leader, "GET", "/v1/members"))[0] == 200
        assert (
            await request(leader, "GET", "/v1/hash", query={"index": str(leader.applied_index)})
        )[0] == 200
        assert leader.storage_failure is None

    run_cluster(tmp_path, Ledger, body)


def test_a_kv_store_that_raises_answers_command_failed_and_goes_on(tmp_path: Path) -> None:
    async def body(
        servers: dict[int, RaftServer], restart: Callable[[int], Awaitable[RaftServer]]
    ) -> None:
        leader = await elect(servers)
        status, answer = await request(leader, "PUT", "/v1/kv/poison", b'{"value": "1"}')
        assert (status, answer["error"]) == (422, "command_failed"), answer
        assert answer["message"] == "KeyError: 'poison'"
        assert isinstance(answer["index"], int)
        status, answer = await request(leader, "PUT", "/v1/kv/k", b'{"value": "v"}')
        assert status == 200, answer
        for server in servers.values():
            await server.requests.wait_applied(answer["index"])
            assert server.storage_failure is None
        status, answer = await request(leader, "GET", "/v1/kv/k")
        assert (status, answer["value"]) == (200, "v")

    run_cluster(tmp_path, FussyStore, body)


def test_a_broken_invariant_inside_apply_still_stops_the_node(tmp_path: Path) -> None:
    """Not a command's result: a bug (the simulator's checker raises these in apply)."""

    async def body(
        servers: dict[int, RaftServer], restart: Callable[[int], Awaitable[RaftServer]]
    ) -> None:
        leader = await elect(servers)
        with pytest.raises(RequestFailed):
            await leader.requests.propose(add("bug", 1))
        assert leader.storage_failure == "internal error in the Ready loop"
        assert leader.requests.commands_failed_total == 0

    run_cluster(tmp_path, BrokenLedger, body)


class FakeServer:
    """The node as the tracker sees it (requests.RequestHost); nothing is proposed."""

    node: Any = None
    applied_index = 0
    storage_failure: str | None = None

    def wake(self) -> None:
        pass


def test_failed_command_warnings_are_rate_limited_and_count_those_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    tracker = RequestTracker(FakeServer(), timeout_seconds=5.0, warning_clock=lambda: now[0])
    entry = Entry(term=1, index=7, kind=EntryKind.NORMAL)
    with caplog.at_level(logging.WARNING, logger="raftkv.node"):
        tracker.command_failed(entry, ValueError("first\nforged line"))
        for _ in range(5):
            now[0] += FAILURE_WARNING_INTERVAL_SECONDS / 10
            tracker.command_failed(entry, ValueError("flood"))
        now[0] += FAILURE_WARNING_INTERVAL_SECONDS
        tracker.command_failed(entry, ValueError("x" * 10_000))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "index 7" in lines[0]
    assert "ValueError: first\\nforged line" in lines[0] and "\n" not in lines[0]
    assert "more since" not in lines[0]
    assert lines[1].endswith("...; 5 more since the last such warning")
    assert len(lines[1]) < 400
    assert tracker.commands_failed_total == 7
