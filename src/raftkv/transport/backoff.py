"""Reconnect delays: exponential, capped, and jittered from an injected random source.

Jitter keeps the nodes of a cluster that lost a peer at the same instant from redialing it
in lockstep; drawing it from a given `random.Random` keeps tests and `--seed` runs
reproducible (the module-level `random` is never used).
"""

from __future__ import annotations

import random


class Backoff:
    __slots__ = ("_attempt", "_random", "initial_seconds", "max_seconds")

    def __init__(self, initial_seconds: float, max_seconds: float, rng: random.Random) -> None:
        self.initial_seconds = initial_seconds
        self.max_seconds = max_seconds
        self._random = rng
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay_seconds(self) -> float:
        """A delay in [ceiling / 2, ceiling], the ceiling doubling per attempt up to the cap.

        Half the ceiling is kept as a floor so a peer that keeps refusing is never redialed
        in a tight loop, however the dice fall.
        """
        # The exponent is bounded so the float never overflows however long a peer is down.
        ceiling = min(self.max_seconds, self.initial_seconds * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return self._random.uniform(ceiling / 2, ceiling)
