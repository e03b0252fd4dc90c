"""A deterministic asyncio event loop for simulating whole nodes: virtual time, no threads,
no sockets, no real clock, and an order of ready callbacks that a seed perturbs.

The server's code (tasks, futures, `asyncio.sleep`, `asyncio.timeout`, events, queues,
`run_in_executor`) runs on it unchanged. Two things differ from a real loop, on purpose:

- **Time is virtual.** `time()` only moves when nothing is ready: the loop jumps to the
  next timer. A run of any length takes as long as its callbacks take to execute.
- **Ready callbacks run in a perturbed order.** asyncio runs them first in, first out; here
  the next one is, with probability `perturbation`, any ready callback drawn by the seeded
  rng. Every order this produces is one a real loop could produce under different timing
  (callbacks ready at the same moment are concurrent), so interleavings of tasks, futures
  and "disk thread" completions are explored, and a seed replays one exactly.
- **`run_in_executor` runs the function on the loop**, after a virtual delay drawn by the
  rng (`executor_delay_max`): the disk thread's work finishes at an arbitrary later point,
  interleaved with everything else, deterministically.

Processes crash and stall: every handle belongs to the contextvars context it was
scheduled from, and a simulator marks whose it is with `OWNER`. `kill(owner)` drops that
owner's ready callbacks and timers, and every later one, without running them (no `finally`
runs, as in a real crash), so a node can die at any await point. `pause(owner, seconds)`
holds back every callback of that owner until the time is up (a stopped process, a slow
fsync that blocked its thread): its timers come due late, all at once, as after a real
SIGSTOP, and what arrived for it meanwhile waits, as in a socket buffer.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import random
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")

# Who a callback belongs to (a simulated process), inherited by everything it schedules.
OWNER: contextvars.ContextVar[object] = contextvars.ContextVar("raftkv_sim_owner", default=None)


class LoopException(Exception):
    """An exception nobody handled inside a callback: a bug the simulation reports."""


class SimulatedEventLoop(asyncio.AbstractEventLoop):
    def __init__(
        self,
        rng: random.Random,
        *,
        perturbation: float = 0.5,
        executor_delay_max: float = 0.002,
        time_quantum: float | None = None,
    ) -> None:
        self._rng = rng
        # Timers come due on multiples of this (rounded up): callbacks due within one
        # quantum are ready together and run in a seeded order. With times drawn from a
        # continuous range two events would never coincide, and races between, say, a
        # client request and the tick that makes a node leader would never be explored.
        self._quanta_per_second = round(1 / time_quantum) if time_quantum else 0
        self._perturbation = perturbation
        self._executor_delay_max = executor_delay_max
        self._time = 0.0
        self._ready: list[asyncio.Handle] = []
        self._timers: list[tuple[float, int, asyncio.Handle]] = []
        self._sequence = itertools.count()
        self._running = False
        self._stopping = False
        self._closed = False
        self._dead: set[object] = set()
        # owner -> the virtual time its callbacks are held back until.
        self._paused: dict[object, float] = {}
        # What killed processes left: kept referenced until the loop closes, so that the
        # garbage collector never finalizes their coroutines (which would run their
        # `finally` blocks) at a moment no seed decides.
        self._graveyard: list[asyncio.Handle] = []
        # Exceptions raised in callbacks and never retrieved, in the order they happened.
        self.unhandled: list[dict[str, Any]] = []
        self.callbacks_run = 0
        self._exception_handler: Any = None
        # Called after every callback that ran: where a simulator checks its invariants.
        self.after_callback: Callable[[], None] | None = None

    # --- time ---------------------------------------------------------------------------
    def time(self) -> float:
        return self._time

    # --- scheduling ---------------------------------------------------------------------
    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        self._check_closed()
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    call_soon_threadsafe = call_soon  # type: ignore[assignment]

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._time + max(0.0, delay), callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        self._check_closed()
        if self._quanta_per_second:
            quanta = self._quanta_per_second
            rounded = math.ceil(when * quanta - 1e-6) / quanta
            if rounded <= self._time < when:
                # A hair in the future (within the rounding's tolerance of a quantum this
                # loop has reached): the next quantum, not now. Rounded down to now, a wait
                # of the time left until a deadline (`asyncio.timeout(deadline - now)`) came
                # due at once, found the same time left, and waited again, forever, virtual
                # time standing still (seed 1409 at 5 nodes hung a whole-node sweep).
                rounded = (math.floor(self._time * quanta + 1e-6) + 1) / quanta
            when = rounded
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._sequence), handle))
        handle._scheduled = True  # type: ignore[attr-defined]
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # cancelled timers are skipped when they come due

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        self._check_closed()
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.create_future()

        def run() -> None:
            if future.cancelled():
                return
            try:
                result = func(*args)
            except Exception as error:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.call_later(self._rng.uniform(0.0, self._executor_delay_max), run)
        return future

    # --- processes ----------------------------------------------------------------------
    def kill(self, owner: object) -> None:
        """Drop every callback and timer of `owner`, now and from now on."""
        self._dead.add(owner)
        self._graveyard += [h for h in self._ready if self._is_dead(h)]
        self._ready = [h for h in self._ready if not self._is_dead(h)]

    def bury(self, remains: object) -> None:
        """Keep `remains` (a killed process's objects) referenced until the loop closes."""
        self._graveyard.append(remains)  # type: ignore[arg-type]

    def pause(self, owner: object, seconds: float) -> None:
        """Run none of `owner`'s callbacks for the next `seconds` (or until a longer pause
        already under way ends)."""
        until = self._time + seconds
        if until > self._paused.get(owner, 0.0):
            self._paused[owner] = until

    def paused(self, owner: object) -> bool:
        return self._paused.get(owner, 0.0) > self._time

    def _held_back(self, handle: asyncio.Handle) -> bool:
        """Put off a paused owner's callback until its pause ends."""
        context: contextvars.Context = handle._context  # type: ignore[attr-defined]
        until = self._paused.get(context.get(OWNER))
        if until is None:
            return False
        if until <= self._time:
            del self._paused[context.get(OWNER)]
            return False
        heapq.heappush(self._timers, (until, next(self._sequence), handle))
        return True

    def _is_dead(self, handle: asyncio.Handle) -> bool:
        if not self._dead:
            return False
        context: contextvars.Context = handle._context  # type: ignore[attr-defined]
        return context.get(OWNER) in self._dead

    # --- running ------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Run one ready callback (jumping to the next timer first if none is ready);
        False when nothing is left to run at all."""
        if not self._ready:
            if not self._move_due_timers(jump=True):
                return False
        else:
            self._move_due_timers(jump=False)
        ready = self._ready
        if len(ready) > 1 and self._rng.random() < self._perturbation:
            handle = ready.pop(self._rng.randrange(len(ready)))
        else:
            handle = ready.pop(0)
        if handle.cancelled():
            return True
        if self._is_dead(handle):
            self._graveyard.append(handle)
            return True
        if self._paused and self._held_back(handle):
            return True
        self.callbacks_run += 1
        handle._run()
        if self.after_callback is not None:
            self.after_callback()
        return True

    def _move_due_timers(self, *, jump: bool) -> bool:
        timers = self._timers
        while timers and timers[0][2].cancelled():
            heapq.heappop(timers)
        if not timers:
            return False
        if jump and timers[0][0] > self._time:
            self._time = timers[0][0]
        moved = False
        while timers and timers[0][0] <= self._time:
            _, _, handle = heapq.heappop(timers)
            if not handle.cancelled():
                if isinstance(handle, asyncio.TimerHandle):
                    handle._scheduled = False  # type: ignore[attr-defined]
                self._ready.append(handle)
                moved = True
        return moved or bool(self._ready)

    def run_until(self, predicate: Callable[[], bool], time_limit: float) -> bool:
        """Run callbacks until `predicate()` holds (checked after each) or virtual time
        would pass `time_limit`; True if the predicate held."""
        with self._as_running():
            while not predicate():
                if not self._ready:
                    next_due = self._next_timer_time()
                    if next_due is None or next_due > time_limit:
                        self._time = max(self._time, time_limit)
                        return predicate()
                self.run_once()
            return True

    def run_for(self, seconds: float) -> None:
        """Run every callback due in the next `seconds` of virtual time."""
        end = self._time + seconds
        self.run_until(lambda: False, end)

    def _next_timer_time(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].cancelled():
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def run_until_complete(self, future: Any) -> Any:
        self._check_closed()
        task = asyncio.ensure_future(future, loop=self)
        with self._as_running():
            while not task.done():
                if not self.run_once():
                    raise RuntimeError("the loop ran out of work before the future finished")
        return task.result()

    def run_forever(self) -> None:
        with self._as_running():
            while not self._stopping and self.run_once():
                pass
        self._stopping = False

    class _Running:
        def __init__(self, loop: SimulatedEventLoop) -> None:
            self.loop = loop
            self.previous: asyncio.AbstractEventLoop | None = None

        def __enter__(self) -> None:
            self.previous = asyncio.events._get_running_loop()
            asyncio.events._set_running_loop(self.loop)
            self.loop._running = True

        def __exit__(self, *exc: object) -> None:
            self.loop._running = False
            asyncio.events._set_running_loop(self.previous)

    def _as_running(self) -> SimulatedEventLoop._Running:
        return SimulatedEventLoop._Running(self)

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._graveyard.clear()

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("the simulated event loop is closed")

    async def shutdown_asyncgens(self) -> None:
        return None

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        return None

    # --- errors -------------------------------------------------------------------------
    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is not None:
            self._exception_handler(self, context)
        else:
            self.default_exception_handler(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Record it: the simulator decides what an unhandled exception means."""
        self.unhandled.append(context)

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def get_task_factory(self) -> None:
        return None
