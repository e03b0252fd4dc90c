"""Linearizable and lease reads served by a follower (server/follower_reads.py): the rule on
a follower with a fake leader (a read never takes the answer of a forward that left before
it; a batch shares one forward; a failure fails the batch and those queued behind it), then
three real servers on virtual time (a write at the leader is read back at a follower; many
reads at once cost the leader a forward or two; `--no-follower-reads` answers 421)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from raftkv.core.messages import ForwardKind
from raftkv.errors import NoLeader, NotLeader, Timeout
from raftkv.server.follower_reads import FollowerReads
from raftkv.server.forwarding import ForwardingError
from raftkv.server.http_server import Request
from raftkv.server.requests import RequestFailed, RequestTracker
from raftkv.server.runtime import RaftServer
from raftkv.sim.event_loop import SimulatedEventLoop
from tests.server.test_leases_cluster import call, leader, run_on_virtual_time
from tests.waiting import wait_until

LEADER = 1


class FakeLeader:
    """`Forwarding.ask` answered by the test: each call waits for `answer(...)`."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, ForwardKind, asyncio.Future[Any]]] = []

    async def ask(
        self, leader: int, kind: ForwardKind, payload: bytes, timeout_seconds: float
    ) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.asked.append((leader, kind, future))
        outcome = await future
        if isinstance(outcome, BaseException):
            raise outcome
        return SimpleNamespace(index=outcome)

    def answer(self, number: int, outcome: int | BaseException) -> None:
        self.asked[number][2].set_result(outcome)


def follower(leader_id: int | None = LEADER) -> tuple[FollowerReads, FakeLeader, Any]:
    host = SimpleNamespace(id=2, node=SimpleNamespace(leader_id=leader_id), storage_failure=None)
    fake = FakeLeader()
    requests = RequestTracker(host, timeout_seconds=5.0)  # type: ignore[arg-type]
    reads = FollowerReads(host, fake, requests, timeout_seconds=5.0)  # type: ignore[arg-type]
    return reads, fake, host


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_read_after_a_forward_left_waits_for_the_next_one() -> None:
    async def main() -> None:
        reads, fake, _ = follower()
        first = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        assert len(fake.asked) == 1
        # Begun while the first forward is out: the leader may have taken its commit index
        # before this read began, so the read must not take that answer.
        second = asyncio.ensure_future(reads.read_index("read_index"))
        third = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        assert len(fake.asked) == 1 and not second.done()
        fake.answer(0, 5)
        await settle()
        assert first.result() == 5 and not second.done()
        assert len(fake.asked) == 2  # the next forward, for both reads queued meanwhile
        fake.answer(1, 7)
        await settle()
        assert (second.result(), third.result()) == (7, 7)
        assert reads.forwards_total == 2 and reads.reads_total == 3

    asyncio.run(main())


def test_linearizable_and_lease_reads_are_batched_apart() -> None:
    async def main() -> None:
        reads, fake, _ = follower()
        linearizable = asyncio.ensure_future(reads.read_index("read_index"))
        lease = asyncio.ensure_future(reads.read_index("lease_read"))
        await settle()
        assert [(leader, kind) for leader, kind, _ in fake.asked] == [
            (LEADER, "read_index"),
            (LEADER, "lease_read"),
        ]
        fake.answer(1, 3)
        fake.answer(0, 4)
        await settle()
        assert (linearizable.result(), lease.result()) == (4, 3)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (ForwardingError("not_leader", "not the leader", 3), NotLeader),
        (ForwardingError("no_leader", "busy; retry", None), NoLeader),
        (ForwardingError("internal", "a bug", 1), RequestFailed),
        (ForwardingError("timeout", "round not confirmed", 1), Timeout),
        (Timeout("node1 did not answer"), Timeout),
    ],
)
def test_a_failed_forward_fails_its_batch_and_the_reads_queued_behind(
    refusal: BaseException, expected: type[BaseException]
) -> None:
    async def main() -> None:
        reads, fake, _ = follower()
        first = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        queued = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        fake.answer(0, refusal)
        await settle()
        for read in (first, queued):
            with pytest.raises(expected):
                read.result()
        if isinstance(refusal, ForwardingError) and refusal.code == "not_leader":
            assert first.exception().leader_id == 3  # type: ignore[union-attr]
        assert len(fake.asked) == 1
        # The next read asks again.
        later = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        fake.answer(1, 9)
        await settle()
        assert later.result() == 9

    asyncio.run(main())


def test_no_leader_known_is_not_leader_at_once() -> None:
    async def main() -> None:
        reads, fake, host = follower(leader_id=None)
        with pytest.raises(NotLeader) as raised:
            await reads.read_index("read_index")
        assert raised.value.leader_id is None and fake.asked == []
        host.node.leader_id = host.id  # (a node that just won: it reads as the leader)
        with pytest.raises(NotLeader):
            await reads.read_index("read_index")

    asyncio.run(main())


def test_a_read_cancelled_by_its_client_leaves_the_batch_answered() -> None:
    async def main() -> None:
        reads, fake, _ = follower()
        gone = asyncio.ensure_future(reads.read_index("read_index"))
        kept = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        gone.cancel()
        await settle()
        fake.answer(0, 6)
        await settle()
        assert gone.cancelled() and kept.result() == 6

    asyncio.run(main())


def test_closing_fails_every_read_waiting() -> None:
    async def main() -> None:
        reads, fake, _ = follower()
        assert fake.asked == []
        out = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        queued = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        reads.close()
        await settle()
        for read in (out, queued):
            with pytest.raises(RequestFailed, match="shutting down"):
                read.result()

    asyncio.run(main())


# --- three real servers ------------------------------------------------------------------


async def get(
    server: RaftServer, path: str, consistency: str = "linearizable"
) -> tuple[int, dict[str, Any]]:
    assert server.api is not None
    request = Request("GET", path, {"consistency": consistency}, b"", True)
    response = await server.api.handle(request)
    return response.status, json.loads(response.body)


def followers(servers: list[RaftServer]) -> list[RaftServer]:
    return [server for server in servers if server.node.role == "follower"]


def test_a_write_at_the_leader_is_read_back_at_a_follower(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        for number in range(5):
            status, written = await call(first, "PUT", "/v1/kv/k", {"value": f"v{number}"})
            assert status == 200, written
            for other in followers(servers):
                status, read = await get(other, "/v1/kv/k")
                assert status == 200, read
                # Linearizable: the acknowledged write, whether or not the follower had
                # applied it when the read began.
                assert read["value"] == f"v{number}" and read["index"] >= written["index"]
                status, read = await get(other, "/v1/kv/k", "lease")
                assert status == 200 and read["value"] == f"v{number}", read
        assert all(other.follower_reads.forwards_total >= 5 for other in followers(servers))

    run_on_virtual_time(tmp_path, body)


def test_many_reads_at_a_follower_cost_the_leader_a_forward_or_two(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        assert (await call(first, "PUT", "/v1/kv/k", {"value": "v"}))[0] == 200
        other = followers(servers)[0]
        answers = await asyncio.gather(*(get(other, "/v1/kv/k") for _ in range(50)))
        assert all(status == 200 and read["value"] == "v" for status, read in answers)
        assert other.follower_reads.reads_total == 50
        assert other.follower_reads.forwards_total <= 2

    run_on_virtual_time(tmp_path, body)


def test_without_follower_reads_a_follower_answers_not_leader(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        other = followers(servers)[0]
        other.options.follower_reads = False
        for consistency in ("linearizable", "lease"):
            status, answer = await get(other, "/v1/kv/k", consistency)
            assert status == 421 and answer["leader_id"] == first.id, answer
        status, answer = await get(other, "/v1/kv/k", "stale")
        assert status == 404, answer  # stale reads are the follower's own, as always
        assert other.follower_reads.forwards_total == 0

    run_on_virtual_time(tmp_path, body)


def test_a_range_at_a_follower_is_linearizable_too(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        for key in ("a", "b", "c"):
            assert (await call(first, "PUT", f"/v1/kv/{key}", {"value": key}))[0] == 200
        other = followers(servers)[0]
        status, answer = await get(other, "/v1/kv")
        assert status == 200, answer
        assert [kv["key"] for kv in answer["kvs"]] == ["a", "b", "c"]

    run_on_virtual_time(tmp_path, body)


def test_a_leader_change_fails_the_forward_out_and_the_queued_reads_ask_the_new_one() -> None:
    async def main() -> None:
        reads, fake, host = follower()
        out = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        queued = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        reads.leader_changed()  # the same leader: nothing happens
        await settle()
        assert not out.done() and len(fake.asked) == 1
        host.node.leader_id = 3  # (cut off from node 1, it learnt of node 3's election)
        reads.leader_changed()
        await settle()
        with pytest.raises(NotLeader) as raised:
            out.result()
        assert raised.value.leader_id == 3
        assert [(leader, kind) for leader, kind, _ in fake.asked] == [
            (LEADER, "read_index"),
            (3, "read_index"),
        ]
        # A read now waits for the forward out to the new leader (not a third forward).
        behind = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        assert len(fake.asked) == 2 and not behind.done()
        fake.answer(1, 12)
        await settle()
        assert queued.result() == 12
        assert len(fake.asked) == 3
        fake.answer(2, 13)
        await settle()
        assert behind.result() == 13
        # Lost altogether: the forward out fails (503 no_leader over HTTP).
        later = asyncio.ensure_future(reads.read_index("read_index"))
        await settle()
        host.node.leader_id = None
        reads.leader_changed()
        await settle()
        with pytest.raises(NotLeader) as raised:
            later.result()
        assert raised.value.leader_id is None

    asyncio.run(main())


def test_a_lease_s_time_left_is_the_leader_s_to_tell(tmp_path: Path) -> None:
    """`GET /v1/lease/{id}`'s `remaining` is the leader's lessor's clock: a follower answers
    it 421 as before (and a stale read with `remaining` null, SPEC §6); the list of leases,
    which holds no time, it serves."""

    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        first = leader(servers)
        status, granted = await call(first, "POST", "/v1/lease", {"ttl": 60})
        assert status == 200, granted
        lease = granted["id"]
        other = followers(servers)[0]
        status, answer = await get(other, f"/v1/lease/{lease}")
        assert status == 421 and answer["leader_id"] == first.id, answer
        await wait_until(
            lambda: other.applied_index >= first.applied_index, "the follower to apply the grant"
        )
        status, answer = await get(other, f"/v1/lease/{lease}", "stale")
        assert status == 200 and answer["remaining"] is None, answer
        status, answer = await get(first, f"/v1/lease/{lease}")
        assert status == 200 and answer["remaining"] > 0, answer
        status, answer = await get(other, "/v1/leases")
        assert status == 200 and [entry["id"] for entry in answer["leases"]] == [lease], answer

    run_on_virtual_time(tmp_path, body)


def test_a_read_the_leader_put_off_is_503_no_leader(tmp_path: Path) -> None:
    async def body(servers: list[RaftServer], loop: SimulatedEventLoop) -> None:
        other = followers(servers)[0]

        async def busy(kind: str) -> int:
            raise NoLeader("the leader refused the read for now: busy; retry")

        other.follower_reads.read_index = busy  # type: ignore[method-assign,assignment]
        status, answer = await get(other, "/v1/kv/k")
        assert status == 503 and answer["error"] == "no_leader", answer

    run_on_virtual_time(tmp_path, body)
