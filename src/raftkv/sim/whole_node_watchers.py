"""The whole-node simulator's watchers: `GET /v1/watch` through a node's real HTTP handler,
resumed as the client libraries resume (`client.watching.WatchCursor`), checked at the end
against the committed log (`check.watches`).

A watcher streams from one node at a time and hops to another at random moments, after a
silence (its node crashed, paused or stopped), after an error line, or when a node answers
410; so every run resumes watches on other nodes across crashes, restarts from snapshots and
snapshot installs. The stream is served in the node's own process (a crash kills it), and
handed over through a queue, as bytes cross a socket. A watcher that every node answers 410
(they all hold changes from a later index only) starts a new segment there; each segment is
checked on its own.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftkv.check.watches import ObservedEvent, WatchObservation
from raftkv.client.watching import WatchCursor
from raftkv.kv.ranges import KeyRange
from raftkv.server.http_server import Request, Response

if TYPE_CHECKING:
    from raftkv.sim.whole_node import WholeNodeSimulation

# A node sends a progress line every second: this long without a line, the stream is lost.
SILENCE_SECONDS = 2.5
# How long a watcher stays with one node before hopping to another (drawn per stream).
STREAM_SECONDS_MIN = 0.3
STREAM_SECONDS_MAX = 2.5
PREFIXES = ("", "x", "y")


@dataclass
class WatcherStats:
    events: int = 0
    streams: int = 0
    compacted: int = 0  # 410 answers and compacted error lines
    segments: int = 0


class Watcher:
    """One watcher of a prefix of the clients' keys (or of every key), from index 0."""

    def __init__(self, simulation: WholeNodeSimulation, number: int, rng: random.Random) -> None:
        self.simulation = simulation
        self.rng = rng
        self.name = f"watch{number}"
        self.prefix = rng.choice(PREFIXES)
        self.key_range = KeyRange.prefix(self.prefix) if self.prefix else KeyRange()
        self.segments: list[WatchObservation] = []
        self.stats = WatcherStats()
        self._compacted_in_a_row = 0
        self._oldest_seen = 0
        self._cursor = self._new_segment(0)
        self.target = rng.choice(simulation.node_ids)

    def _new_segment(self, from_index: int) -> WatchCursor:
        self.segments.append(
            WatchObservation(
                f"{self.name}#{len(self.segments) + 1} ({self.prefix or 'every key'})",
                self.key_range,
                from_index,
                [],
                from_index,
            )
        )
        self.stats.segments += 1
        return WatchCursor(from_index)

    async def run(self) -> None:
        simulation, rng = self.simulation, self.rng
        while simulation.watching:
            await self._stream_once()
            self.target = rng.choice(simulation.node_ids)
            await asyncio.sleep(rng.uniform(0.01, 0.1))

    async def _stream_once(self) -> None:
        simulation = self.simulation
        machine = simulation.machines[self.target]
        server = machine.server
        if server is None or server.api is None:
            return
        self.stats.streams += 1
        query = {"from_index": str(self._cursor.resume_from())}
        if self.prefix:
            query["prefix"] = self.prefix
        queue: asyncio.Queue[bytes | Response] = asyncio.Queue()
        api = server.api

        async def serve() -> None:
            response = await api.handle(Request("GET", "/v1/watch", query, b"", True))
            if isinstance(response, Response):
                queue.put_nowait(response)
                return
            try:
                async for piece in response.pieces:
                    queue.put_nowait(piece)
            finally:
                await response.pieces.aclose()  # type: ignore[attr-defined]

        serving = simulation.in_process(machine.owner, serve())
        loop = simulation.loop
        until = loop.time() + self.rng.uniform(STREAM_SECONDS_MIN, STREAM_SECONDS_MAX)
        try:
            while simulation.watching and loop.time() < until:
                try:
                    async with asyncio.timeout(min(SILENCE_SECONDS, until - loop.time())):
                        item = await queue.get()
                except TimeoutError:
                    return  # lost (the node crashed or paused), or time to hop
                if isinstance(item, Response):
                    self._refused(item)
                    return
                if not item or not self._take(item):
                    return
        finally:
            serving.cancel()  # as a client closing its connection

    def _refused(self, response: Response) -> None:
        answer: dict[str, Any] = json.loads(response.body)
        if answer.get("error") == "compacted":
            self._compacted(int(answer["oldest_index"]))

    def _compacted(self, oldest_index: int) -> None:
        """A node no longer holds the changes after the index to resume from: another may.
        When as many nodes in a row said so as there are, start over where they hold it."""
        self.stats.compacted += 1
        self._compacted_in_a_row += 1
        self._oldest_seen = max(self._oldest_seen, oldest_index)
        if self._compacted_in_a_row >= len(self.simulation.node_ids):
            self._compacted_in_a_row = 0
            self._cursor = self._new_segment(self._oldest_seen)

    def _take(self, piece: bytes) -> bool:
        """The lines of one piece; False when the stream ended with an error line."""
        segment = self.segments[-1]
        cursor = self._cursor
        for raw in piece.splitlines():
            line = json.loads(raw)
            if line["type"] == "error":
                if line.get("error") == "compacted":
                    self._compacted(int(line["oldest_index"]))
                return False
            self._compacted_in_a_row = 0
            event = cursor.accept(line)
            if event is not None:
                segment.events.append(ObservedEvent.of_line(line))
                self.stats.events += 1
            if cursor.complete is not None:
                segment.reached = cursor.complete
        return True
