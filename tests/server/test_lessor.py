"""The leader's lessor (server/lessor.py) on a fake clock: deadlines from grants, keepalives
and promotion (TTL plus an election timeout), expiries proposed once and again only when
lost, nothing at all while following."""

from __future__ import annotations

import pytest

from raftkv.kv import Command, KVStore, encode_command
from raftkv.server.lessor import EXPIRE_BATCH_MAX, Lessor, lease_ttl_min_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """A store applying entries in order, and a lessor timing its leases."""

    def __init__(self, extension: float = 0.3, retry: float = 0.3) -> None:
        self.store = KVStore()
        self.clock = FakeClock()
        self.lessor = Lessor(
            self.store, self.clock, extension_seconds=extension, retry_seconds=retry
        )
        self.index = 0

    def apply(self, **fields: object) -> object:
        self.index += 1
        command = Command(**{"key": "", **fields})  # type: ignore[arg-type]
        result = self.store.apply(self.index, encode_command(command))
        self.lessor.applied()  # as the runtime does after applying
        return result

    def grant(self, ttl: int) -> int:
        result = self.apply(op="lease_grant", ttl=ttl)
        return result.lease  # type: ignore[attr-defined, no-any-return]


def test_a_follower_keeps_no_deadlines_and_expires_nothing() -> None:
    cluster = Cluster()
    cluster.grant(1)
    cluster.clock.now += 100
    assert cluster.lessor.expired() == []
    assert cluster.lessor.remaining(1) is None
    assert cluster.lessor.keep_alive(1) is None


def test_a_grant_applied_on_the_leader_runs_for_its_ttl() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    lease = cluster.grant(10)
    assert cluster.lessor.remaining(lease) == 10.0
    cluster.clock.now += 9.99
    assert cluster.lessor.expired() == []
    cluster.clock.now += 0.01
    assert cluster.lessor.expired() == [lease]


def test_an_expiry_is_proposed_once_and_again_only_if_its_entry_was_lost() -> None:
    cluster = Cluster(retry=0.5)
    cluster.lessor.promote()
    lease = cluster.grant(2)
    cluster.clock.now += 2
    assert cluster.lessor.expired() == [lease]
    cluster.clock.now += 0.4
    assert cluster.lessor.expired() == []  # its entry is on its way
    cluster.clock.now += 0.1
    assert cluster.lessor.expired() == [lease]  # not applied by now: lost, propose again
    cluster.apply(op="lease_expire", leases=(lease,))
    cluster.clock.now += 10
    assert cluster.lessor.expired() == []
    assert cluster.lessor.expiries_proposed_total == 2


def test_a_keepalive_renews_for_the_full_ttl_from_now() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    lease = cluster.grant(5)
    cluster.clock.now += 4
    assert cluster.lessor.keep_alive(lease) == 5
    cluster.clock.now += 4.9
    assert cluster.lessor.expired() == []
    assert cluster.lessor.remaining(lease) == pytest.approx(0.1)
    cluster.clock.now += 0.1
    assert cluster.lessor.expired() == [lease]
    assert cluster.lessor.keep_alive(12345) is None


def test_a_new_leader_gives_every_lease_its_ttl_plus_an_election_timeout() -> None:
    cluster = Cluster(extension=0.3)
    first, second = cluster.grant(5), cluster.grant(60)
    cluster.clock.now += 100  # long since granted: an old leader may have kept them alive
    cluster.lessor.promote()
    assert cluster.lessor.remaining(first) == pytest.approx(5.3)
    assert cluster.lessor.remaining(second) == pytest.approx(60.3)
    cluster.clock.now += 5.29
    assert cluster.lessor.expired() == []
    cluster.clock.now += 0.01
    assert cluster.lessor.expired() == [first]


def test_losing_leadership_stops_expiring_and_forgets_deadlines() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    lease = cluster.grant(1)
    cluster.lessor.demote()
    cluster.clock.now += 50
    assert cluster.lessor.expired() == []
    cluster.lessor.promote()  # leads again: a fresh start, not the old deadline
    assert cluster.lessor.expired() == []
    assert cluster.lessor.remaining(lease) == pytest.approx(1.3)


def test_revoked_leases_are_forgotten_and_later_grants_picked_up() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    first = cluster.grant(1)
    cluster.apply(op="lease_revoke", lease=first)
    cluster.clock.now += 0.5
    second = cluster.grant(1)
    cluster.clock.now += 0.6
    assert cluster.lessor.expired() == []  # the revoked one is not expired again
    assert cluster.lessor.remaining(first) is None
    cluster.clock.now += 0.4
    assert cluster.lessor.expired() == [second]


def test_a_restored_snapshot_is_picked_up() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    source = KVStore()
    source.apply(7, encode_command(Command(op="lease_grant", key="", ttl=3)))
    cluster.store.restore(source.snapshot())
    cluster.clock.now += 1  # restored before this look: timed from when it is noticed
    assert cluster.lessor.remaining(7) == 3.0


def test_one_look_expires_at_most_a_batch() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    for _ in range(EXPIRE_BATCH_MAX + 5):
        cluster.grant(1)
    cluster.clock.now += 1
    first = cluster.lessor.expired()
    assert len(first) == EXPIRE_BATCH_MAX
    assert len(cluster.lessor.expired()) == 5


def test_the_shortest_ttl_outlives_elections() -> None:
    assert lease_ttl_min_seconds(300) == 1
    assert lease_ttl_min_seconds(1000) == 3
    assert lease_ttl_min_seconds(1500) == 5


def test_an_id_revoked_and_granted_again_starts_afresh() -> None:
    cluster = Cluster()
    cluster.lessor.promote()
    cluster.apply(op="lease_grant", ttl=1, lease=77)
    cluster.clock.now += 0.9
    # Both applied in one batch: the lessor looks only afterwards.
    for fields in (
        {"op": "lease_revoke", "lease": 77},
        {"op": "lease_grant", "ttl": 5, "lease": 77},
    ):
        cluster.index += 1
        cluster.store.apply(cluster.index, encode_command(Command(key="", **fields)))  # type: ignore[arg-type]
    cluster.lessor.applied()
    cluster.clock.now += 1
    assert cluster.lessor.expired() == []
    assert cluster.lessor.remaining(77) == pytest.approx(4.0)


def test_a_lease_whose_expiry_is_proposed_is_not_renewed() -> None:
    """Found by the whole-node simulator (seed 2644, 5 nodes; "Lease expired early"): a
    keepalive that arrived after the leader had proposed the lease's expiry renewed it and
    was answered, and then the expiry applied: the client lost a lease it had just been
    told lives on. The keepalive is refused instead (etcd's lessor does the same); a lease
    granted again under that id starts afresh."""
    cluster = Cluster(retry=0.5)
    cluster.lessor.promote()
    lease = cluster.grant(2)
    cluster.clock.now += 2
    assert cluster.lessor.expired() == [lease]
    cluster.clock.now += 0.1  # the expiry entry is on its way; the keepalive comes now
    assert cluster.lessor.keep_alive(lease) is None
    assert cluster.lessor.remaining(lease) == 0.0
    cluster.apply(op="lease_expire", leases=(lease,))
    assert cluster.lessor.keep_alive(lease) is None  # gone
    again = cluster.apply(op="lease_grant", ttl=3, lease=lease).lease  # type: ignore[attr-defined]
    assert again == lease
    assert cluster.lessor.keep_alive(lease) == 3
    assert cluster.lessor.remaining(lease) == 3.0


def test_a_new_leader_renews_what_an_old_leader_was_expiring() -> None:
    """Promotion starts every lease afresh (its TTL plus an election timeout)."""
    cluster = Cluster()
    cluster.lessor.promote()
    lease = cluster.grant(2)
    cluster.clock.now += 2
    assert cluster.lessor.expired() == [lease]
    cluster.lessor.demote()
    cluster.lessor.promote()
    assert cluster.lessor.keep_alive(lease) == 2
