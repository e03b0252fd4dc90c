"""The leader's lessor (SPEC §6, "Leases"): when each lease expires. Leases themselves are
replicated state (kv/leases.py); their deadlines are not. Only the leader keeps deadlines,
on its own clock, and an expiry reaches the replicas as a `lease_expire` command, so no
follower's clock ever decides anything and every replica deletes the same keys at the same
index.

Keepalives touch only the leader's deadlines (they are not logged). A new leader cannot know
the keepalives its predecessor answered, so it starts every lease at its full TTL plus an
election timeout (etcd's rule): whatever the old leader promised ran out no later than that,
since it answered keepalives only while it could still confirm its leadership.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Leases one `lease_expire` entry revokes at most: one entry is applied in one go on the loop.
EXPIRE_BATCH_MAX = 1000
# Superseded deadlines the heap may hold beyond the live ones before it is rebuilt.
HEAP_SLACK = 64


def lease_ttl_min_seconds(election_timeout_ms_max: int) -> int:
    """The shortest TTL granted: a lease must outlive an election by a margin, or a leader
    change (which adds an election timeout) would be most of its life. At least 1 s."""
    return max(1, math.ceil(3 * election_timeout_ms_max / 1000))


class LeaseSource(Protocol):
    """The replicated leases the lessor times (`KVStore`)."""

    def lease_ttls(self) -> dict[int, int]: ...

    def lease_ttl(self, lease_id: int) -> int | None: ...

    def take_lease_changes(self) -> set[int] | None: ...

    @property
    def lease_count(self) -> int: ...

    @property
    def leases_expired_total(self) -> int: ...


class Lessor:
    def __init__(
        self,
        leases: LeaseSource,
        clock: Callable[[], float],
        *,
        extension_seconds: float,
        retry_seconds: float,
    ) -> None:
        """`clock`: the runtime's (the event loop's, virtual in the simulator).
        `extension_seconds`: what a new leader adds to every lease (its election timeout).
        `retry_seconds`: how long after proposing an expiry to propose it again, should the
        entry be lost (a leader that keeps leading retries; a new one starts over)."""
        self._leases = leases
        self._clock = clock
        self._extension = extension_seconds
        self._retry = retry_seconds
        self.active = False  # leading: deadlines kept, expiries proposed
        self._deadlines: dict[int, float] = {}
        # (deadline, lease) for every deadline set, the superseded ones too (skipped when
        # popped): the next expiry is found without scanning every lease.
        self._heap: list[tuple[float, int]] = []
        # Leases whose expiry this leader proposed and has not seen applied: a keepalive for
        # one is refused (etcd's lessor does the same), or the client would be told its
        # lease lives on and then lose it when the expiry already in the log applies.
        self._expiring: set[int] = set()
        self.expiries_proposed_total = 0

    def promote(self) -> None:
        """This node became leader: every lease gets its TTL plus the extension from now."""
        self.active = True
        self._leases.take_lease_changes()  # all of them are read now
        now = self._clock()
        extension = self._extension
        self._deadlines = {}
        self._heap = []
        self._expiring = set()
        for lease_id, ttl in self._leases.lease_ttls().items():
            self._set(lease_id, now + ttl + extension)

    def demote(self) -> None:
        """No longer leader: expire nothing, keep nothing (the next leader starts afresh)."""
        self.active = False
        self._deadlines = {}
        self._heap = []
        self._expiring = set()

    def applied(self) -> None:
        """Entries were just applied (the runtime calls this after each batch): a grant
        among them starts its TTL now, a revoked lease is forgotten. On a follower the
        changes are dropped (a promotion reads every lease)."""
        changes = self._leases.take_lease_changes()
        if self.active:
            self._take(changes)

    def _catch_up(self) -> None:
        self._take(self._leases.take_lease_changes())

    def _take(self, changes: set[int] | None) -> None:
        """Match the deadlines to the leases as applied: a lease not timed yet starts its
        TTL now (never earlier than it was applied, so never short), a gone one is dropped."""
        deadlines = self._deadlines
        now = self._clock()
        if changes is None:  # a snapshot was restored: any lease may have come or gone
            ttls = self._leases.lease_ttls()
            for lease_id in [lease_id for lease_id in deadlines if lease_id not in ttls]:
                del deadlines[lease_id]
                self._expiring.discard(lease_id)
            for lease_id, ttl in ttls.items():
                if lease_id not in deadlines:
                    self._set(lease_id, now + ttl)
            return
        for lease_id in sorted(changes):
            granted = self._leases.lease_ttl(lease_id)
            self._expiring.discard(lease_id)  # expired (or revoked), or granted anew
            if granted is None:
                deadlines.pop(lease_id, None)
            else:
                # Granted since the last look (perhaps revoked and granted again under a
                # client-chosen id): its TTL starts now, whatever deadline the id had.
                self._set(lease_id, now + granted)

    def _set(self, lease_id: int, deadline: float) -> None:
        self._deadlines[lease_id] = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, lease_id))
        if len(heap) > 2 * len(self._deadlines) + HEAP_SLACK:
            self._heap = [(when, lease) for lease, when in self._deadlines.items()]
            heapq.heapify(self._heap)

    def keep_alive(self, lease_id: int) -> int | None:
        """Renew the lease for its full TTL from now; its TTL, or None if there is no such
        lease, or if it expired by this leader's clock (its expiry is proposed: the lease
        is as good as gone). The caller confirmed this node still leads first (a read
        barrier)."""
        if not self.active:
            return None
        self._catch_up()
        if lease_id in self._expiring:
            return None  # expired by this leader's clock: its expiry is on its way
        ttl = self._leases.lease_ttl(lease_id)
        if ttl is not None:
            self._set(lease_id, self._clock() + ttl)
        return ttl

    def remaining(self, lease_id: int) -> float | None:
        """Seconds until the lease expires by this leader's clock; None when not leading."""
        if not self.active:
            return None
        self._catch_up()
        deadline = self._deadlines.get(lease_id)
        if deadline is None:
            return None
        return 0.0 if lease_id in self._expiring else max(0.0, deadline - self._clock())

    def expired(self) -> list[int]:
        """Leases past their deadline, soonest first, at most EXPIRE_BATCH_MAX, for the
        caller to propose expiring. Each is given `retry_seconds` more, so it is proposed
        again only if that entry was lost."""
        if not self.active:
            return []
        self._catch_up()
        now = self._clock()
        heap, deadlines = self._heap, self._deadlines
        due: list[int] = []
        while heap and heap[0][0] <= now and len(due) < EXPIRE_BATCH_MAX:
            deadline, lease_id = heapq.heappop(heap)
            if deadlines.get(lease_id) == deadline:
                due.append(lease_id)
        for lease_id in due:
            self._set(lease_id, now + self._retry)
            self._expiring.add(lease_id)
        self.expiries_proposed_total += len(due)
        return due


class LeaseMetrics(Collector):
    """`raft_leases` and `raft_lease_expiries` (`GET /metrics`)."""

    def __init__(self, leases: LeaseSource, lessor: Lessor) -> None:
        self._leases = leases
        self._lessor = lessor

    def collect(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "raft_leases",
                "Leases granted and not revoked or expired",
                value=self._leases.lease_count,
            ),
            CounterMetricFamily(
                "raft_lease_expiries",
                "Leases this node deleted because the leader found them expired",
                value=self._leases.leases_expired_total,
            ),
            CounterMetricFamily(
                "raft_lease_expiries_proposed",
                "Lease expiries this node proposed as leader (a lost entry is proposed again)",
                value=self._lessor.expiries_proposed_total,
            ),
        ]
