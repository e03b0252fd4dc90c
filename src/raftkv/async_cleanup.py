"""Awaiting in a `finally`, for the modules setup.py compiles with mypyc. Never compile this one.

mypyc (2.4.1) gets one thing wrong in a coroutine: a `finally` block that awaits, reached by a
`try` body that ended normally, ends by raising whatever exception the thread last handled,
an exception some other coroutine caught long before (measured: a TCP peer link, its
connection closed, ended as a stale CancelledError from a connection task cancelled by
another event loop, and never redialed). Related upstream: mypyc/mypyc#1114. An `except`
block that awaits and then raises the exception it caught is compiled correctly.

So compiled code puts its awaiting clean-ups through these functions, which CPython runs;
tests/test_compiled_modules.py refuses a compiled module with an `await` in a `finally`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def then_clean_up(work: Awaitable[T], clean_up: Callable[[], Awaitable[object]]) -> T:
    """`await work`, then `await clean_up()` however the work ended (`try`/`finally`)."""
    try:
        return await work
    finally:
        await clean_up()


async def first_to_end(*tasks: asyncio.Task[None]) -> set[asyncio.Task[None]]:
    """Wait for the first of `tasks` to end, then cancel the others and wait for them too
    (also when the wait itself is cancelled); returns the tasks that ended by themselves."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done
