"""Idle polling (server/idle_poll.py, server/idle_spin.c): after arm() the spinner thread
spins for the window, at SCHED_IDLE, bound to the arming thread's CPU, then sleeps; a node
arms it after the Readies that move a client's request along at low load, not after an idle
cluster's heartbeats, and reports the time in /metrics; without the C module or SCHED_IDLE
the node runs without it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from raftkv.core import Entry, ReadState, Ready
from raftkv.core.messages import AppendEntries, AppendEntriesResponse
from raftkv.server import RaftServer, idle_poll
from raftkv.server.idle_poll import IdlePoller, polls_after
from tests.process.cluster import wait_for
from tests.server.test_sync_thread import leader_of, put, run_cluster
from tests.waiting import WAIT_SECONDS, wait_until

WINDOW_US = 20_000  # long against the scheduler's latency on a busy 2-core machine


def spinner_thread() -> threading.Thread:
    return next(thread for thread in threading.enumerate() if thread.name == "raftkv-idle-poll")


def armed_until_it_spins(poller: IdlePoller) -> None:
    """Arm until the spinner has spun: on a busy machine a SCHED_IDLE thread may get no CPU
    within one window."""

    def spun() -> bool:
        poller.arm()
        return poller.spun_seconds > 0

    wait_for(spun, WAIT_SECONDS, "the spinner spinning")


@pytest.mark.compiled
def test_the_spinner_spins_at_idle_priority_on_the_arming_cpu_then_sleeps() -> None:
    poller = IdlePoller(WINDOW_US)
    assert poller.start(), poller.why_off
    try:
        thread = spinner_thread()
        assert thread.native_id is not None
        assert os.sched_getscheduler(thread.native_id) == os.SCHED_IDLE
        armed_until_it_spins(poller)
        spinner = poller._spinner
        assert spinner.arms >= 1
        assert spinner.bound_cpu in os.sched_getaffinity(0)
        assert os.sched_getaffinity(thread.native_id) == {spinner.bound_cpu}
        # Past the window it sleeps, and the time spun stays where it was.
        wait_for(lambda: spinner.sleeping, WAIT_SECONDS, "the spinner asleep")
        spun = poller.spun_seconds
        later = time.monotonic() + 3 * WINDOW_US / 1e6
        wait_for(lambda: time.monotonic() > later, WAIT_SECONDS, "three windows more")
        assert spinner.sleeping and poller.spun_seconds == spun
        # Armed again, it wakes and spins.
        before = spun

        def spinning_again() -> bool:
            poller.arm()
            return poller.spun_seconds > before

        wait_for(spinning_again, WAIT_SECONDS, "spinning again")
    finally:
        poller.stop()
    assert not any(thread.name == "raftkv-idle-poll" for thread in threading.enumerate())
    assert not poller.running and poller.spun_seconds > 0  # a counter never goes back


def test_without_the_c_module_the_poller_says_why_and_does_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(idle_poll, "Spinner", None)
    poller = IdlePoller(WINDOW_US)
    assert poller.start() is False
    assert poller.why_off is not None and "C modules" in poller.why_off
    poller.arm()  # a no-op
    assert poller.spun_seconds == 0.0 and not poller.running
    poller.stop()


@pytest.mark.compiled
def test_where_sched_idle_is_refused_the_poller_does_not_spin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(idle_poll, "_idle_priority", lambda: False)
    poller = IdlePoller(WINDOW_US)
    assert poller.start() is False
    assert poller.why_off is not None and "SCHED_IDLE" in poller.why_off
    assert not any(thread.name == "raftkv-idle-poll" for thread in threading.enumerate())
    poller.stop()


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        IdlePoller(0)


@pytest.mark.compiled
def test_a_node_arms_it_after_its_readies_and_reports_the_time(tmp_path: Path) -> None:
    async def body(servers: dict[int, RaftServer], _executors: object) -> None:
        leader = await leader_of(servers)
        for number in range(5):
            await leader.requests.propose(put(f"k{number}"))
        for server in servers.values():
            poller = server.idle_poller
            assert poller is not None and poller.running
            assert poller._spinner.arms > 0
        text = leader.metrics.render().decode()
        reported = [
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("raft_idle_poll_seconds_total ")
        ]
        assert len(reported) == 1 and reported[0] >= 0.0

    run_cluster(tmp_path, 0, body, idle_poll_us=50)


def test_a_node_polls_after_a_clients_work_at_low_load_only() -> None:
    write = Entry(term=2, index=7, data=put("k"))
    heartbeat = AppendEntries(
        to=2,
        term=2,
        leader_id=1,
        prev_log_index=7,
        prev_log_term=2,
        entries=[],
        leader_commit=7,
        read_context=9,
    )
    acknowledgement = AppendEntriesResponse(
        to=1, term=2, from_id=2, success=True, match_index=7, read_context=9
    )
    # A client's work at low load: a request waiting, an entry to persist or to apply, a
    # read answered.
    assert polls_after(Ready(messages=[heartbeat]), 1)
    assert polls_after(Ready(entries=[write], messages=[heartbeat]), 0)
    assert polls_after(Ready(committed_entries=[write]), 0)
    assert polls_after(Ready(read_states=[ReadState(request_id=3, index=7)]), 0)
    # Under load: never.
    assert not polls_after(Ready(entries=[write, write]), 0)
    assert not polls_after(Ready(committed_entries=[write, write]), 0)
    assert not polls_after(Ready(entries=[write]), 2)
    # A heartbeat or its acknowledgement alone: never (an idle cluster's; a follower's
    # while its leader serves reads).
    assert not polls_after(Ready(messages=[heartbeat]), 0)
    assert not polls_after(Ready(messages_after_persist=[acknowledgement]), 0)
    assert not polls_after(Ready(messages=[acknowledgement]), 0)


@pytest.mark.compiled
def test_an_idle_cluster_does_not_poll_after_its_heartbeats(tmp_path: Path) -> None:
    async def body(servers: dict[int, RaftServer], _executors: object) -> None:
        leader = await leader_of(servers)
        for number in range(3):
            await leader.requests.propose(put(f"k{number}"))
        last = leader.applied_index
        await wait_until(
            lambda: all(s.applied_index == last for s in servers.values()), "all applied"
        )
        pollers = {node_id: server.idle_poller for node_id, server in servers.items()}
        assert all(poller is not None and poller.running for poller in pollers.values())
        assert all(poller._spinner.arms > 0 for poller in pollers.values())  # the writes
        # Past the last write's commit notices (sent at the leader's next tick): from here
        # on, heartbeats only.
        quiet_from = time.monotonic() + 0.2
        await wait_until(lambda: time.monotonic() > quiet_from, "the commit notices sent")
        arms = {node_id: poller._spinner.arms for node_id, poller in pollers.items()}
        # Ten heartbeat intervals (50 ms each, NodeOptions' default).
        later = time.monotonic() + 0.5
        await wait_until(lambda: time.monotonic() > later, "ten heartbeat intervals")
        assert {node_id: poller._spinner.arms for node_id, poller in pollers.items()} == arms
        assert leader.node.role == "leader" and leader.applied_index == last

    run_cluster(tmp_path, 0, body, idle_poll_us=50)
