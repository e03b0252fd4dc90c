"""A link written from another thread (`PeerLink.send_from_thread`): what a node's WAL sync
thread uses to send a follower's acknowledgement the moment its entries are durable
(`RaftServer._sync_then_send`). The frames must keep their order with the loop's own
writes, whatever the socket takes, and the thread must never write once the connection is
gone."""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

import pytest

from tests.waiting import wait_until

from .harness import Network, append_entries, idle_link, run_on_network

TCP_KINDS = ["tcp", "tcp-uvloop"]


def from_thread(link: Any, payload: bytes) -> bool:
    """`send_from_thread` run in a thread of its own, as the sync thread runs it."""
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(link.send_from_thread(payload)))
    thread.start()
    thread.join(timeout=10)
    assert answers, "send_from_thread did not return"
    return answers[0]


@pytest.mark.parametrize("kind", ["memory", *TCP_KINDS])
def test_a_thread_writes_on_an_idle_link_and_the_order_is_kept(kind: str) -> None:
    """Written at once from the thread while nothing is queued; with a frame queued ahead
    the thread refuses, and the loop sends it after that frame (`send_framed`). The
    in-memory link never writes from a thread: the loop sends what it refused."""

    async def body(network: Network) -> None:
        sender, link, _, inbox = await idle_link(network)
        [framed] = sender.frame([append_entries(1, 2, 1)])
        to, framed_link, payload = framed
        assert (to, framed_link) == (2, link)
        if kind == "memory":
            assert from_thread(link, payload) is False
            assert sender.send_framed(framed) is False  # queued for its delivery task
            await inbox.wait_for_count(2)
            assert sender.counters().totals().frames_sent_from_thread == 0
            return
        assert from_thread(link, payload) is True
        sender.send(append_entries(1, 2, 2))  # queued: its writer task has not run yet
        [later] = sender.frame([append_entries(1, 2, 3)])
        assert from_thread(link, later[2]) is False
        assert sender.send_framed(later) is False  # (queued behind the frame ahead)
        await inbox.wait_for_count(4)
        assert inbox.sequences_from(1) == [0, 1, 2, 3]
        totals = sender.counters().totals()
        assert (totals.frames_sent, totals.frames_sent_from_thread) == (4, 1)

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", TCP_KINDS)
@pytest.mark.parametrize("then", ["nothing", "a frame from the loop"])
def test_the_end_of_a_frame_the_socket_did_not_take_goes_first(
    kind: str, then: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket's buffer took only part of the thread's frame: the rest goes on the
    loop's next turn, or ahead of the loop's next frame, never after it."""
    real_write = os.write
    parts: list[int] = []

    def part_from_other_threads(fd: int, data: Any) -> int:
        if threading.current_thread() is threading.main_thread():
            return real_write(fd, data)
        parts.append(len(data))
        return real_write(fd, bytes(data)[:7])  # inside the frame's payload

    async def body(network: Network) -> None:
        sender, link, _, inbox = await idle_link(network)
        [(_, _, payload)] = sender.frame([append_entries(1, 2, 1)])
        monkeypatch.setattr(os, "write", part_from_other_threads)
        assert from_thread(link, payload) is True
        monkeypatch.setattr(os, "write", real_write)
        assert len(parts) == 1 and parts[0] > 7  # the socket took part of the frame
        if then != "nothing":
            assert sender.send_at_once(append_entries(1, 2, 2)) is True
        await inbox.wait_for_count(3 if then != "nothing" else 2)
        assert inbox.sequences_from(1) == ([0, 1, 2] if then != "nothing" else [0, 1])

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_no_thread_writes_once_the_connection_is_gone(kind: str) -> None:
    """The thread writes to a descriptor of its own, closed with the connection: a peer
    gone makes it refuse (the loop queues the frame for the next connection)."""

    async def body(network: Network) -> None:
        sender, link, receiver, _ = await idle_link(network)
        assert link._thread_fd >= 0
        [(_, _, payload)] = sender.frame([append_entries(1, 2, 1)])
        await receiver.close()
        await wait_until(lambda: not sender.is_connected(2), "the link down")
        await wait_until(lambda: link._thread_fd < 0, "the thread's descriptor closed")
        assert from_thread(link, payload) is False
        assert sender.counters().totals().frames_sent_from_thread == 0

    run_on_network(kind, body)


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_out_of_descriptors_the_loop_writes_the_link_alone(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No descriptor left to duplicate (EMFILE): the connection still serves, and the
    thread refuses, so the loop sends what it would have written."""

    def no_descriptor_left(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    async def body(network: Network) -> None:
        monkeypatch.setattr(os, "dup", no_descriptor_left)
        sender, link, _, inbox = await idle_link(network)
        assert link._thread_fd == -1
        [framed] = sender.frame([append_entries(1, 2, 1)])
        assert from_thread(link, framed[2]) is False
        assert sender.send_framed(framed) is True  # the idle link, from the loop
        await inbox.wait_for_count(2)
        assert inbox.sequences_from(1) == [0, 1]

    run_on_network(kind, body)
