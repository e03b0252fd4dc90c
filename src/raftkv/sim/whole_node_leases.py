"""Leases in the whole-node simulator: a client that grants leases, attaches keys, keeps
some alive, revokes some and lets others expire, through the nodes' real HTTP handlers; and
the invariant that no lease expires early.

No lease expires early: an expiry (a `lease_expire` entry) applied while the newest grant or
keepalive of that lease the client saw answered was sent less than its TTL ago, on the
simulation's one virtual clock, is a violation. It is checked both ways round, since the
answer may reach the client after a replica applied the expiry. The time that counts is
when the request was sent: the leader renews a lease from when it handles the keepalive,
which is later, so that is all a client may rely on (and all etcd promises).

Its randomness comes from a generator of its own, so the other clients' choices are those
they made before leases existed (the interleaving of callbacks still changes: there are
more of them).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftkv.sim.whole_node import WholeNodeSimulation

# Lease TTLs drawn (seconds): the shortest the nodes grant (their election timeout is at
# most 300 ms, so 1 s), and a little longer.
TTL_CHOICES = (1, 2)
KEYS_PER_LEASE_MAX = 3
KEEPALIVES_MAX = 6
LEASE_CLIENTS = 2
ATTEMPT_TIMEOUT_SECONDS = 1.0
# The virtual clock's times are floats: an expiry applied exactly a TTL after the keepalive
# was sent (a lessor expires a lease at its deadline, and a keepalive handled the instant it
# was sent sets the deadline to that instant plus the TTL) can come out a few ulps short of
# it (4.555 - 3.555 < 1). That is not early: the lease lived until then, as SPEC promises.
ROUNDING_SECONDS = 1e-9


@dataclass
class LeaseStats:
    granted: int = 0
    keepalives: int = 0  # answered 200
    revoked: int = 0
    expired: int = 0  # leases deleted by an expiry entry (first apply anywhere)


class LeaseExpiryWatch:
    """The invariant: no expiry within a TTL of an answered grant or keepalive's sending."""

    def __init__(self, fail: Callable[[str, str], None], stats: LeaseStats) -> None:
        self._fail = fail
        self._stats = stats
        # lease -> (sent at, ttl) of its newest answered grant or keepalive
        self._answered: dict[int, tuple[float, int]] = {}
        # lease -> when an expiry of it was first applied (on any replica)
        self._expired_at: dict[int, float] = {}

    def answered(self, lease: int, sent_at: float, ttl: int) -> None:
        expired_at = self._expired_at.get(lease)
        if expired_at is not None and _early(expired_at - sent_at, ttl):
            self._fail(
                "Lease expired early",
                f"lease {lease} (TTL {ttl} s) expired at {expired_at:.3f}, yet a keepalive"
                f" sent at {sent_at:.3f} was answered as renewing it",
            )
        newest = self._answered.get(lease)
        if newest is None or sent_at > newest[0]:
            self._answered[lease] = (sent_at, ttl)

    def expired(self, lease: int, now: float, node_id: int, index: int) -> None:
        if lease in self._expired_at:
            return  # another replica applying the same entry, or a replay of it
        self._expired_at[lease] = now
        self._stats.expired += 1
        newest = self._answered.get(lease)
        if newest is not None and _early(now - newest[0], newest[1]):
            sent_at, ttl = newest
            self._fail(
                "Lease expired early",
                f"node {node_id} applied the expiry of lease {lease} (TTL {ttl} s) at index"
                f" {index}, time {now:.3f}: {now - sent_at:.3f} s after sending a keepalive"
                " the leader answered",
            )


def _early(lived: float, ttl: int) -> bool:
    """Whether a lease that lived `lived` seconds after a keepalive's sending lived less
    than its TTL, the virtual clock's rounding aside."""
    return lived < ttl - ROUNDING_SECONDS


class LeaseClient:
    """Grants a lease, attaches a few keys of its own to it, then keeps it alive for a while
    (or not at all) and revokes it or leaves it to expire; again and again."""

    def __init__(
        self,
        simulation: WholeNodeSimulation,
        number: int,
        rng: random.Random,
        watch: LeaseExpiryWatch,
        stats: LeaseStats,
    ) -> None:
        self.simulation = simulation
        self.number = number
        self.rng = rng
        self.watch = watch
        self.stats = stats
        self.session = f"lease{number}"
        self.seq = 0
        self.seen_index = 0
        self.target = rng.choice(simulation.node_ids)

    async def run(self) -> None:
        simulation, rng = self.simulation, self.rng
        while simulation.issuing:
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await self._one_lease()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        status, payload = await self.simulation.call(
            self.target, method, path, body, ATTEMPT_TIMEOUT_SECONDS
        )
        if status == 200:
            self.seen_index = max(self.seen_index, int(payload.get("index", 0) or 0))
        else:
            leader = payload.get("leader_id")
            self.target = (
                leader if isinstance(leader, int) else self.rng.choice(self.simulation.node_ids)
            )
        return status, payload

    def _session(self) -> dict[str, Any]:
        self.seq += 1
        return {"client_id": self.session, "seq": self.seq, "after_index": self.seen_index}

    async def _one_lease(self) -> None:
        rng, loop = self.rng, self.simulation.loop
        ttl = rng.choice(TTL_CHOICES)
        sent_at = loop.time()
        status, payload = await self._call("POST", "/v1/lease", {"ttl": ttl, **self._session()})
        if status != 200:
            if payload.get("error") == "session_expired":
                self.session, self.seq = f"{self.session}+", 0
            return  # a grant that did apply expires unattended: harmless
        lease = int(payload["id"])
        self.stats.granted += 1
        self.watch.answered(lease, sent_at, ttl)
        for number in range(rng.randint(1, KEYS_PER_LEASE_MAX)):
            body = {"value": str(lease), "lease": lease, **self._session()}
            await self._call("PUT", f"/v1/kv/lease-{self.number}/{lease}/{number}", body)
        for _ in range(rng.randint(0, KEEPALIVES_MAX)):
            await asyncio.sleep(ttl / 3 * rng.uniform(0.5, 1.0))
            if not self.simulation.issuing:
                return
            sent_at = loop.time()
            status, payload = await self._call("POST", f"/v1/lease/{lease}/keepalive", None)
            if status == 200:
                self.stats.keepalives += 1
                self.watch.answered(lease, sent_at, int(payload["ttl"]))
            elif payload.get("error") == "lease_not_found":
                return  # expired (keepalives failed for a TTL), or so the invariant says
        if rng.random() < 0.5:
            status, _ = await self._call("DELETE", f"/v1/lease/{lease}", self._session())
            if status == 200:
                self.stats.revoked += 1
