"""The whole-node simulator's lease traffic and its check that no lease expires early: a
lessor that renews for half the TTL, or a new leader that expires every lease at once, is
caught by a seed (found by sweeping seeds 1-12), and the same seeds pass as the lessor is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from raftkv.server.lessor import Lessor
from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node
from raftkv.sim.whole_node_leases import LeaseExpiryWatch, LeaseStats


@contextlib.contextmanager
def keepalive_renews_half_the_ttl() -> Iterator[None]:
    original = Lessor.keep_alive

    def keep_alive(self: Lessor, lease_id: int) -> int | None:
        ttl = original(self, lease_id)
        if ttl is not None:
            self._set(lease_id, self._clock() + ttl / 2)
        return ttl

    Lessor.keep_alive = keep_alive  # type: ignore[method-assign]
    try:
        yield
    finally:
        Lessor.keep_alive = original  # type: ignore[method-assign]


@contextlib.contextmanager
def new_leader_expires_everything() -> Iterator[None]:
    original = Lessor.promote

    def promote(self: Lessor) -> None:
        original(self)
        now = self._clock()
        for lease_id in list(self._deadlines):
            self._set(lease_id, now)

    Lessor.promote = promote  # type: ignore[method-assign]
    try:
        yield
    finally:
        Lessor.promote = original  # type: ignore[method-assign]


DEFECTS: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[None]], int]] = {
    # Re-pinned once the runs had watchers (their callbacks move every run's choices): of
    # seeds 1-12, the first caught 10 and 2, 3, 6-8, 10, 11; 3 rather than 2, whose clean
    # run expires no lease. Then 11 for the second, when odd seeds began to sync through
    # the sync thread (caught in 2, 3, 6-8, 11 of 1-12; the clean runs of 3 and 7 expire
    # no lease). Then 3, when a leader's syncs began to overlap (caught in 3, 5-7 of 1-12,
    # each of whose clean runs expires a lease). Then 6, when the Ready loop began to answer
    # before telling the commit index and followers to acknowledge before applying (caught
    # in 2, 3, 6, 8, 14, 16, 17 of 1-20, of whose clean runs 6, 16 and 17 expire a lease; the
    # first is still caught at 10 alone, whose clean run expires one). Then 16, when a
    # leader began to keep one ReadIndex round in flight (caught in 2, 3, 6, 8, 13, 14, 16
    # of 1-20, of whose clean runs only 16 expires a lease; the first still at 10 alone).
    # Then 5 for the first, when the clients began to send reads to any node (follower
    # reads): of 1-20 caught at 5 alone, whose clean run expires five leases; the second
    # still at 16 (and 2, 3, 5, 6, 8, 14). Then 5 for the second too, when a leader began to
    # tell commits lazily (RaftConfig.defer_commit_notices): of 1-24 the first caught at 5,
    # 10 and 23, the second at 2, 3, 5, 6, 8, 14, 16, 18, 21, 22; seed 5's clean run expires
    # four leases.
    "keepalive renews half the TTL": (keepalive_renews_half_the_ttl, 5),
    "a new leader expires every lease": (new_leader_expires_everything, 5),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_an_early_expiry_is_caught(defect: str) -> None:
    double, seed = DEFECTS[defect]
    with double():
        result = run_whole_node(WholeNodeOptions(seed=seed))
    assert not result.ok
    report = "\n".join(result.report_lines())
    assert "VIOLATION: Lease expired early" in report, report
    assert f"replay: raft-sim --whole-node --seed {seed}" in report


@pytest.mark.parametrize("seed", sorted({seed for _, seed in DEFECTS.values()}))
def test_the_same_seeds_pass_and_exercise_leases(seed: int) -> None:
    result = run_whole_node(WholeNodeOptions(seed=seed))
    assert result.ok, "\n".join(result.report_lines())
    leases = result.stats.leases
    assert leases is not None and leases.granted > 0 and leases.expired > 0


def test_no_leases_leaves_the_lease_client_out() -> None:
    options = WholeNodeOptions(seed=2, leases=False)
    result = run_whole_node(options)
    assert result.stats.leases is None
    assert not any(line.startswith("leases:") for line in result.report_lines())
    assert options.replay_command().endswith(" --no-leases")


def _watch() -> tuple[LeaseExpiryWatch, list[str]]:
    failures: list[str] = []
    return LeaseExpiryWatch(lambda kind, detail: failures.append(detail), LeaseStats()), failures


@pytest.mark.parametrize("answer_first", [True, False])
@pytest.mark.parametrize(("expired_at", "early"), [(4.555, False), (4.554, True)])
def test_an_expiry_exactly_a_ttl_after_the_sending_is_not_early(
    answer_first: bool, expired_at: float, early: bool
) -> None:
    """A keepalive handled the instant it was sent (3.555, TTL 1 s), and the expiry applied
    the instant the deadline passed: 4.555 - 3.555 is 0.9999999999999996 in floating point,
    and the check called that early (seed 933114 of a sweep, below). A millisecond short of
    the TTL still is."""
    watch, failures = _watch()
    if answer_first:
        watch.answered(33, 3.555, 1)
        watch.expired(33, expired_at, node_id=1, index=117)
    else:
        watch.expired(33, expired_at, node_id=1, index=117)
        watch.answered(33, 3.555, 1)
    assert len(failures) == (1 if early else 0), failures
    assert all("lease 33 (TTL 1 s)" in failure for failure in failures)


def test_seed_933114_passes_with_its_expiry_at_exactly_the_ttl() -> None:
    """Found by sweeping seeds 930000-934999: the lessor expired lease 33 at 4.555, its
    deadline, set when a keepalive sent at 3.555 was answered that same instant."""
    result = run_whole_node(WholeNodeOptions(seed=933114))
    assert result.ok, "\n".join(result.report_lines())
    leases = result.stats.leases
    assert leases is not None and leases.expired > 0
