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

import math
from collections.abc import Callable
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Leases one `lease_expire` entry revokes at most: one entry is applied in one go on the loop.
EXPIRE_BATCH_MAX = 1000


def lease_ttl_min_seconds(election_timeout_ms_max: int) -> int:
    """The shortest TTL granted: a lease must outlive an election by a margin, or a leader
    change (which adds an election timeout) would be most of its life. At least 1 s."""
    return max(1, math.ceil(3 * election_timeout_ms_max / 1000))


class LeaseSource(Protocol):
    """The replicated leases the lessor times (`KVStore`)."""

    def lease_ttls(self) -> dict[int, int]: ...

    @property
    def lease_generation(self) -> int: ...

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
        self._generation = -1  # the lease generation the deadlines were last matched to
        self.expiries_proposed_total = 0

    def promote(self) -> None:
        """This node became leader: every lease gets its TTL plus the extension from now."""
        self.active = True
        now = self._clock()
        extension = self._extension
        self._deadlines = {
            lease_id: now + ttl + extension for lease_id, ttl in self._leases.lease_ttls().items()
        }
        self._generation = self._leases.lease_generation

    def demote(self) -> None:
        """No longer leader: expire nothing, keep nothing (the next leader starts afresh)."""
        self.active = False
        self._deadlines = {}

    def applied(self) -> None:
        """Entries were just applied (the runtime calls this after each batch): a grant
        among them starts its TTL now, a revoked lease is forgotten. Cheap when no lease
        changed."""
        if self.active:
            self._catch_up()

    def _catch_up(self) -> None:
        """Match the deadlines to the leases as applied: a lease not timed yet starts its
        TTL now (never earlier than it was applied, so never short), a gone one is dropped."""
        generation = self._leases.lease_generation
        if generation == self._generation:
            return
        self._generation = generation
        ttls = self._leases.lease_ttls()
        deadlines = self._deadlines
        for lease_id in [lease_id for lease_id in deadlines if lease_id not in ttls]:
            del deadlines[lease_id]
        now = self._clock()
        for lease_id, ttl in ttls.items():
            if lease_id not in deadlines:
                deadlines[lease_id] = now + ttl

    def keep_alive(self, lease_id: int) -> int | None:
        """Renew the lease for its full TTL from now; its TTL, or None if there is no such
        lease. The caller confirmed this node still leads first (a read barrier)."""
        if not self.active:
            return None
        self._catch_up()
        ttl = self._leases.lease_ttls().get(lease_id) if lease_id in self._deadlines else None
        if ttl is not None:
            self._deadlines[lease_id] = self._clock() + ttl
        return ttl

    def remaining(self, lease_id: int) -> float | None:
        """Seconds until the lease expires by this leader's clock; None when not leading."""
        if not self.active:
            return None
        self._catch_up()
        deadline = self._deadlines.get(lease_id)
        return None if deadline is None else max(0.0, deadline - self._clock())

    def expired(self) -> list[int]:
        """Leases past their deadline, at most EXPIRE_BATCH_MAX, for the caller to propose
        expiring. Each is given `retry_seconds` more, so it is proposed again only if that
        entry was lost. A scan of every lease: checks are a few per second."""
        if not self.active:
            return []
        self._catch_up()
        now = self._clock()
        due = [lease_id for lease_id, deadline in self._deadlines.items() if deadline <= now]
        due = sorted(due)[:EXPIRE_BATCH_MAX]
        for lease_id in due:
            self._deadlines[lease_id] = now + self._retry
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
