"""SyncThread: the WAL sync thread's hand-over without run_in_executor (server/sync_thread.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from raftkv.server.sync_thread import SyncThread, run_off_loop


def test_jobs_run_in_order_in_one_other_thread_and_answer_on_the_loop() -> None:
    worker = SyncThread("sync-test")
    ran: list[tuple[int, str]] = []

    def job(number: int) -> int:
        ran.append((number, threading.current_thread().name))
        return number * 10

    async def main() -> list[int]:
        return list(await asyncio.gather(*(worker.run(lambda n=n: job(n)) for n in range(20))))

    try:
        assert asyncio.run(main()) == [n * 10 for n in range(20)]
    finally:
        worker.shutdown()
    assert [number for number, _ in ran] == list(range(20))
    assert {name for _, name in ran} == {"sync-test"}


def test_an_exception_reaches_the_waiter_and_the_thread_goes_on() -> None:
    worker = SyncThread("sync-test")

    def fail() -> None:
        raise OSError(28, "No space left on device")

    async def main() -> int:
        with pytest.raises(OSError, match="No space left"):
            await worker.run(fail)
        return await worker.run(lambda: 7)

    try:
        assert asyncio.run(main()) == 7
    finally:
        worker.shutdown()


def test_shutdown_lets_given_jobs_finish_and_refuses_new_ones() -> None:
    worker = SyncThread("sync-test")
    release = threading.Event()
    done: list[int] = []

    def slow() -> None:
        release.wait(timeout=10)
        done.append(1)

    async def main() -> None:
        worker.run(slow)
        worker.run(lambda: done.append(2))
        release.set()
        worker.shutdown(wait=True)
        with pytest.raises(RuntimeError, match="after shutdown"):
            worker.run(lambda: None)

    asyncio.run(main())
    assert done == [1, 2]


def test_submit_gives_a_concurrent_future() -> None:
    worker = SyncThread("sync-test")
    try:
        assert worker.submit(lambda a, b: a + b, 2, 3).result(timeout=10) == 5
        failing = worker.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=10)
    finally:
        worker.shutdown()


def test_an_answer_for_a_closed_loop_is_dropped_and_later_jobs_still_run() -> None:
    worker = SyncThread("sync-test")
    release = threading.Event()

    async def give() -> None:
        worker.run(lambda: release.wait(timeout=10))

    asyncio.run(give())  # the loop closes with the job still running
    release.set()
    try:
        # The thread survived answering a closed loop: it still serves jobs.
        assert worker.submit(lambda: "alive").result(timeout=10) == "alive"
    finally:
        worker.shutdown()


def test_a_cancelled_waiter_is_left_alone() -> None:
    worker = SyncThread("sync-test")
    release = threading.Event()

    errors: list[dict[str, object]] = []

    async def main() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        future = worker.run(lambda: release.wait(timeout=10))
        future.cancel()
        release.set()
        # Settling a cancelled future would raise InvalidStateError in the loop; the next
        # answer arrives after it, so the loop has handled (and skipped) it by then.
        return await worker.run(lambda: "next")

    try:
        assert asyncio.run(main()) == "next"
    finally:
        worker.shutdown()
    assert errors == []


def test_other_executors_go_through_run_in_executor() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    seen: list[object] = []

    class Recording(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            original = loop.run_in_executor

            def run_in_executor(executor, func, *args):  # type: ignore[no-untyped-def]
                seen.append(executor)
                return original(executor, func, *args)

            loop.run_in_executor = run_in_executor  # type: ignore[method-assign]
            return loop

    async def main() -> int:
        return await run_off_loop(pool, lambda: 42)

    loop = Recording().new_event_loop()
    try:
        assert loop.run_until_complete(main()) == 42
    finally:
        loop.close()
        pool.shutdown()
    assert seen == [pool]


def test_the_thread_is_scheduled_as_a_batch_thread_unless_told_otherwise() -> None:
    """Woken (a sync done, a job given), the thread must not preempt the thread running on
    its CPU (its own event loop most often, which holds the GIL it would then wait for)."""

    def policy() -> int:
        return os.sched_getscheduler(0)  # 0: the calling thread

    batch, plain = SyncThread("sync-batch"), SyncThread("sync-plain", batch_scheduling=False)
    try:
        assert batch.submit(policy).result(timeout=30) == os.SCHED_BATCH
        assert plain.submit(policy).result(timeout=30) == os.SCHED_OTHER
    finally:
        batch.shutdown()
        plain.shutdown()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this thread's own is untouched
