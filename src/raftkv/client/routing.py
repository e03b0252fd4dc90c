"""Which node to ask, and when to give up: leader discovery without any I/O.

The sync and the asyncio client drive the same `Router`: ask `router.node`, within
`router.attempt_timeout_seconds()`; on success call `succeeded`, on failure `failed`, which
either raises the error to report or returns how long to wait before the next attempt (the
router has already moved `node` on). Keeping the policy here lets both clients behave alike
and lets tests drive it with a fake clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from raftkv import errors
from raftkv.client.errors import RETRYABLE, NoLeader, NotLeader, Timeout, describe
from raftkv.client.limits import (
    ATTEMPT_TIMEOUT_SECONDS_MIN,
    ATTEMPT_TIMEOUT_SHARE,
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    LAST_ATTEMPT_SECONDS_MIN,
)

# Bounds the backoff exponent so the float never overflows however long the cluster is down.
_BACKOFF_DOUBLINGS_MAX = 32


def _address_from_url(url: str | None) -> tuple[str, int] | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or port is None:
        return None
    return parts.hostname, port


# Where reads go first (the clients' `read_from`): the leader the client knows, or any member
# (followers serve linearizable reads with the leader's read index, SPEC §6), which spreads
# the cost of parsing and answering reads over the cluster.
READ_FROM = ("leader", "any")


class ClusterView:
    """What a client knows of the cluster: the node addresses and the last leader seen."""

    def __init__(self, addresses: Mapping[int, tuple[str, int]]) -> None:
        if not addresses:
            raise ValueError("the cluster map names no node")
        self.addresses: dict[int, tuple[str, int]] = dict(addresses)
        self.known_leader: int | None = None

    def check_options(self, timeout: float, target: int | None, read_from: str = "leader") -> None:
        """The constructor checks both clients share."""
        if timeout <= 0:
            raise ValueError("the timeout must be positive")
        if target is not None and target not in self.addresses:
            raise ValueError(f"node {target} is not in the cluster map")
        if read_from not in READ_FROM:
            raise ValueError(f"read_from is one of {', '.join(READ_FROM)}, not {read_from!r}")

    def read_start(self, read_from: str, rng: random.Random) -> int | None:
        """Where a read's first attempt goes: None for the leader as known (as a write's),
        or with `read_from="any"` a member drawn at random (any member serves reads)."""
        return rng.choice(list(self.addresses)) if read_from == "any" else None

    def first_choice(self) -> int:
        if self.known_leader in self.addresses:
            assert self.known_leader is not None
            return self.known_leader
        return next(iter(self.addresses))

    def next_after(self, node_id: int) -> int:
        order = list(self.addresses)
        if node_id not in self.addresses:
            return order[0]
        return order[(order.index(node_id) + 1) % len(order)]

    def learn_leader(self, leader_id: int | None) -> None:
        if leader_id is not None and leader_id in self.addresses:
            self.known_leader = leader_id

    def follow_hint(self, hint: NotLeader, asked: int) -> int | None:
        """The node a `not_leader` answer points to, or None when it points nowhere useful."""
        leader_id = hint.leader_id
        if leader_id is None or leader_id == asked:
            return None
        if leader_id not in self.addresses:
            address = _address_from_url(hint.leader_url)
            if address is None:
                return None
            # A leader the map does not name (it joined by a membership change): its own
            # client URL, from the hint, is how to reach it from now on.
            self.addresses[leader_id] = address
        return leader_id


def attempt_timeout_for(timeout_seconds: float, remaining_seconds: float) -> float:
    return min(
        remaining_seconds, max(ATTEMPT_TIMEOUT_SECONDS_MIN, timeout_seconds * ATTEMPT_TIMEOUT_SHARE)
    )


def connect_timeout_for(attempt_timeout_seconds: float) -> float:
    return min(attempt_timeout_seconds, CONNECT_TIMEOUT_SECONDS)


class Router:
    """The attempts of one operation: which node, how long each, and when to stop.

    Without a target it starts at the last known leader (else the first node), follows
    `not_leader` hints at once, moves to the next node after a retryable failure, and pauses
    (with a growing, jittered backoff) after each round of as many failed attempts as there
    are nodes, so hints that point in a circle cannot spin. With a target it asks that node
    only: `not_leader` is the answer to report, other retryable failures are retried there.
    """

    def __init__(
        self,
        view: ClusterView,
        *,
        target: int | None,
        timeout_seconds: float,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
        start: int | None = None,
    ) -> None:
        self.view = view
        self.target = target
        self.timeout_seconds = timeout_seconds
        # (`start`: where the first attempt goes instead of the leader known, for a read.)
        if target is not None:
            self.node = target
        else:
            self.node = start if start is not None else view.first_choice()
        self._rng = rng
        self._clock = clock
        self._deadline = clock() + timeout_seconds
        self._attempts = 0
        self._failures_since_pause = 0
        self._pauses = 0
        self._last_error: errors.ClientError | None = None

    def attempt_timeout_seconds(self) -> float:
        """How long the next attempt may take; raises the final error once time is up."""
        remaining = self._deadline - self._clock()
        if remaining <= 0 or (self._attempts > 0 and remaining < LAST_ATTEMPT_SECONDS_MIN):
            raise self._expired()
        self._attempts += 1
        return attempt_timeout_for(self.timeout_seconds, remaining)

    def succeeded(self, leader_id: int | None) -> None:
        self.view.learn_leader(leader_id)

    def failed(self, error: errors.ClientError) -> float:
        """Seconds to wait before asking `self.node`; raises `error` when it is final."""
        if isinstance(error, NotLeader):
            if self.target is not None:
                raise error
            hinted = self.view.follow_hint(error, self.node)
            # Learnt from the hint, not only from the hinted node's success: a read's
            # success names no leader (any member serves reads), and a client of a cluster
            # whose followers refuse them would otherwise ask a follower first every time.
            self.view.learn_leader(hinted)
            self.node = hinted if hinted is not None else self.view.next_after(self.node)
        elif isinstance(error, RETRYABLE):
            if self.target is None:
                self.node = self.view.next_after(self.node)
        else:
            raise error
        self._last_error = error
        return self._pause_seconds()

    def _pause_seconds(self) -> float:
        self._failures_since_pause += 1
        round_attempts = 1 if self.target is not None else len(self.view.addresses)
        if self._failures_since_pause < round_attempts:
            return 0.0
        self._failures_since_pause = 0
        ceiling = min(
            BACKOFF_MAX_SECONDS,
            BACKOFF_INITIAL_SECONDS * 2 ** min(self._pauses, _BACKOFF_DOUBLINGS_MAX),
        )
        self._pauses += 1
        # Half the ceiling is a floor so a cluster that keeps failing is never asked in a
        # tight loop; the jitter keeps many clients from retrying in lockstep.
        delay = self._rng.uniform(ceiling / 2, ceiling)
        # Never sleep past the deadline, nor stop just short of it (LAST_ATTEMPT_SECONDS_MIN):
        # the next attempt_timeout_seconds() then reports the expiry.
        remaining = self._deadline - self._clock()
        if remaining - delay < LAST_ATTEMPT_SECONDS_MIN:
            delay = remaining
        return max(0.0, delay)

    def _expired(self) -> errors.ClientError:
        if self.target is not None:
            message = f"node {self.target} did not answer within {self.timeout_seconds:g} s"
        else:
            message = f"no leader answered within {self.timeout_seconds:g} s"
        payload: dict[str, Any] = {"message": message}
        if self._last_error is not None:
            payload["last_error"] = describe(self._last_error)
        if isinstance(self._last_error, NoLeader):
            return NoLeader(message, payload)
        return Timeout(message, payload)
