"""The bounded queue of frames waiting for one peer.

When a push would exceed the frame or byte limit, the OLDEST frames are dropped. Raft
retransmits, so either choice is safe; dropping the oldest keeps the freshest window, which is
what Raft still needs when the link recovers: the latest term, the latest commit index, the
current heartbeat or vote request. The oldest frames are the likeliest to be superseded (an
AppendEntries the leader will resend from a newer `next_index`, a vote of an election long
over). Dropping the new message instead would deliver a stale backlog first and lose exactly
the messages that reflect the present.
"""

from __future__ import annotations

import asyncio
from collections import deque

from raftkv.transport.limits import FRAME_HEADER_BYTES


class SendQueue:
    __slots__ = ("_bytes", "_payloads", "bytes_max", "frames_max", "nonempty")

    def __init__(self, frames_max: int, bytes_max: int) -> None:
        self.frames_max = frames_max
        self.bytes_max = bytes_max
        self._payloads: deque[bytes] = deque()
        # Frame bytes queued, length prefixes included.
        self._bytes = 0
        # Set whenever a frame is queued; the writer clears it before it waits.
        self.nonempty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._payloads)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def push(self, payload: bytes) -> int:
        """Queue one payload; returns how many older frames were dropped to make room.

        A frame larger than `bytes_max` on its own still goes in, alone: refusing it would
        make it unsendable however idle the link.
        """
        size = len(payload) + FRAME_HEADER_BYTES
        dropped = 0
        while self._payloads and (
            len(self._payloads) >= self.frames_max or self._bytes + size > self.bytes_max
        ):
            oldest = self._payloads.popleft()
            self._bytes -= len(oldest) + FRAME_HEADER_BYTES
            dropped += 1
        self._payloads.append(payload)
        self._bytes += size
        self.nonempty.set()
        return dropped

    def take_batch(self, bytes_max: int) -> list[bytes]:
        """Remove and return the oldest frames, up to `bytes_max` (at least one frame)."""
        batch: list[bytes] = []
        batch_bytes = 0
        payloads = self._payloads
        while payloads:
            size = len(payloads[0]) + FRAME_HEADER_BYTES
            if batch and batch_bytes + size > bytes_max:
                break
            batch.append(payloads.popleft())
            batch_bytes += size
        self._bytes -= batch_bytes
        if not payloads:
            self.nonempty.clear()
        return batch

    def clear(self) -> int:
        """Drop every queued frame; returns how many."""
        dropped = len(self._payloads)
        self._payloads.clear()
        self._bytes = 0
        self.nonempty.clear()
        return dropped
