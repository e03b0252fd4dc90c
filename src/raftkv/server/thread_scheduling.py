"""Linux scheduling policies for a node's threads: `SCHED_BATCH` where a thread should not
preempt the thread running on the CPU it wakes on, `SCHED_OTHER` (the default) elsewhere.

Both are ordinary time-sharing policies: a `SCHED_BATCH` thread gets the same share of the
CPUs as any other of its nice value; it only gives up *wake-up preemption* (woken, it waits
for the running thread's slice to end instead of taking the CPU at once, unless a CPU is
idle). So an unprivileged process may switch a thread between the two either way (unlike
`SCHED_IDLE`, which it cannot leave without `RLIMIT_NICE`), and nothing here needs a
privilege.

Two users: the WAL's sync thread (server/sync_thread.py: woken when a sync ends, it would
preempt its own event loop only to wait for the GIL that loop holds), and the event loop
itself while the node follows (`RoleScheduling`): the leader is a cluster's bottleneck
(every request, every commit, every answer passes through its loop), and where members
share CPUs (a development machine, a test or benchmark cluster, containers on one host) a
follower woken by an AppendEntries took the CPU from the leader, or from the other
follower halfway through its Ready. Measured on a 2-core machine running three members
and the load generator (docs/ARCHITECTURE.md, session 39): at C=64 a median of 11 % more
writes (five pairs of fresh clusters, each pair won), followers woken less often per write;
at C=1 p50 about 2 % lower; at C=16 within the noise. On a machine of its own a follower
has only other processes to defer to.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

logger = logging.getLogger(__name__)


def schedule_calling_thread(batch: bool) -> bool:
    """Schedule the calling thread `SCHED_BATCH` (`batch`) or `SCHED_OTHER`, keeping its nice
    value; False where the system has no such policies or refuses (the thread stays as it
    was)."""
    return schedule_calling_thread_as("SCHED_BATCH" if batch else "SCHED_OTHER")


def schedule_calling_thread_as(name: str) -> bool:
    """Schedule the calling thread with the policy `os.<name>` (`SCHED_IDLE` for the idle
    poller, server/idle_poll.py); False where the system has no such policy or refuses."""
    policy = getattr(os, name, None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: the calling thread
    except OSError:
        return False
    return True


class RoleScheduling:
    """A soft-state listener (`RaftServer.soft_state_listeners`) that schedules the thread it
    is called on, the node's event loop, `SCHED_BATCH` while the node is not the leader and
    `SCHED_OTHER` while it is. `schedule` is the seam tests replace."""

    def __init__(self, schedule: Callable[[bool], bool] = schedule_calling_thread) -> None:
        self._schedule = schedule
        self.batch: bool | None = None  # what was last asked for (None: nothing yet)

    def __call__(self, role: str, leader_id: int | None = None) -> None:
        batch = role != "leader"
        if batch == self.batch:
            return
        self.batch = batch
        if not self._schedule(batch):
            logger.debug("could not schedule the event loop %s", _name(batch))

    def restore(self) -> None:
        """Back to `SCHED_OTHER` (the node stopped; its thread may live on, as in tests)."""
        if self.batch:
            self.batch = False
            self._schedule(False)


def _name(batch: bool) -> str:
    return "SCHED_BATCH" if batch else "SCHED_OTHER"
