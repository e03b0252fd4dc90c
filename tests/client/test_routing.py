"""The leader-discovery policy alone, on a fake clock."""

from __future__ import annotations

import random

import pytest

from raftkv.client.errors import (
    BadRequest,
    NoLeader,
    NotLeader,
    Overloaded,
    StorageFailed,
    Timeout,
    Unreachable,
    error_from_answer,
)
from raftkv.client.limits import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    LAST_ATTEMPT_SECONDS_MIN,
)
from raftkv.client.routing import ClusterView, Router

ADDRESSES = {1: ("127.0.0.1", 8001), 2: ("127.0.0.1", 8002), 3: ("127.0.0.1", 8003)}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _router(
    view: ClusterView, clock: FakeClock, target: int | None = None, timeout: float = 5.0
) -> Router:
    return Router(view, target=target, timeout_seconds=timeout, rng=random.Random(1), clock=clock)


def _unreachable(node_id: int) -> Unreachable:
    return Unreachable(f"node {node_id} refused", {"node": node_id})


def test_starts_at_the_known_leader_else_the_first_node() -> None:
    view = ClusterView(ADDRESSES)
    assert _router(view, FakeClock()).node == 1
    view.learn_leader(3)
    assert _router(view, FakeClock()).node == 3
    view.learn_leader(7)  # not in the map: ignored
    assert view.known_leader == 3


def test_hints_are_followed_at_once_and_rounds_pause() -> None:
    clock = FakeClock()
    router = _router(ClusterView(ADDRESSES), clock)
    assert router.failed(NotLeader(3)) == 0.0
    assert router.node == 3
    assert router.failed(_unreachable(3)) == 0.0
    assert router.node == 1  # after 3 comes 1 again
    # The third failure completes a round of as many attempts as nodes: a pause.
    pause = router.failed(NoLeader("no leader"))
    assert 0.0 < pause <= BACKOFF_MAX_SECONDS
    assert router.node == 2


def test_hints_in_a_circle_still_pause() -> None:
    router = _router(ClusterView(ADDRESSES), FakeClock())
    pauses = [router.failed(NotLeader(2 if router.node == 1 else 1)) for _ in range(6)]
    assert sum(1 for pause in pauses if pause > 0) == 2


def test_backoff_grows_to_its_cap() -> None:
    router = _router(ClusterView({1: ADDRESSES[1]}), FakeClock(), timeout=1000.0)
    pauses = [router.failed(_unreachable(1)) for _ in range(12)]
    assert pauses[0] < pauses[5]
    assert max(pauses) <= BACKOFF_MAX_SECONDS
    assert pauses[-1] >= BACKOFF_MAX_SECONDS / 2


def test_the_deadline_raises_timeout_with_the_last_error() -> None:
    clock = FakeClock()
    router = _router(ClusterView(ADDRESSES), clock, timeout=2.0)
    assert router.attempt_timeout_seconds() == pytest.approx(1.0)
    router.failed(_unreachable(1))
    clock.now += 1.5
    assert router.attempt_timeout_seconds() == pytest.approx(0.5)
    clock.now += 0.5
    with pytest.raises(Timeout) as caught:
        router.attempt_timeout_seconds()
    assert caught.value.payload["last_error"]["error"] == "unreachable"


def test_the_deadline_after_no_leader_raises_no_leader() -> None:
    clock = FakeClock()
    router = _router(ClusterView(ADDRESSES), clock, timeout=1.0)
    router.failed(NoLeader("electing"))
    clock.now += 1.0
    with pytest.raises(NoLeader):
        router.attempt_timeout_seconds()


def test_a_pause_never_passes_the_deadline() -> None:
    clock = FakeClock()
    router = _router(ClusterView({1: ADDRESSES[1]}), clock, timeout=0.01)
    clock.now += 0.009
    assert router.failed(_unreachable(1)) <= 0.001 + 1e-9


def test_a_pause_that_would_leave_a_sliver_lasts_to_the_deadline() -> None:
    # Regression: a pause could end a fraction of a millisecond before the deadline and let
    # a write go out with that fraction as its timeout, which expires before the node's
    # no_leader answer comes: a write never appended is then reported OutcomeUnknown (the
    # likely cause of test_session_expiry's timeout test failing once in many runs).
    clock = FakeClock()
    router = _router(ClusterView({1: ADDRESSES[1]}), clock, timeout=0.3)
    router.attempt_timeout_seconds()
    clock.now += 0.3 - BACKOFF_INITIAL_SECONDS / 2 - LAST_ATTEMPT_SECONDS_MIN / 2
    pause = router.failed(NoLeader("electing"))
    assert pause == pytest.approx(0.3 - (clock.now - 100.0))
    clock.now += pause
    with pytest.raises(NoLeader):
        router.attempt_timeout_seconds()


def test_no_attempt_but_the_first_begins_with_a_sliver_left() -> None:
    clock = FakeClock()
    router = _router(ClusterView(ADDRESSES), clock, timeout=0.01)
    assert router.attempt_timeout_seconds() == pytest.approx(0.01)  # the first always goes
    router.failed(NotLeader(2))  # followed at once, no pause
    clock.now += 0.01 - LAST_ATTEMPT_SECONDS_MIN / 4
    with pytest.raises(Timeout):
        router.attempt_timeout_seconds()
    router = _router(ClusterView(ADDRESSES), clock, timeout=1.0)
    router.attempt_timeout_seconds()
    router.failed(NotLeader(2))
    clock.now += 1.0 - LAST_ATTEMPT_SECONDS_MIN * 2
    assert router.attempt_timeout_seconds() == pytest.approx(LAST_ATTEMPT_SECONDS_MIN * 2)


def test_target_reports_not_leader_and_retries_only_itself() -> None:
    router = _router(ClusterView(ADDRESSES), FakeClock(), target=2)
    assert router.node == 2
    assert router.failed(StorageFailed("disk")) > 0
    assert router.node == 2
    assert router.failed(Overloaded("busy")) > 0
    assert router.node == 2
    with pytest.raises(NotLeader):
        router.failed(NotLeader(1))


def test_final_errors_are_raised_at_once() -> None:
    router = _router(ClusterView(ADDRESSES), FakeClock())
    with pytest.raises(BadRequest):
        router.failed(BadRequest("no"))


def test_unknown_leader_is_learned_from_its_url() -> None:
    view = ClusterView(ADDRESSES)
    router = _router(view, FakeClock())
    hint = error_from_answer(
        421, {"error": "not_leader", "leader_id": 4, "leader_url": "http://10.0.0.4:8004"}
    )
    assert isinstance(hint, NotLeader)
    router.failed(hint)
    assert router.node == 4
    assert view.addresses[4] == ("10.0.0.4", 8004)
    # Without a usable URL an unknown leader cannot be asked: the next node is.
    router = _router(ClusterView(ADDRESSES), FakeClock())
    router.failed(NotLeader(5))
    assert router.node == 2


def test_error_from_answer_maps_codes() -> None:
    not_leader = error_from_answer(421, {"error": "not_leader", "leader": "node2"})
    assert isinstance(not_leader, NotLeader) and not_leader.leader_id == 2
    unknown = error_from_answer(418, {"error": "teapot", "detail": 1})
    assert unknown.code == "teapot"
    timeout = error_from_answer(504, {"error": "timeout"})
    assert isinstance(timeout, Timeout) and not isinstance(timeout, Unreachable)
