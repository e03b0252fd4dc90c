"""Watches (SPEC §6, "Watches"): `GET /v1/watch` streams the key changes of a range as
NDJSON lines, from the node's own applied state.

The hub is the store's change observer: every change goes into the node's history
(`watch_history.py`), never straight to a client. Each watcher is a place in that history
and a range; its stream reads the history from its place when it is woken, so applying an
entry costs one append whatever the number of watchers, and nothing in the apply path ever
waits for a client. Wake-ups are coalesced (at most one per `flush_seconds`), so that under
load a watcher is written a batch of changes rather than one write per entry.

A watcher whose client does not read falls behind in the history. Its stream stops taking
changes while its connection holds a piece's worth unsent (the client is behind: no sense
in buffering more), and is cut off with an error line if, while so held back, it is more
than `buffer_bytes_max` of changes behind the end of the history, or once its place has
been trimmed from the history.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import msgspec

from raftkv.kv.changes import ChangeObserver, KeyChange
from raftkv.kv.ranges import KeyRange
from raftkv.server.http_server import StreamOutput
from raftkv.server.watch_history import HistoryLimits, WatchHistory

_encode = msgspec.json.Encoder().encode
# A stream scans at most this many changes of the history per step before letting the
# event loop run: a watcher of a narrow range catching up on a long history never holds it.
SCAN_STEP_MAX = 20_000
WATCHERS_MAX_DEFAULT = 4096
# A progress line is sent when it is due within this long.
PROGRESS_EARLY_SECONDS = 0.01
# Pieces kept for other watchers of the same range and place (cleared when full).
PIECES_SHARED_MAX = 1024
# How often a stream whose client is behind looks again at its connection.
PACE_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class WatchLimits:
    """A node's watch limits (NodeOptions.watch)."""

    watchers_max: int = WATCHERS_MAX_DEFAULT
    history: HistoryLimits = field(default_factory=HistoryLimits)
    # A watcher more than this many bytes of changes (its range's or not) behind the newest
    # one is cut off (`slow_watcher`): its buffer, shared in the history.
    buffer_bytes_max: int = 4 << 20
    # At most one wake-up of the watchers per this long: a batch of changes per write.
    flush_seconds: float = 0.01
    progress_seconds: float = 1.0
    # A write to a watcher's connection: whole indexes, about this many bytes; and no more is
    # taken while this much is unsent.
    piece_bytes: int = 64 << 10


class Compacted(Exception):
    """The history no longer holds the changes after the index asked for (HTTP 410)."""

    def __init__(self, oldest_index: int) -> None:
        super().__init__(f"changes up to index {oldest_index} are no longer held")
        self.oldest_index = oldest_index


class TooManyWatchers(Exception):
    """The node serves as many watchers as it allows (HTTP 503 `overloaded`)."""


class WatchHubClosed(Exception):
    """The node is stopping: it opens no more watchers (HTTP 503 `no_leader`)."""


def compacted_line(oldest_index: int) -> bytes:
    return _encode({"type": "error", "error": "compacted", "oldest_index": oldest_index}) + b"\n"


def _slow_line(buffer_bytes_max: int) -> bytes:
    message = f"this watcher fell more than {buffer_bytes_max} bytes of changes behind; resume"
    return _encode({"type": "error", "error": "slow_watcher", "message": message}) + b"\n"


class WatchHub:
    """A node's watchers and the history they read (owned by the runtime, for its life).
    Also the store's `ChangeObserver`."""

    def __init__(
        self,
        limits: WatchLimits | None = None,
        oldest_index: int = 0,
        next_observer: ChangeObserver | None = None,
    ) -> None:
        self.limits = limits or WatchLimits()
        # An observer the store had before the hub took its place: told everything too.
        self.next_observer = next_observer
        self.history = WatchHistory(self.limits.history, oldest_index)
        # Insertion-ordered (a dict, not a set): streams are woken in this order, and a set
        # of objects iterates in memory-address order, which differs from run to run and
        # made the whole-node simulator's seeds with watchers unrepeatable.
        self._streams: dict[WatchStream, None] = {}
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = -math.inf
        self._flushed_through = 0  # the history's end at the last wake-up
        # Set by `close()`: a watcher opened after it (a request read while the node stops)
        # would never be ended, and its progress lines would hold its client there.
        self._closed = False
        self.events_sent_total = 0
        # Pieces scanned since the history last grew, by range and place (`_take`).
        self.pieces: dict[tuple[object, ...], tuple[bytes | None, int, int]] = {}
        self.cut_offs: dict[str, int] = {"slow_watcher": 0, "compacted": 0}

    # --- the store's observer (kv/changes.py) ----------------------------------------------
    def changed(self, change: KeyChange) -> None:
        self.history.changed(change)
        if self.next_observer is not None:
            self.next_observer.changed(change)

    def restored(self, index: int) -> None:
        """A snapshot replaced the state: no watcher's place follows on from it any more."""
        self.history.restored(index)
        if self.next_observer is not None:
            self.next_observer.restored(index)
        for stream in list(self._streams):
            self.cut_off(stream, "compacted", compacted_line(index))

    # --- told by the runtime ------------------------------------------------------------
    def applied_through(self, index: int) -> None:
        """Entries up to `index` are applied: their changes may go out (coalesced)."""
        history = self.history
        history.applied_through(index)
        if self._streams and self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = self._last_flush + self.limits.flush_seconds - loop.time()
            if delay <= 0:
                self._flush_handle = loop.call_soon(self._flush)
            else:
                self._flush_handle = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        end = self.history.end
        if end == self._flushed_through:
            return  # entries without changes: progress lines keep their own time
        self._flushed_through = end
        self.pieces.clear()  # of a shorter history: never asked again
        for stream in self._streams:
            stream.wake()

    # --- watchers -------------------------------------------------------------------------
    @property
    def watchers(self) -> int:
        return len(self._streams)

    def open(
        self,
        key_range: KeyRange,
        from_index: int | None,
        *,
        prev: bool = False,
        output: StreamOutput | None = None,
    ) -> WatchStream:
        """A watcher of the changes of `key_range` at indexes after `from_index` (None: the
        applied index). Raises `TooManyWatchers`, `WatchHubClosed` once the node is stopping,
        or `Compacted` when the history no longer holds them all; the place is taken now,
        synchronously, so none is missed."""
        if self._closed:
            raise WatchHubClosed("this node is shutting down")
        if len(self._streams) >= self.limits.watchers_max:
            raise TooManyWatchers(f"this node serves {self.limits.watchers_max} watchers already")
        history = self.history
        if from_index is None:
            from_index = history.applied_index
        if from_index < history.oldest_index:
            raise Compacted(history.oldest_index)
        stream = WatchStream(
            self, key_range, from_index, prev, history.position_after(from_index), output
        )
        self._streams[stream] = None
        return stream

    def leave(self, stream: WatchStream) -> None:
        self._streams.pop(stream, None)

    def cut_off(self, stream: WatchStream, reason: str, line: bytes) -> None:
        """End `stream` with an error line: it can no longer be served exactly."""
        if stream in self._streams:
            del self._streams[stream]
            self.cut_offs[reason] = self.cut_offs.get(reason, 0) + 1
            stream.end_with(line)

    def close(self) -> None:
        """The node is stopping: end every stream (its client resumes on another node), and
        open no more."""
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for stream in list(self._streams):
            del self._streams[stream]
            stream.end_with(b"")


class WatchStream:
    """One watcher's NDJSON stream: an async iterator of pieces, each the lines of whole
    indexes (plus a progress line when one is due). An iterator object rather than an async
    generator, so that `aclose()` lets the watcher go even if it was never iterated."""

    def __init__(
        self,
        hub: WatchHub,
        key_range: KeyRange,
        from_index: int,
        prev: bool,
        position: int,
        output: StreamOutput | None,
    ) -> None:
        self._hub = hub
        self._start = key_range.start
        self._end = key_range.end
        self.from_index = from_index
        self._prev = prev
        self.position = position  # the next change of the history to look at
        self._output = output
        self._final: bytes | None = None  # the last piece (an error line), then the end
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._next_progress = -math.inf

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> bytes:
        hub = self._hub
        limits = hub.limits
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._final is not None:
                final, self._final = self._final, None
                await self.aclose()
                if final:
                    return final
                raise StopAsyncIteration
            history = hub.history
            if self.position < history.first:
                hub.cut_off(self, "compacted", compacted_line(history.oldest_index))
                continue
            unsent = self._output.unsent_bytes() if self._output is not None else 0
            if unsent >= limits.piece_bytes:
                # The client is behind: let it read first, unless it is too far behind.
                if history.bytes_behind(self.position) > limits.buffer_bytes_max:
                    hub.cut_off(self, "slow_watcher", _slow_line(limits.buffer_bytes_max))
                else:
                    await self._wait(PACE_SECONDS)
                continue
            piece = self._take(limits.piece_bytes)
            if piece is None:
                await asyncio.sleep(0)  # a long stretch of other keys' changes: scan on
                continue
            now = loop.time()
            caught_up = self.position >= history.end
            # Due a little early too: timers may fire up to the clock's resolution before
            # their time (asyncio's, a simulated loop's quantum), and waiting for the rest
            # would spin.
            if caught_up and now + PROGRESS_EARLY_SECONDS >= self._next_progress:
                self._next_progress = now + limits.progress_seconds
                piece += _encode({"type": "progress", "index": history.applied_index}) + b"\n"
            if piece:
                return piece
            await self._wait(self._next_progress - now)  # nothing new: caught up

    def _take(self, budget: int) -> bytes | None:
        """The lines of the changes from this watcher's place on that it wants, whole indexes
        of them up to about `budget` bytes; None when it scanned SCAN_STEP_MAX changes and
        found none (it has not reached the end). Watchers of one range at one place (most,
        under load: woken together) share one scan."""
        hub = self._hub
        history = hub.history
        shared = (
            self._start, self._end, self.from_index, self._prev, self.position, budget,
            history.first, history.end,
        )  # fmt: skip
        found = hub.pieces.get(shared)
        if found is None:
            found = self._scan(budget)
            if len(hub.pieces) >= PIECES_SHARED_MAX:
                hub.pieces.clear()
            hub.pieces[shared] = found
        piece, self.position, count = found
        hub.events_sent_total += count
        return piece

    def _scan(self, budget: int) -> tuple[bytes | None, int, int]:
        """`_take`'s work: (the piece, the place after it, its events)."""
        history = self._hub.history
        stop = min(history.end, self.position + SCAN_STEP_MAX)
        start_key, end_key, from_index, prev = self._start, self._end, self.from_index, self._prev
        lines: list[bytes] = []
        size = 0
        last_index = -1
        position = self.position
        for event in history.events(position, stop):
            if size >= budget and event.index != last_index:
                break
            position += 1
            key = event.key
            if event.index > from_index and start_key <= key and (end_key is None or key < end_key):
                line = event.line(prev)
                lines.append(line)
                size += len(line)
                last_index = event.index
        if not lines:
            return (None if position < history.end else b""), position, 0
        return b"".join(lines), position, len(lines)

    async def _wait(self, timeout: float) -> None:
        """Until woken (new changes) or `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        handle = loop.call_later(max(0.0, timeout), _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end_with(self, line: bytes) -> None:
        """End after `line` (b"": at once)."""
        self._final = line
        self.wake()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub.leave(self)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
