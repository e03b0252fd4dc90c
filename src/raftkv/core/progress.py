"""The leader's view of each follower (etcd's tracker): how far it matches, what to send
next, and how much may be in flight.

States: PROBE sends one AppendEntries at a time until a match is found (after a reject or a
restart); REPLICATE streams optimistically with a bounded window of messages in flight;
SNAPSHOT waits for an InstallSnapshot transfer to finish.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from raftkv.core.ready import SnapshotMeta


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


# Module constants: an enum member looked up on its class costs a class lookup on every use.
_PROBE: Final = ProgressState.PROBE
_REPLICATE: Final = ProgressState.REPLICATE
_SNAPSHOT: Final = ProgressState.SNAPSHOT


class Progress:
    __slots__ = (
        "inflight",
        "inflight_max",
        "match",
        "next",
        "probe_sent",
        "recent_active",
        "snapshot",
        "snapshot_acked_offset",
        "snapshot_sent_offset",
        "snapshot_window_chunks",
        "state",
    )

    def __init__(self, next_index: int, inflight_max: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = _PROBE
        self.probe_sent = False
        # Last index carried by each AppendEntries in flight, oldest first.
        self.inflight: deque[int] = deque()
        self.inflight_max = inflight_max
        # Heard from since the last check-quorum round.
        self.recent_active = False
        # InstallSnapshot transfer: the snapshot being sent (held until the transfer ends,
        # even if the leader takes a newer one meanwhile), how far sent and acknowledged.
        self.snapshot: tuple[SnapshotMeta, bytes] | None = None
        # Chunks allowed unacknowledged: one after a stall, doubling with each acknowledged
        # advance up to the configured window (so a slow link is not flooded with resends).
        self.snapshot_window_chunks = 1
        self.snapshot_sent_offset = 0
        self.snapshot_acked_offset = 0

    @property
    def snapshot_index(self) -> int:
        return self.snapshot[0].index if self.snapshot is not None else 0

    def become_probe(self) -> None:
        if self.state is _SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.snapshot = None
        self.state = _PROBE
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.snapshot = None
        self.state = _REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot: tuple[SnapshotMeta, bytes], window_chunks: int) -> None:
        self.state = _SNAPSHOT
        self.snapshot = snapshot
        self.snapshot_window_chunks = window_chunks
        self.snapshot_sent_offset = self.snapshot_acked_offset = 0
        self.inflight.clear()

    def is_paused(self) -> bool:
        if self.state is _PROBE:
            return self.probe_sent
        if self.state is _REPLICATE:
            return len(self.inflight) >= self.inflight_max
        return True

    def update_match(self, index: int) -> bool:
        """Record that the follower holds our log through `index`; True if that is news."""
        if index > self.match:
            self.match = index
            self.next = max(self.next, index + 1)
            self.probe_sent = False
            while self.inflight and self.inflight[0] <= index:
                self.inflight.popleft()
            return True
        return False

    def sent_entries(self, last_index: int) -> None:
        if self.state is _REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def decrease_to(self, rejected: int, next_hint: int) -> bool:
        """Back off after the follower rejected `prev_log_index == rejected`; False when the
        rejection is stale (a duplicate or an answer to an older message)."""
        if self.state is _REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        if rejected <= self.match:
            # It rejects what it acknowledged: not the log it had (a new incarnation under
            # the same id). Probing below `match` is never allowed, and probing here again at
            # once made the two ping-pong as fast as the network goes: the next heartbeat
            # probes again.
            return False
        self.next = max(min(rejected, next_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
