"""The embedding API with real nodes: three (or four) `AsyncNode`s on loopback TCP in one
event loop, or three blocking `Node`s each on its own thread. Waits are on conditions with
deadlines; every node is stopped even when a test fails."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from raftkv.embed import AsyncNode, Node, ReplCounter, ReplLock, replicated
from raftkv.errors import Timeout
from raftkv.server import forwarding as forwarding_module
from tests.process.cluster import free_port
from tests.waiting import wait_until

# Quick elections, still well above a loaded 2-core machine's scheduling hiccups.
TIMING = {"tick_ms": 10, "election_timeout_ms": (150, 300), "heartbeat_ms": 30}
DEADLINE_SECONDS = 15.0


class Account:
    def __init__(self) -> None:
        self.balance = 0

    @replicated
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise ValueError("a deposit is positive")
        self.balance += amount
        return self.balance


class Cluster:
    def __init__(self, root: Path, ids: list[int]) -> None:
        self.root = root
        self.ports = {node_id: free_port() for node_id in ids}
        self.accounts: dict[int, Account] = {}
        self.nodes: dict[int, AsyncNode] = {}

    def make(self, node_id: int, **arguments: Any) -> AsyncNode:
        account = self.accounts[node_id] = Account()
        if "peers" not in arguments and "join" not in arguments:
            arguments["peers"] = {
                peer: ("127.0.0.1", port) for peer, port in self.ports.items() if peer != node_id
            }
        node = AsyncNode(
            node_id,
            listen=("127.0.0.1", self.ports[node_id]),
            data_dir=str(self.root / f"node{node_id}"),
            objects={"account": account},
            options={**TIMING, "request_timeout_seconds": 1.0},
            **arguments,
        )
        self.nodes[node_id] = node
        return node

    async def leader(self) -> int:
        return await next(iter(self.nodes.values())).wait_for_leader(DEADLINE_SECONDS)

    async def follower(self) -> int:
        leader = await self.leader()
        return next(node_id for node_id in self.nodes if node_id != leader)


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, size: int = 3) -> AsyncIterator[Cluster]:
    ids = list(range(1, size + 1))
    built = Cluster(tmp_path, ids)
    try:
        for node_id in ids:
            await built.make(node_id).start()
        yield built
    finally:
        for node in built.nodes.values():
            with contextlib.suppress(Exception):
                await node.stop()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_calls_from_every_node_apply_on_every_replica_in_one_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            leader = await c.leader()
            results = []
            for node_id in [*c.nodes, *c.nodes]:
                results.append(await c.accounts[node_id].deposit(node_id))
            assert results == [1, 3, 6, 7, 9, 12]  # each caller saw its own call's result
            await wait_until(lambda: all(a.balance == 12 for a in c.accounts.values()), "balances")
            hashes = {node.server.state_machine.applied_hash for node in c.nodes.values()}
            assert len(hashes) == 1
            assert c.nodes[leader].is_leader and c.nodes[leader].role == "leader"

    run(scenario)


def test_an_exception_reaches_the_caller_on_a_follower_and_every_node_goes_on(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            with pytest.raises(ValueError, match="positive"):
                await c.accounts[follower].deposit(-5)
            assert await c.accounts[follower].deposit(5) == 5
            assert all(node.server.storage_failure is None for node in c.nodes.values())

    run(scenario)


def test_reads_on_a_follower_at_each_consistency(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            leader_account = c.accounts[await c.leader()]
            await leader_account.deposit(10)
            account = c.accounts[follower]
            # Linearizable and lease reads see the write the leader acknowledged.
            assert await c.nodes[follower].read(lambda: account.balance) == 10
            assert await c.nodes[follower].read(lambda: account.balance, "lease") == 10
            stale = await c.nodes[follower].read(lambda: account.balance, "stale")
            assert stale in (0, 10)
            with pytest.raises(ValueError):
                await c.nodes[follower].read(lambda: 0, "eventual")

    run(scenario)


def test_concurrent_reads_on_a_follower_share_the_leader_s_read_index(tmp_path: Path) -> None:
    """A follower's embedded reads go through its `FollowerReads` as its HTTP reads do: the
    ones made at once cost the leader a forward or two, not one each."""

    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            await c.accounts[await c.leader()].deposit(7)
            account, node = c.accounts[follower], c.nodes[follower]
            reads = node.server.follower_reads
            before = reads.forwards_total
            balances = await asyncio.gather(
                *(node.read(lambda: account.balance) for _ in range(30))
            )
            assert balances == [7] * 30
            assert reads.reads_total >= 30 and 1 <= reads.forwards_total - before <= 2

    run(scenario)


def test_a_call_on_a_follower_outlives_the_leaders_stop(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            leader = await c.leader()
            await c.accounts[leader].deposit(1)
            await c.nodes[leader].stop()
            del c.nodes[leader]
            survivor = next(iter(c.nodes))
            # No NotLeader reaches the caller: the call waits for the new leader.
            assert await c.accounts[survivor].deposit(2) == 3
            assert await c.leader() != leader

    run(scenario)


@pytest.fixture
def lost(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The leader's answer to the first forwarded proposal is lost (its index is listed)."""
    indexes: list[int] = []
    answered = forwarding_module.Forwarding._answered

    def lose_the_first(self: forwarding_module.Forwarding, reply: Any) -> None:
        if not indexes and reply.index:
            indexes.append(reply.index)
            return
        answered(self, reply)

    monkeypatch.setattr(forwarding_module.Forwarding, "_answered", lose_the_first)
    return indexes


def test_a_forwarded_call_whose_answer_is_lost_applies_once(
    tmp_path: Path, lost: list[int]
) -> None:
    """The leader's answer to the first forward is lost: the follower asks again with the
    same session number, and the deposit is applied once, not twice."""

    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            assert await c.accounts[follower].deposit(5) == 5
            assert lost, "no answer was lost"
            await wait_until(lambda: all(a.balance == 5 for a in c.accounts.values()), "balances")

    run(scenario)


def test_concurrent_calls_from_one_node_each_apply_once_when_one_is_retried(
    tmp_path: Path, lost: list[int]
) -> None:
    """Each call in flight has a session of its own: the first call's answer is lost and
    it is retried after the others applied; in a shared session its retry would be refused
    as older than their numbers ("StaleRequest")."""

    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            results = await asyncio.gather(
                *(c.accounts[follower].deposit(1) for _ in range(20)), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, failures
            assert lost
            assert sorted(results) == list(range(1, 21))  # type: ignore[type-var]
            await wait_until(lambda: all(a.balance == 20 for a in c.accounts.values()), "balances")

    run(scenario)


def test_a_state_that_cannot_be_snapshotted_is_reported_and_retried(tmp_path: Path) -> None:
    """A snapshot of an attribute values.py cannot carry fails loudly (a metric) and the
    snapshot task is not left dead: once the state is fixed, snapshots are taken again."""

    class Holder:
        def __init__(self) -> None:
            self.items: Any = []

        @replicated
        def keep(self, value: int) -> None:
            self.items.append(value)

        @replicated
        def make_strange(self) -> None:
            self.items = object()

        @replicated
        def make_plain(self) -> None:
            self.items = []

    async def scenario() -> None:
        holder = Holder()
        node = AsyncNode(
            1,
            listen=("127.0.0.1", free_port()),
            data_dir=str(tmp_path / "single"),
            objects={"holder": holder},
            single_node=True,
            options={**TIMING, "snapshot_entries": 3},
        )
        try:
            await node.start()
            await node.wait_for_leader(DEADLINE_SECONDS)
            server = node.server
            await holder.make_strange()
            failures = server.metrics.snapshot_failures
            for _ in range(20):  # a snapshot is due every 3 entries
                if failures._value.get():
                    break
                await holder.make_strange()
            assert failures._value.get() > 0, "the failed snapshot was not counted"
            await holder.make_plain()
            taken = server.snapshots.last_index
            for value in range(4):
                await holder.keep(value)
            await wait_until(lambda: server.snapshots.last_index > taken, "a snapshot again")
        finally:
            await node.stop()

    run(scenario)


def test_a_blocking_call_before_start_is_refused(tmp_path: Path) -> None:
    node = Node(
        1,
        listen=("127.0.0.1", free_port()),
        data_dir=str(tmp_path / "unstarted"),
        objects={"hits": ReplCounter()},
        single_node=True,
    )
    with pytest.raises(RuntimeError, match="start"):
        node.wait_for_leader(1.0)


def test_a_call_that_cannot_commit_times_out_clearly(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            leader = await c.leader()
            for node_id in list(c.nodes):
                if node_id != leader:
                    await c.nodes[node_id].stop()
            node = c.nodes[leader]
            with pytest.raises(Timeout, match=r"may still apply|not applied in time"):
                await node.call_with_timeout(1.0, "account", "deposit", (1,))

    run(scenario)


def test_membership_and_transfer_from_a_follower(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            await c.accounts[follower].deposit(3)
            c.ports[4] = free_port()
            index = await c.nodes[follower].add_member(4, ("127.0.0.1", c.ports[4]))
            members = {n: ("127.0.0.1", c.ports[n]) for n in (1, 2, 3)}
            joiner = c.make(4, join=index, cluster_id=c.nodes[follower].cluster_id, peers=members)
            await joiner.start()
            await wait_until(lambda: c.accounts[4].balance == 3, "the new member caught up")
            await wait_until(lambda: 4 in c.nodes[follower].members["voters"], "promoted")
            target = next(n for n in c.nodes if n not in (follower, c.nodes[follower].leader_id))
            await c.nodes[follower].transfer_leadership(target)
            await wait_until(lambda: c.nodes[follower].leader_id == target, "the transfer")
            await c.nodes[follower].remove_member(4)
            await wait_until(
                lambda: (
                    4 not in c.nodes[target].members["learners"] + c.nodes[target].members["voters"]
                ),
                "the removal",
            )

    run(scenario)


def test_a_restarted_node_replays_to_the_same_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path) as c:
            follower = await c.follower()
            for amount in (1, 2, 3):
                await c.accounts[follower].deposit(amount)
            await c.nodes[follower].stop()
            restarted = c.make(follower)
            await restarted.start()
            await wait_until(lambda: c.accounts[follower].balance == 6, "the replay")

    run(scenario)


def test_events_tell_role_and_leader_changes(tmp_path: Path) -> None:
    async def scenario() -> None:
        ids = [1, 2, 3]
        c = Cluster(tmp_path, ids)
        seen: dict[int, list[int | None]] = {node_id: [] for node_id in ids}
        roles: list[str] = []
        try:
            for node_id in ids:
                node = c.make(node_id)
                node.on_leader_change(seen[node_id].append)
                node.on_role_change(lambda role, term: roles.append(role))
                await node.start()
            leader = await c.leader()
            await wait_until(lambda: all(leader in seen[n] for n in ids), "every node told")
            assert "leader" in roles
            for told in seen.values():  # told of changes only
                assert all(a != b for a, b in itertools.pairwise(told)), told
        finally:
            for node in c.nodes.values():
                await node.stop()

    run(scenario)


def test_a_lock_expires_when_its_holder_stops_renewing(tmp_path: Path) -> None:
    async def scenario() -> None:
        ids = [1, 2, 3]
        ports = {node_id: free_port() for node_id in ids}
        locks = {node_id: ReplLock() for node_id in ids}
        nodes = [
            AsyncNode(
                node_id,
                listen=("127.0.0.1", ports[node_id]),
                data_dir=str(tmp_path / f"n{node_id}"),
                objects={"locks": locks[node_id]},
                peers={p: ("127.0.0.1", port) for p, port in ports.items() if p != node_id},
                options=TIMING,
            )
            for node_id in ids
        ]
        try:
            for node in nodes:
                await node.start()
            leader = await nodes[0].wait_for_leader(DEADLINE_SECONDS)
            follower = next(n for n in ids if n != leader)
            assert await locks[follower].acquire("job", "worker-a", 0.5)
            assert not await locks[follower].acquire("job", "worker-b", 0.5)
            started = asyncio.get_running_loop().time()
            await wait_until(
                lambda: all(lock.holder("job") is None for lock in locks.values()), "the expiry"
            )
            assert asyncio.get_running_loop().time() - started >= 0.5 * 0.9
            assert await locks[follower].acquire("job", "worker-b", 0.5)
        finally:
            for node in nodes:
                await node.stop()

    run(scenario)


# --- the blocking API -----------------------------------------------------------------------
@contextlib.contextmanager
def blocking_cluster(tmp_path: Path) -> Iterator[tuple[dict[int, Node], dict[int, ReplCounter]]]:
    ids = [1, 2, 3]
    ports = {node_id: free_port() for node_id in ids}
    counters = {node_id: ReplCounter() for node_id in ids}
    nodes = {
        node_id: Node(
            node_id,
            listen=("127.0.0.1", ports[node_id]),
            data_dir=str(tmp_path / f"b{node_id}"),
            objects={"hits": counters[node_id]},
            peers={p: ("127.0.0.1", port) for p, port in ports.items() if p != node_id},
            options=TIMING,
        )
        for node_id in ids
    }
    try:
        for node in nodes.values():
            node.start()
        yield nodes, counters
    finally:
        for node in nodes.values():
            node.stop()


def test_blocking_calls_from_many_threads_each_apply_once(tmp_path: Path) -> None:
    with blocking_cluster(tmp_path) as (nodes, counters):
        nodes[1].wait_for_leader(DEADLINE_SECONDS)
        errors: list[BaseException] = []

        def work(node_id: int) -> None:
            try:
                for _ in range(10):
                    counters[node_id].inc()
            except BaseException as error:  # reported below, not lost in the thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(1 + k % 3,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_SECONDS)
        assert not errors
        assert nodes[2].read(counters[2].get) == 60
        assert counters[3].inc.submit().result(DEADLINE_SECONDS) == 61


def test_a_blocking_call_on_the_nodes_own_thread_is_refused(tmp_path: Path) -> None:
    with blocking_cluster(tmp_path) as (nodes, counters):
        nodes[1].wait_for_leader(DEADLINE_SECONDS)
        refused: list[BaseException] = []
        done = threading.Event()

        def on_thread() -> None:
            try:
                counters[1].inc()
            except RuntimeError as error:
                refused.append(error)
            done.set()

        nodes[1]._loop.call_soon_threadsafe(on_thread)
        assert done.wait(DEADLINE_SECONDS)
        assert refused and "own thread" in str(refused[0])
