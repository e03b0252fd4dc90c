"""The clients' side of leases: requests as SPEC §6 writes them, the keepers (the asyncio one
on virtual time), and `raft-client` usage refused before anything is sent."""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import parse_qsl, urlsplit

import pytest

from raftkv.client import LeaseKeepAlive, LeaseKeeper, LeaseNotFound, NoLeader
from raftkv.client import leases as lease_protocol
from raftkv.client.errors import error_from_answer
from raftkv.client.protocol import put_request
from raftkv.client.sessions import PendingWrite, Session
from raftkv.sim.event_loop import SimulatedEventLoop
from tests.client.conftest import RunCli
from tests.client.fake_cluster import FakeCluster


def test_lease_requests() -> None:
    write = PendingWrite(Session("c1"), 9)
    grant = lease_protocol.grant_request(10, write, lease_id=42)
    assert (grant.method, grant.path) == ("POST", "/v1/lease")
    assert json.loads(grant.body or b"") == {
        "ttl": 10,
        "id": 42,
        "client_id": "c1",
        "seq": 1,
        "after_index": 9,
    }
    keep = lease_protocol.keep_alive_request(42)
    assert (keep.method, keep.path) == ("POST", "/v1/lease/42/keepalive")
    revoke = lease_protocol.revoke_request(42, PendingWrite(Session("c2"), 3))
    assert revoke.method == "DELETE" and urlsplit(revoke.path).path == "/v1/lease/42"
    assert dict(parse_qsl(urlsplit(revoke.path).query)) == {
        "client_id": "c2",
        "seq": "1",
        "after_index": "3",
    }
    info = lease_protocol.info_request(42, "stale")
    assert info.path == "/v1/lease/42?consistency=stale" and not info.leader_only
    listed = lease_protocol.list_request("linearizable")
    assert listed.path == "/v1/leases?consistency=linearizable" and not listed.leader_only
    # A lease's time left is the leader's: only the leader answers it but for a stale read.
    assert lease_protocol.info_request(42, "linearizable").leader_only
    put = put_request("k", "v", PendingWrite(Session("c3"), 0), lease=42)
    assert json.loads(put.body or b"")["lease"] == 42
    with pytest.raises(ValueError):
        lease_protocol.keep_alive_request(0)


def test_lease_not_found_is_a_not_found_of_its_own() -> None:
    error = error_from_answer(404, {"error": "lease_not_found", "message": "no lease 7"})
    assert isinstance(error, LeaseNotFound)


class FakeKeepAlive:
    """Answers keepalives as told: each call takes the next outcome (the last repeats)."""

    def __init__(self, loop: SimulatedEventLoop, outcomes: list[Exception | None]) -> None:
        self.loop = loop
        self.outcomes = outcomes
        self.calls: list[float] = []

    async def __call__(self, lease_id: int) -> LeaseKeepAlive:
        self.calls.append(round(self.loop.time(), 3))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome is not None:
            raise outcome
        return LeaseKeepAlive(id=lease_id, ttl=3)


def run_keeper(
    outcomes: list[Exception | None], seconds: float
) -> tuple[FakeKeepAlive, bool, str | None, list[str]]:
    loop = SimulatedEventLoop(random.Random(1))
    keep_alive = FakeKeepAlive(loop, outcomes)
    reported: list[str] = []

    async def main() -> tuple[bool, str | None]:
        keeper = lease_protocol.AsyncLeaseKeeper(keep_alive, 7, 3, on_lost=reported.append)
        async with keeper:
            await asyncio.sleep(seconds)
            return keeper.lost.is_set(), keeper.reason

    lost, reason = loop.run_until_complete(main())
    loop.close()
    return keep_alive, lost, reason, reported


def no_leader() -> NoLeader:
    return NoLeader("no leader", {"message": "no leader"})


def test_the_async_keeper_renews_every_third_of_the_ttl() -> None:
    keep_alive, lost, _, _ = run_keeper([None], seconds=5.5)
    assert keep_alive.calls == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert not lost


def test_the_async_keeper_rides_out_failures_shorter_than_the_ttl() -> None:
    # Fails at 2 s and 3 s; the keepalive sent at 1 s still covers until 4 s.
    keep_alive, lost, _, _ = run_keeper([None, no_leader(), no_leader(), None], seconds=6.5)
    assert not lost and len(keep_alive.calls) == 6


def test_the_async_keeper_gives_up_after_a_ttl_without_an_answer() -> None:
    keep_alive, lost, reason, reported = run_keeper([None, no_leader()], seconds=10)
    assert lost and reason is not None and "within the lease's TTL (3 s)" in reason
    # Answered at 1 s: safe until 4 s; the failure at 4 s gives up.
    assert keep_alive.calls == [1.0, 2.0, 3.0, 4.0]
    assert reported == [reason]


def test_the_async_keeper_stops_at_once_when_the_lease_is_gone() -> None:
    gone = LeaseNotFound("no lease 7", {"message": "no lease 7"})
    keep_alive, lost, reason, _ = run_keeper([gone], seconds=10)
    assert lost and reason == "the lease expired or was revoked"
    assert keep_alive.calls == [1.0]


def test_the_thread_keeper_notices_a_lease_gone() -> None:
    def keep_alive(lease_id: int) -> LeaseKeepAlive:
        raise LeaseNotFound("gone", {"message": "gone"})

    with LeaseKeeper(keep_alive, 7, 1) as keeper:
        assert keeper.lost.wait(timeout=20)
        assert keeper.reason == "the lease expired or was revoked"


@pytest.mark.parametrize(
    "argv",
    [
        ("put", "k", "v", "--lease", "abc"),
        ("put", "k", "v", "--lease", "0"),
        ("lease", "grant", "0"),
        ("lease", "grant"),
        ("lease", "revoke", "x"),
        ("lease",),
        ("lock",),
        ("lock", "name", "--ttl", "0", "--", "true"),
    ],
)
def test_bad_lease_usage_sends_nothing(
    cluster: FakeCluster, run_cli: RunCli, argv: tuple[str, ...]
) -> None:
    code, _, err = run_cli("--cluster", cluster.cluster_text(), *argv)
    assert code == 1 and '"bad_usage"' in err
    assert cluster.requests == []


def test_a_double_dash_of_another_command_is_its_own(cluster: FakeCluster, run_cli: RunCli) -> None:
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "put", "--", "-k", "v")
    assert code == 0, err
    assert cluster.writes()[0].path.endswith("/-k")
