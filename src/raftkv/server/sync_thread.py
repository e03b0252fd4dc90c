"""The thread a node's WAL syncs run in, handed over without `run_in_executor`.

`loop.run_in_executor(pool, job)` costs some forty lines of interpreted Python per call
(`ThreadPoolExecutor.submit` builds a `concurrent.futures.Future` with its own `Condition`,
`wrap_future` chains it to an asyncio future through two more callbacks): under load a node
syncs its WAL about a thousand times a second, and py-spy put `submit` alone at 4.8 % of a
follower's samples at C=64. Here a job is a tuple on a `queue.SimpleQueue` (C) and comes
back through `loop.call_soon_threadsafe` (C in uvloop): one asyncio future per job.

The thread is scheduled `SCHED_BATCH` (Linux): woken, when a sync ends or a job is given, it
does not preempt the thread running on its CPU, most often its own process's event loop,
which holds the GIL the sync thread then waits for at once. Each such preemption was two
context switches for nothing: the leader's loop was preempted 0.5-0.75 times per write at
C=16 (`/proc/<pid>/task/<tid>/status`), 0.15-0.27 after, and the three nodes spent 10-12 %
less CPU per write (docs/ARCHITECTURE.md, session 32). A thread that wants a CPU still gets
an idle one at once, and its share of a busy one; only the preemption on waking goes.

`SyncThread` is still an `Executor` (`submit`, `shutdown`), so code that takes any executor
works with it, and an event loop that runs executor work itself (the simulator's) is given
a plain executor instead: `run_off_loop` uses the fast path only for a `SyncThread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from raftkv.server.thread_scheduling import schedule_calling_thread

T = TypeVar("T")

# (the loop to answer on, the job, the asyncio future to settle); None stops the thread.
_Job = tuple[asyncio.AbstractEventLoop, Callable[[], Any], "asyncio.Future[Any]"]


class SyncThread(Executor):
    """One daemon thread, started on first use, that runs jobs in the order given; scheduled
    `SCHED_BATCH` unless `batch_scheduling` is False (module docstring)."""

    def __init__(self, name: str, *, batch_scheduling: bool = True) -> None:
        self._name = name
        self._batch_scheduling = batch_scheduling
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._shut_down = False
        self._lock = threading.Lock()  # start and shutdown may race from other threads

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Run `job` in the thread; the future (of the running loop) settles with its result
        or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put((loop, job, future))
        return future

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """The `Executor` interface, for callers that want a concurrent future."""
        result: Future[T] = Future()

        def job() -> None:
            if not result.set_running_or_notify_cancel():
                return
            try:
                result.set_result(fn(*args, **kwargs))
            except BaseException as error:  # handed to the caller, as an Executor does
                result.set_exception(error)

        self._put((_NO_LOOP, job, _NO_FUTURE))
        return result

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Jobs already given still run; none is accepted after."""
        with self._lock:
            if self._shut_down:
                thread = self._thread
            else:
                self._shut_down = True
                thread = self._thread
                if thread is not None:
                    self._jobs.put(None)
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _put(self, item: _Job) -> None:
        with self._lock:
            if self._shut_down:
                raise RuntimeError(f"{self._name}: cannot run a job after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._jobs.put(item)

    def _work(self) -> None:
        # Set either way: a thread inherits its creator's policy, and the event loop that
        # starts this one may be running SCHED_BATCH (a follower's: RoleScheduling).
        schedule_calling_thread(batch=self._batch_scheduling)
        jobs = self._jobs
        while (item := jobs.get()) is not None:
            loop, job, future = item
            if loop is _NO_LOOP:
                job()
                continue
            try:
                result = job()
            except BaseException as error:
                _answer(loop, future, None, error)
            else:
                _answer(loop, future, result, None)


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # A closed loop raises RuntimeError: nobody waits for this answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# Mark a job given through `submit`, which settles its own concurrent future.
_NO_LOOP: Any = object()
_NO_FUTURE: Any = object()


def run_off_loop(executor: Executor, job: Callable[[], T]) -> asyncio.Future[T]:
    """`job` in `executor`, as an asyncio future of the running loop: a `SyncThread`'s own
    hand-over, otherwise `run_in_executor` (which the simulator's loop runs itself)."""
    if isinstance(executor, SyncThread):
        return executor.run(job)
    return asyncio.get_running_loop().run_in_executor(executor, job)
