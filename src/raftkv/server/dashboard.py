"""The live dashboard's data (`GET /ui`, `GET /v1/ui/events`; SPEC §6).

Each node keeps a short `Timeline` of its role, term, leader and membership changes and
can describe itself in a `report` (status, log tail, the leader's replication progress,
its write counters). The node a viewer asks gathers its own report and every peer's
(a forwarded `status` request over the authenticated peer links, server/forwarding.py)
into one snapshot about every `GATHER_SECONDS`, and streams it as Server-Sent Events.

The work is bounded whatever the number of viewers: one gathering loop per node, started
by the first viewer and stopped when the last leaves, its snapshot shared by all; at most
`VIEWERS_MAX` viewers; each viewer holds at most one snapshot not yet sent (a slow one
skips snapshots, it never queues them), and the HTTP server cuts off a client that stops
reading (`STREAM_UNSENT_BYTES_MAX`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from raftkv.errors import RaftError

logger = logging.getLogger("raftkv.node")

GATHER_SECONDS = 0.5
# A peer that has not answered in this long is shown down (its link may still look up).
PEER_ANSWER_SECONDS = 1.0
VIEWERS_MAX = 16
TIMELINE_EVENTS_MAX = 64
LOG_TAIL_ENTRIES = 24
# Throughput and latency samples kept: 5 minutes at one per gathering.
RATE_SAMPLES_MAX = int(300 / GATHER_SECONDS)


class Timeline:
    """The last TIMELINE_EVENTS_MAX changes of one node's role, term, leader and
    membership, oldest first, each stamped with the wall clock (viewers compare nodes)."""

    def __init__(self, events_max: int = TIMELINE_EVENTS_MAX) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=events_max)

    def role_changed(self, role: str, term: int, leader: int | None) -> None:
        self._events.append(
            {"time": time.time(), "kind": "role", "role": role, "term": term, "leader": leader}
        )

    def membership_changed(self, index: int, members: list[int], learners: list[int]) -> None:
        self._events.append(
            {
                "time": time.time(),
                "kind": "membership",
                "index": index,
                "members": members,
                "learners": learners,
            }
        )

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)


def encode_event(snapshot: Mapping[str, Any]) -> bytes:
    """One Server-Sent Event carrying `snapshot` (JSON has no raw newlines: one line)."""
    return b"data: " + json.dumps(snapshot, separators=(",", ":")).encode() + b"\n\n"


class PeerAsker(Protocol):
    """Asks one peer for its report; raises on no answer in time."""

    async def __call__(self, peer: int, timeout_seconds: float) -> dict[str, Any]: ...


class DashboardSource(Protocol):
    """What the gathering reads of its own node (`RaftServer`)."""

    @property
    def id(self) -> int: ...

    def dashboard_report_dict(self) -> dict[str, Any]: ...

    def dashboard_peers(self) -> list[int]:
        """The peers to ask: every member and known address but this node."""

    def peer_connected(self, peer: int) -> bool: ...


class _Rates:
    """Writes per second and mean write latency, from the leader's counters at each
    gathering (the leader proposes every write, so its view is the cluster's)."""

    def __init__(self) -> None:
        self.samples: deque[dict[str, Any]] = deque(maxlen=RATE_SAMPLES_MAX)
        # The leader's id, when sampled, its writes applied and their seconds in total.
        self._last: tuple[int, float, int, float] | None = None

    def add(self, leader: dict[str, Any] | None, now: float) -> None:
        if leader is None:
            self._last = None
            self.samples.append({"time": time.time(), "writes_per_second": 0, "latency_ms": None})
            return
        counters = leader.get("counters", {})
        current = (
            int(leader["id"]),
            now,
            int(counters.get("writes", 0)),
            float(counters.get("write_seconds", 0.0)),
        )
        last, self._last = self._last, current
        if last is None or last[0] != current[0] or current[1] <= last[1]:
            return  # a new leader's counters are its own: start over from them
        writes = current[2] - last[2]
        seconds = current[1] - last[1]
        latency = (current[3] - last[3]) / writes * 1000 if writes > 0 else None
        self.samples.append(
            {
                "time": time.time(),
                "writes_per_second": round(max(0, writes) / seconds, 1),
                "latency_ms": round(latency, 2) if latency is not None else None,
            }
        )


class _ViewerStream:
    """One viewer's events: a comment at once (the client sees the stream open), then each
    snapshot. An iterator object rather than an async generator: `aclose()` must let the
    viewer go even when the stream was never iterated (a HEAD request, a client gone before
    the first event), and a generator never started runs no `finally`."""

    def __init__(
        self, queue: asyncio.Queue[bytes], leave: Callable[[asyncio.Queue[bytes]], None]
    ) -> None:
        self._queue = queue
        self._leave: Callable[[asyncio.Queue[bytes]], None] | None = leave
        self._opened = False

    def __aiter__(self) -> _ViewerStream:
        return self

    async def __anext__(self) -> bytes:
        if self._leave is None:
            raise StopAsyncIteration
        if not self._opened:
            self._opened = True
            return b": raftkv dashboard\nretry: 1000\n\n"
        event = await self._queue.get()
        if not event:  # the node is stopping (`Dashboard.close`)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        if self._leave is not None:
            leave, self._leave = self._leave, None
            leave(self._queue)


class Dashboard:
    """One node's gathering loop and its viewers."""

    def __init__(
        self,
        source: DashboardSource,
        ask_peer: PeerAsker,
        *,
        gather_seconds: float = GATHER_SECONDS,
        answer_seconds: float = PEER_ANSWER_SECONDS,
        viewers_max: int = VIEWERS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ask_peer = ask_peer
        self._gather_seconds = gather_seconds
        self._answer_seconds = answer_seconds
        self.viewers_max = viewers_max
        self._clock = clock
        # Each viewer's next snapshot: a queue of one, replaced when a newer one comes.
        self._viewers: set[asyncio.Queue[bytes]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._latest: bytes | None = None
        self._rates = _Rates()
        self.rounds = 0  # gatherings done (tests wait on it)

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @property
    def gathering(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def open_stream(self) -> AsyncIterator[bytes] | None:
        """A viewer's stream of events, or None when VIEWERS_MAX are watching already.
        The viewer counts from now (not from its first iteration): the limit holds."""
        if len(self._viewers) >= self.viewers_max:
            return None
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        if self._latest is not None:
            queue.put_nowait(self._latest)  # at once on connect
        self._viewers.add(queue)
        if not self.gathering:
            self._loop_task = asyncio.get_running_loop().create_task(
                self._gather_loop(), name="dashboard-gather"
            )
        return _ViewerStream(queue, self._leave)

    def _leave(self, queue: asyncio.Queue[bytes]) -> None:
        self._viewers.discard(queue)
        if not self._viewers and self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None
            self._latest = None  # stale by the next viewer

    def close(self) -> None:
        """The node is stopping: stop gathering and end every viewer's stream."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None
        for queue in self._viewers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(b"")

    async def _gather_loop(self) -> None:
        while True:
            started = self._clock()
            try:
                snapshot = await self.gather()
            except Exception:
                # A bug of ours: said loudly, and the next round tried; viewers keep the
                # last snapshot rather than a stream that silently stopped.
                logger.exception("gathering the dashboard's snapshot failed")
                await asyncio.sleep(self._gather_seconds)
                continue
            event = encode_event(snapshot)
            self._latest = event
            self.rounds += 1
            for queue in self._viewers:
                if queue.full():  # a viewer behind: it gets the newest, not a backlog
                    queue.get_nowait()
                queue.put_nowait(event)
            await asyncio.sleep(max(0.0, self._gather_seconds - (self._clock() - started)))

    async def _peer_report(self, peer: int) -> dict[str, Any]:
        down = {"id": peer, "status": "down"}
        if not self._source.peer_connected(peer):
            return {**down, "reason": "not connected"}
        try:
            report = await self._ask_peer(peer, self._answer_seconds)
        except (RaftError, ValueError, TimeoutError) as error:
            return {**down, "reason": str(error) or type(error).__name__}
        return {**report, "id": peer, "status": "up"}

    async def gather(self) -> dict[str, Any]:
        """One snapshot of the cluster as this node sees it (SPEC §6's fields)."""
        source = self._source
        own = {**source.dashboard_report_dict(), "status": "up"}
        peers = source.dashboard_peers()
        answers = await asyncio.gather(*(self._peer_report(peer) for peer in peers))
        nodes = sorted([own, *answers], key=lambda report: int(report["id"]))
        up = [report for report in nodes if report["status"] == "up"]
        leaders = [report for report in up if report.get("role") == "leader"]
        # Two nodes may both believe they lead for a moment (the old one not yet told):
        # the higher term's is the leader.
        leader = max(leaders, key=lambda report: int(report["term"]), default=None)
        self._rates.add(leader, self._clock())
        timeline = sorted(
            (
                {**event, "node": report["id"]}
                for report in nodes
                for event in report.get("timeline", ())
            ),
            key=lambda event: float(event["time"]),
        )[-TIMELINE_EVENTS_MAX * 2 :]
        for report in nodes:
            report.pop("timeline", None)
            report.pop("counters", None)
        return {
            "time": time.time(),
            "served_by": source.id,
            "leader": leader["id"] if leader is not None else None,
            "term": max((int(report["term"]) for report in up), default=0),
            "nodes": nodes,
            "progress": leader.get("progress", []) if leader is not None else [],
            "timeline": timeline,
            "rates": list(self._rates.samples),
        }


async def ask_peer_status(
    ask: Callable[..., Any], peer: int, timeout_seconds: float
) -> dict[str, Any]:
    """A peer's report through forwarding's `ask` (a `status` request)."""
    reply = await ask(peer, "status", b"", timeout_seconds)
    report = json.loads(reply.payload or b"{}")
    if not isinstance(report, dict):
        raise ValueError("a status report must be a JSON object")
    return report
