"""A warning that may come often (a disk stalling every sync, a client sending poison
commands by the thousand): at most one line per interval, the next line counting those
left out, so that the log stays readable and costs nothing under a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# How a line says that warnings were left out before it (raft-bench counts them too).
LEFT_OUT_SUFFIX = "; {} more since the last such warning"


class LimitedWarning:
    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_seconds = interval_seconds
        # Only rate-limits log lines, so any clock will do (tests pass their own).
        self._clock = clock
        self._warned_at = float("-inf")
        self._left_out = 0

    def warn(self, text: str, *args: object) -> None:
        """`logger.warning(text, *args)`, unless one was logged within the interval."""
        now = self._clock()
        if now - self._warned_at < self._interval_seconds:
            self._left_out += 1
            return
        left_out, self._left_out = self._left_out, 0
        self._warned_at = now
        more = LEFT_OUT_SUFFIX.format(left_out) if left_out else ""
        self._logger.warning(text + "%s", *args, more)
