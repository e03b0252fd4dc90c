"""Watching a range (SPEC §6, "Watches") without any I/O, shared by the clients: the request,
the reading of the NDJSON stream, and the cursor that makes a reconnect exact.

Every node applies the same log, so every node sends a watcher the same events in the same
order, the events of one index together. A watcher that loses its node resumes on another
from the last index whose events it has all received, and drops the events it already
delivered of an index it received only part of: none is missed, none is seen twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec

from raftkv import errors
from raftkv.client.errors import RETRYABLE, BadRequest, BadResponse, WatchCompacted
from raftkv.client.limits import BACKOFF_INITIAL_SECONDS, BACKOFF_MAX_SECONDS
from raftkv.client.protocol import KeyRangeQuery, Request
from raftkv.client.routing import ClusterView

WATCH_PATH = "/v1/watch"
# A node sends a progress line about every second: a stream silent this long is taken as
# lost (a node that hangs, a dropped connection) and resumed elsewhere.
WATCH_SILENCE_SECONDS_MAX = 5.0
# The longest line read from a stream: a put's line with a value at the largest value limit,
# JSON-escaped, twice (with `prev_value`).
WATCH_LINE_BYTES_MAX = 2 * 6 * (1 << 20) + (64 << 10)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of a watched key: `type` "put" (with the key's value and revisions after
    it) or "delete" (`mod_index` is the deleting index); `prev_value` when asked for."""

    type: str
    key: str
    mod_index: int
    value: str | None = None
    create_index: int | None = None
    version: int | None = None
    prev_value: str | None = None

    @property
    def index(self) -> int:
        """The log index of the change."""
        return self.mod_index


def watch_request(
    keys: KeyRangeQuery, key: str | None, from_index: int | None, prev: bool
) -> Request:
    parameters = keys.parameters()
    if key is not None:
        if parameters:
            message = "watch a key, or a range (prefix, start/end): not both"
            raise BadRequest(message, {"message": message})
        parameters = {"key": key}
    if from_index is not None:
        parameters["from_index"] = str(from_index)
    if prev:
        parameters["prev"] = "true"
    query = urlencode(parameters)
    return Request("GET", WATCH_PATH + ("?" + query if query else ""), leader_only=False)


_decode_line = msgspec.json.Decoder(dict[str, Any]).decode


def decode_line(line: bytes, node_id: int) -> dict[str, Any]:
    try:
        decoded = _decode_line(line)
    except msgspec.DecodeError:
        message = f"node {node_id} sent a watch line that is not a JSON object"
        raise BadResponse(message, {"node": node_id, "message": message}) from None
    if not isinstance(decoded.get("type"), str):
        message = f"node {node_id} sent a watch line without a type"
        raise BadResponse(message, {"node": node_id, "message": message})
    return decoded


def event_of(line: dict[str, Any]) -> WatchEvent:
    try:
        return msgspec.convert(line, WatchEvent)
    except msgspec.ValidationError as error:
        message = f"a malformed watch event: {error}"
        raise BadResponse(message, {"message": message}) from None


class WatchCursor:
    """Where a watch stands, to resume it exactly on any node. `complete` is the index up to
    which every event has been delivered (None: not known yet, the watch starts "now");
    `partial` the index after it whose events have been delivered in part (`delivered` of
    them), since a stream may break in the middle of an index's events."""

    def __init__(self, from_index: int | None) -> None:
        self.complete = from_index
        self.partial: int | None = None
        self.delivered = 0
        self._skip = 0  # events of `partial` the new stream sends again

    def resume_from(self) -> int | None:
        """The `from_index` of the next connection; its first events of `partial` (as many
        as were delivered) are dropped."""
        self._skip = self.delivered if self.partial is not None else 0
        if self.partial is not None:
            return self.partial - 1  # no event of the range lies between `complete` and it
        return self.complete

    def accept(self, line: dict[str, Any]) -> WatchEvent | None:
        """The event a line brings to deliver, or None (progress, an event seen already).
        Error lines are the caller's."""
        kind = line["type"]
        if kind == "progress":
            index = line.get("index")
            if isinstance(index, int) and (self.partial is None or index >= self.partial):
                if self.complete is None or index > self.complete:
                    self.complete = index
                if self.partial is not None:
                    self.partial, self.delivered, self._skip = None, 0, 0
            return None
        event = event_of(line)
        index = event.index
        if self.complete is not None and index <= self.complete:
            return None  # not after what was delivered: a node never sends it
        if index == self.partial:
            if self._skip:
                self._skip -= 1
                return None
            self.delivered += 1
            return event
        if self.partial is not None:  # a later index: the one before is complete
            self.complete = self.partial
        self.partial, self.delivered, self._skip = index, 1, 0
        return event


class WatchLost(errors.ClientError):
    """A stream ended or broke where it could go on elsewhere: its node stopped, cut it off
    as too slow, or fell silent. The watch resumes on another node."""

    def __init__(self, message: str, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.payload = {"error": "watch_lost", "message": message, **(payload or {})}


def lost_from_error_line(line: dict[str, Any], node_id: int) -> errors.ClientError:
    """What an error line of a stream means: `compacted` is the node's answer for good (the
    watch may go on where the history is longer), anything else a stream to resume."""
    payload = {**line, "node": node_id}
    payload.pop("type", None)
    message = f"node {node_id} ended the watch: {line.get('message') or line.get('error')}"
    if line.get("error") == "compacted":
        return WatchCompacted(message, payload, 410)
    return WatchLost(message, payload)


class WatchRoute:
    """Which node a watch streams from next, and when it gives up (no I/O).

    Any node serves a watch. Without a target it starts at the first node of the map and
    moves to the next after each stream lost; with one it stays there. It gives up when no
    node has sent a line for the client's timeout (the last failure is raised), when every
    node answered `compacted` since the last line received (`WatchCompacted`), or at once
    for a failure no other node would answer differently (a bad request, a refused token)."""

    def __init__(
        self,
        view: ClusterView,
        *,
        target: int | None,
        timeout_seconds: float,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self.target = target
        self.node = target if target is not None else next(iter(view.addresses))
        self.timeout_seconds = timeout_seconds
        self._rng = rng
        self._clock = clock
        self._failing_since: float | None = None
        self._failures = 0
        self._compacted: dict[int, WatchCompacted] = {}

    def streaming(self) -> None:
        """A line arrived: the node serves the watch."""
        self._failing_since = None
        self._failures = 0
        self._compacted.clear()

    def failed(self, error: errors.ClientError) -> float:
        """Seconds to wait before streaming from `self.node`; raises `error` when final."""
        if isinstance(error, WatchCompacted):
            self._compacted[self.node] = error
            nodes = {self.target} if self.target is not None else set(self.view.addresses)
            if nodes <= set(self._compacted):
                raise error
        elif not isinstance(error, (*RETRYABLE, WatchLost, errors.NotLeader)):
            raise error
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > self.timeout_seconds:
            raise error
        if self.target is None:
            self.node = self.view.next_after(self.node)
        self._failures += 1
        rounds, within_round = divmod(
            self._failures, 1 if self.target else len(self.view.addresses)
        )
        if within_round:
            return 0.0
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** min(rounds, 16))
        return self._rng.uniform(ceiling / 2, ceiling)
