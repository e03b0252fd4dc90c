"""Waiting in tests: on a condition, with a deadline, never for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

# Generous: a loaded 2-core CI machine runs the tests in parallel.
WAIT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.01


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout_seconds: float = WAIT_SECONDS,
) -> None:
    """Return once `condition()` holds (it may be a coroutine function); fail naming `what`
    after `timeout_seconds`. Polled: the conditions read state no event announces."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
