"""Idle polling: after each Ready at low load that moves a client's request along
(`polls_after`), the CPU the event loop ran on is kept out of halt for a short window
(`NodeOptions.idle_poll_us`, `raft-node --idle-poll-us`), so that what comes next (a
follower's acknowledgement, the end of a WAL sync, the next AppendEntries, the client's
next request) wakes a thread on a CPU already running.

Why: a CPU with nothing to run halts, and in a virtual machine a halted virtual CPU woken
by an interrupt or another CPU costs the hypervisor's round trip first. On this project's
2-core VM (its guest kernel polls for 0 ns before halting) a write at C=1 crosses four or
five such wake-ups; keeping both CPUs busy with idle-priority spinners took its p50 from
0.61 to 0.45 ms. The kernel's own answer is the guest's halt polling (`cpuidle-haltpoll`,
200 µs by default where enabled), Seastar's reactor polls 200 µs before sleeping
(`--idle-poll-time-us`), and Go's scheduler spins briefly before parking its threads:
the same trade of CPU time for latency, here bounded by a window after the node's own
work. docs/ARCHITECTURE.md (session 46) has the measurements.

How: a thread of the node's (C, without the GIL: server/idle_spin.c) at `SCHED_IDLE`,
bound to the CPU the loop last ran on, spins until the window ends and then sleeps until
the next Ready. The scheduler runs a `SCHED_IDLE` thread only when nothing else wants the
CPU and preempts it at once for anything that does, so the spinning uses only CPU time
nothing else wanted; it shows in the node's CPU use (`raft_idle_poll_seconds_total`).
Where the C module is not built (a pure Python install) or `SCHED_IDLE` is refused, the
node runs without it and says so once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from raftkv.core import Ready
from raftkv.server.thread_scheduling import schedule_calling_thread_as

logger = logging.getLogger(__name__)

# raft-node's default; the library's is 0 (off). It covers a follower's wait for the next
# write's AppendEntries at C=1 (~600 µs after its acknowledgement here), which 300 did not.
IDLE_POLL_US_DEFAULT = 1000
IDLE_POLL_US_MAX = 100_000  # a longer window is a core spent, not a wake-up saved

try:
    from raftkv.server.idle_spin import Spinner
except ImportError:  # a pure Python install: no C module
    Spinner = None  # type: ignore[assignment,misc]


def _idle_priority() -> bool:
    """Put the calling thread at SCHED_IDLE; False where the system has no such policy."""
    return schedule_calling_thread_as("SCHED_IDLE")


def polls_after(ready: Ready, requests_waiting: int) -> bool:
    """Whether the node polls after `ready`: at low load (one new and one committed entry
    at most, one client request waiting at most) when the Ready moves a client's request
    along (a request waiting, an entry to persist or apply, a read answered).

    Under load the next Ready is never far, and the spinner's rebinding to the loop's CPU
    and being preempted cost the loop more than they save (2-3 % at C=64, session 46). A
    Ready of none of these is a heartbeat or its acknowledgement: polling after those spent
    1.3 % of a core per idle node for nothing, and on the followers of a leader serving
    linearizable reads at C=64 (a round of heartbeats every fraction of a millisecond, so
    always armed) cost 15 % of the reads (docs/ARCHITECTURE.md, session 47)."""
    if requests_waiting > 1 or len(ready.entries) > 1 or len(ready.committed_entries) > 1:
        return False
    return bool(requests_waiting or ready.entries or ready.committed_entries or ready.read_states)


class IdlePoller:
    """Owns the spinner thread: `start()` once, `arm()` after a Ready `polls_after` names
    (on the loop's thread), `stop()` at shutdown. The time spun stays readable after
    `stop()` (a counter in /metrics never goes back)."""

    def __init__(self, window_us: int) -> None:
        if window_us <= 0:
            raise ValueError("the idle-poll window must be positive")
        self.window_ns = window_us * 1000
        self._spinner: Any = None
        self._running = False
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.why_off: str | None = None  # set when it could not start

    @property
    def running(self) -> bool:
        return self._running

    @property
    def spun_seconds(self) -> float:
        spinner = self._spinner
        return spinner.spun_seconds if spinner is not None else 0.0

    def start(self) -> bool:
        """Start the spinner thread; False (and `why_off`, logged) where it cannot run."""
        if Spinner is None:
            return self._off("raftkv's C modules are not built (a pure Python install)")
        spinner = Spinner()
        refused: list[bool] = []

        def body() -> None:
            if not _idle_priority():
                refused.append(True)
                self._started.set()
                return
            self._started.set()
            spinner.run()

        self._thread = threading.Thread(target=body, name="raftkv-idle-poll", daemon=True)
        self._thread.start()
        self._started.wait()
        if refused:
            self._thread.join()
            self._thread = None
            return self._off("the system refused SCHED_IDLE for its thread")
        self._spinner = spinner
        self._running = True
        return True

    def _off(self, why: str) -> bool:
        self.why_off = why
        logger.warning("idle polling is off: %s", why)
        return False

    def arm(self) -> None:
        if self._running:
            self._spinner.arm(self.window_ns)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._spinner.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
