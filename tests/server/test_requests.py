"""RequestTracker: client requests waiting on the core. Deadlines are checked by the ticker
with an explicit `now`, so these tests control time; and a request that ends must leave the
deadline table at once (left there until its deadline, entries piled up by the hundred
thousand and made every full GC pass tens of milliseconds long)."""

from __future__ import annotations

import asyncio

import pytest

from raftkv.core import Entry, EntryKind
from raftkv.errors import Timeout
from raftkv.server.requests import RequestTracker

TIMEOUT = 5.0


class FakeNode:
    """The core as the tracker drives it (requests.ConsensusForRequests): proposals get
    the next index in term 3, read requests are only recorded."""

    def __init__(self) -> None:
        self.next_index = 1
        self.term = 3
        self.read_requests: list[int] = []
        self.leader_id: int | None = 1

    def propose(self, data: bytes) -> tuple[int, int]:
        index, self.next_index = self.next_index, self.next_index + 1
        return index, self.term

    def read_index(self, request_id: int) -> None:
        self.read_requests.append(request_id)


class FakeServer:
    """The node as the tracker sees it (requests.RequestHost): healthy, nothing applied."""

    def __init__(self) -> None:
        self.node = FakeNode()
        self.applied_index = 0
        self.storage_failure: str | None = None

    def wake(self) -> None:
        pass


def make_tracker() -> tuple[RequestTracker, FakeNode]:
    server = FakeServer()
    return RequestTracker(server, timeout_seconds=TIMEOUT), server.node


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_answered_requests_leave_no_deadline_behind() -> None:
    async def main() -> None:
        tracker, node = make_tracker()
        writes = [asyncio.create_task(tracker.propose(b"w")) for _ in range(100)]
        reads = [asyncio.create_task(tracker.read_index()) for _ in range(100)]
        await settle()
        assert tracker.waiting == 200
        for index in range(1, 101):
            tracker.applied(Entry(index=index, term=node.term, kind=EntryKind.NORMAL), "ok")
        for request_id in node.read_requests:
            tracker.read_confirmed(request_id, 7)
        waits = [asyncio.create_task(tracker.wait_applied(9)) for _ in range(10)]
        await settle()
        tracker.applied_through(9)
        assert [await w for w in writes] == [("ok", i) for i in range(1, 101)]
        assert {await r for r in reads} == {7}
        await asyncio.gather(*waits)
        assert tracker.waiting == 0

    asyncio.run(main())


def test_requests_time_out_in_deadline_order_and_only_when_due() -> None:
    async def main() -> None:
        tracker, _ = make_tracker()
        now = [100.0]
        asyncio.get_running_loop().time = lambda: now[0]  # type: ignore[method-assign]
        first = asyncio.create_task(tracker.propose(b"a"))
        await settle()
        now[0] = 101.0
        answered = asyncio.create_task(tracker.propose(b"b"))
        last = asyncio.create_task(tracker.read_index())
        await settle()
        tracker.applied(Entry(index=2, term=3, kind=EntryKind.NORMAL), "ok")
        await settle()
        tracker.expire(100.0 + TIMEOUT - 0.001)  # nothing due yet
        await settle()
        assert not first.done() and not last.done()
        tracker.expire(100.0 + TIMEOUT)  # only the first one is due
        await settle()
        with pytest.raises(Timeout, match="entry 1 not applied in time"):
            await first
        assert not last.done()
        tracker.expire(101.0 + TIMEOUT)
        with pytest.raises(Timeout, match="leadership not confirmed"):
            await last
        assert await answered == ("ok", 2)
        assert tracker.waiting == 0

    asyncio.run(main())


def test_the_loop_is_looked_up_once_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 `asyncio.get_running_loop()` is a getpid() system call; it was one
    per read and write. A tracker whose loop stopped finds the new one (a second run)."""
    tracker, node = make_tracker()
    lookups = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        lookups.append(1)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)

    async def serve(first_index: int) -> None:
        writes = [asyncio.create_task(tracker.propose(b"w")) for _ in range(20)]
        reads = [asyncio.create_task(tracker.read_index()) for _ in range(20)]
        await settle()
        for index in range(first_index, first_index + 20):
            tracker.applied(Entry(index=index, term=node.term, kind=EntryKind.NORMAL), "ok")
        for request_id in node.read_requests[-20:]:
            tracker.read_confirmed(request_id, 1)
        await asyncio.gather(*writes, *reads)

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(serve(1))
        assert len(lookups) == 1
        # Another loop while the first is still open: the tracker must not keep the first.
        asyncio.run(serve(21))
        assert len(lookups) == 2
    finally:
        first.close()
