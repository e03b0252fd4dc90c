"""Saying when the node stood still: the event loop blocked (or the whole process paused),
or a WAL sync that took long. Either stops the node answering its peers, and with election
timeouts of 150-300 ms a stall of that length costs a leader its leadership (check-quorum)
or starts an election; without a word in the log an operator sees only the election.

Each kind is a warning when it reaches `warn_seconds`, at most one line per interval per
kind (the next one counting those left out, so a disk that stalls every sync cannot flood
the log), and every stall is also observed in a histogram (`raft_loop_stall_seconds`,
`raft_fsync_seconds`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from raftkv.server.limited_log import LimitedWarning

logger = logging.getLogger("raftkv.node")

# Long enough that a loaded node on a shared machine does not cry wolf (its longest ordinary
# waits are a few tens of ms), short enough to name the cause of a lost election (150 ms).
STALL_WARN_SECONDS = 0.1
WARNING_INTERVAL_SECONDS = 1.0
# Each warning's opening, followed by "N ms" (raft-bench reads them back: cli/bench_stalls.py).
LOOP_STALL_OPENING = "the event loop stood still for "
SLOW_SYNC_OPENING = "slow WAL sync: "


class StallReporter:
    def __init__(
        self,
        observe_loop_stall: Callable[[float], None],
        observe_sync: Callable[[float], None],
        *,
        warn_seconds: float = STALL_WARN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._observe_loop_stall = observe_loop_stall
        self._observe_sync = observe_sync
        self.warn_seconds = warn_seconds
        self._loop_warnings = LimitedWarning(logger, WARNING_INTERVAL_SECONDS, clock)
        self._sync_warnings = LimitedWarning(logger, WARNING_INTERVAL_SECONDS, clock)

    def loop_stalled(self, seconds: float) -> None:
        """The ticker woke `seconds` after it was due (more than a tick late)."""
        self._observe_loop_stall(seconds)
        if seconds >= self.warn_seconds:
            self._loop_warnings.warn(
                LOOP_STALL_OPENING + "%.0f ms (a blocking call, the process paused,"
                " or no CPU for it): no ticks, messages or requests were handled meanwhile",
                seconds * 1000,
            )

    def synced(self, seconds: float) -> None:
        """A WAL sync took `seconds`."""
        self._observe_sync(seconds)
        if seconds >= self.warn_seconds:
            self._sync_warnings.warn(
                SLOW_SYNC_OPENING + "%.0f ms (the disk is slow or busy): what it holds counted as"
                " stored, and was acknowledged, only after it",
                seconds * 1000,
            )
