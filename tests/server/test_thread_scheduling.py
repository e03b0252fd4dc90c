"""A node's threads' scheduling policies (server/thread_scheduling.py): the event loop runs
SCHED_BATCH while the node follows and SCHED_OTHER while it leads; the sync thread is what
it was told to be, whatever its creator runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from raftkv.server.sync_thread import SyncThread
from raftkv.server.thread_scheduling import RoleScheduling, schedule_calling_thread

T = TypeVar("T")


def in_a_new_thread(work: Callable[[], T]) -> T:
    """`work`'s result, run in a thread of its own (a policy set there dies with it)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as error:  # handed to the test
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return results[0]


def test_the_roles_choose_the_policy_once_per_change() -> None:
    asked: list[bool] = []

    def schedule(batch: bool) -> bool:
        asked.append(batch)
        return True

    scheduling = RoleScheduling(schedule)
    scheduling("follower")
    scheduling("follower", 2)  # the same role: nothing to change
    scheduling("pre_candidate")
    scheduling("candidate")
    assert asked == [True]
    scheduling("leader", 1)
    assert asked == [True, False]
    scheduling("follower", 3)
    scheduling("learner")
    assert asked == [True, False, True]
    scheduling.restore()
    scheduling.restore()  # already back
    assert asked == [True, False, True, False]


def test_restore_does_nothing_for_a_leader_or_before_any_role() -> None:
    asked: list[bool] = []
    scheduling = RoleScheduling(lambda batch: asked.append(batch) or True)
    scheduling.restore()
    scheduling("leader")
    scheduling.restore()
    assert asked == [False]


def test_a_refusal_leaves_the_loop_running() -> None:
    scheduling = RoleScheduling(lambda batch: False)
    scheduling("follower")  # logged at debug, not raised
    assert scheduling.batch is True


def test_the_calling_thread_switches_both_ways_and_keeps_its_nice_value() -> None:
    def switch() -> tuple[int, int, int, int]:
        thread_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread_id, 5)  # raising one's nice needs no privilege
        assert schedule_calling_thread(batch=True)
        batch = os.sched_getscheduler(0)
        nice_as_batch = os.getpriority(os.PRIO_PROCESS, thread_id)
        assert schedule_calling_thread(batch=False)
        return (
            batch,
            nice_as_batch,
            os.sched_getscheduler(0),
            os.getpriority(os.PRIO_PROCESS, thread_id),
        )

    assert in_a_new_thread(switch) == (os.SCHED_BATCH, 5, os.SCHED_OTHER, 5)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # only the calling thread


def test_a_sync_thread_started_by_a_batch_thread_is_what_it_was_told() -> None:
    """A thread inherits its creator's policy: a follower's loop (SCHED_BATCH) starting a
    sync thread told to stay ordinary must not hand it its own policy."""

    def start_both() -> tuple[int, int]:
        assert schedule_calling_thread(batch=True)
        plain = SyncThread("sync-plain", batch_scheduling=False)
        batch = SyncThread("sync-batch")
        try:
            policy = os.sched_getscheduler
            return (
                plain.submit(policy, 0).result(timeout=30),
                batch.submit(policy, 0).result(timeout=30),
            )
        finally:
            plain.shutdown()
            batch.shutdown()

    assert in_a_new_thread(start_both) == (os.SCHED_OTHER, os.SCHED_BATCH)
