"""The order in which the Ready loop sends and applies, for the latency of a lone write:
a leader answers the writes a Ready commits before it tells the followers the new commit
index (when that is all its messages carry), and a follower puts its acknowledgement on the
wire before it applies. Three real servers, the in-memory transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftkv.core import Entry, EntryKind, Ready
from raftkv.core.messages import AnyMessage, AppendEntries, AppendEntriesResponse
from raftkv.kv import KVStore
from raftkv.server.options import SYNC_THREAD_MIN_ENTRIES_DEFAULT
from raftkv.server.runtime import RaftServer, _split_for_answers
from tests.server.test_sync_thread import leader_of, put, run_cluster
from tests.waiting import wait_until

WRITES = 8


async def settled_leader(servers: dict[int, RaftServer]) -> RaftServer:
    leader = await leader_of(servers)
    first = leader.node.log.last_index
    await wait_until(
        lambda: all(server.applied_index >= first for server in servers.values()),
        "the term's first entry applied everywhere",
    )
    return leader


def test_a_leader_tells_a_new_commit_index_only_after_applying_through_it(
    tmp_path: Path,
) -> None:
    """Every AppendEntries without entries leaves with the leader's applied index at or past
    the commit index it carries: the writes are answered first. (With commits told at once:
    told later, with the next entries or at a tick, they are answered long before.)"""
    sent: list[tuple[int, int]] = []  # (leader_commit, applied index when sent)

    async def body(servers: dict[int, RaftServer], _executors: object) -> None:
        leader = await settled_leader(servers)
        transport: Any = leader.transport
        send = transport.send

        def recording_send(message: AnyMessage) -> None:
            if type(message) is AppendEntries and not message.entries:
                sent.append((message.leader_commit, leader.applied_index))
            send(message)

        transport.send = recording_send
        first = leader.node.log.last_index + 1
        for number in range(WRITES):  # one at a time: each commits in a Ready of its own
            await leader.requests.propose(put(f"k{number}"))
        commits = [(commit, applied) for commit, applied in sent if commit >= first]
        assert len(commits) >= WRITES, sent  # a new commit index told after every write
        assert all(applied >= commit for commit, applied in commits), commits

    run_cluster(tmp_path, SYNC_THREAD_MIN_ENTRIES_DEFAULT, body, defer_commit_notices=False)


class WatchedStore(KVStore):
    """A follower's store that notes, at every apply, the frames still queued to the
    leader (`queued`, set up by the test)."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: Any = None
        self.seen: list[tuple[int, int]] = []  # (index, frames queued to the leader)

    def apply(self, index: int, command: bytes) -> Any:
        if self.queued is not None:
            self.seen.append((index, self.queued()))
        return super().apply(index, command)


def test_a_follower_puts_its_acknowledgement_on_the_wire_before_applying(
    tmp_path: Path,
) -> None:
    """A follower's Ready that persists new entries and commits earlier ones: when it
    applies, its acknowledgement has left (the link's queue to the leader is empty)."""

    async def body(servers: dict[int, RaftServer], _executors: object) -> None:
        leader = await settled_leader(servers)
        followers = [server for server in servers.values() if server is not leader]
        acknowledged: list[int] = []
        for follower in followers:
            store = follower.state_machine
            assert isinstance(store, WatchedStore)
            link = follower.transport._links[leader.id]  # type: ignore[attr-defined]
            store.queued = lambda link=link: len(link.queue)
            transport: Any = follower.transport
            send = transport.send

            def recording_send(message: AnyMessage, send: Any = send) -> None:
                if type(message) is AppendEntriesResponse and message.success:
                    acknowledged.append(message.match_index)
                send(message)

            transport.send = recording_send
        first = leader.node.log.last_index + 1
        for number in range(WRITES):
            await leader.requests.propose(put(f"k{number}"))
        last = first + WRITES - 1
        await wait_until(
            lambda: all(follower.applied_index >= last for follower in followers),
            "the followers applied every write",
        )
        assert acknowledged, "the followers acknowledged entries"
        for follower in followers:
            store = follower.state_machine
            assert isinstance(store, WatchedStore)
            applied = [(index, queued) for index, queued in store.seen if index >= first]
            assert len(applied) == WRITES, store.seen
            assert all(queued == 0 for _index, queued in applied), applied

    run_cluster(tmp_path, SYNC_THREAD_MIN_ENTRIES_DEFAULT, body, state_machine_factory=WatchedStore)


def append(to: int, entries: list[Entry], commit: int) -> AppendEntries:
    last = entries[0].index - 1 if entries else commit
    return AppendEntries(
        to=to,
        term=2,
        leader_id=1,
        prev_log_index=last,
        prev_log_term=2,
        entries=entries,
        leader_commit=commit,
    )


def test_a_commit_only_message_waits_for_the_apply_even_beside_entries() -> None:
    """A leader's Ready that commits a write and also sends a follower entries (quorum-first
    replication's left-out follower caught up at a tick): the entries leave first, the
    commit-only message to the other follower after the apply. (All messages used to leave
    first then: the CI run on session 45's last commit caught a commit told unapplied.)"""
    write = Entry(term=2, index=3, data=put("k"))
    to_left_out = append(3, [write], 3)
    to_fast = append(2, [], 3)
    ready = Ready(messages=[to_left_out, to_fast], committed_entries=[write])
    assert _split_for_answers(ready) == ([to_left_out], [to_fast])
    # Only commit-only messages: all wait.
    assert _split_for_answers(Ready(messages=[to_fast], committed_entries=[write])) == (
        [],
        [to_fast],
    )


def test_every_message_leaves_first_when_the_ready_persists_or_changes_membership() -> None:
    write = Entry(term=2, index=3, data=put("k"))
    to_fast = append(2, [], 3)
    persisting = Ready(messages=[to_fast], committed_entries=[write], must_sync=True)
    assert _split_for_answers(persisting) == ([to_fast], [])
    change = Entry(term=2, index=3, kind=EntryKind.MEMBERSHIP, data=b"")
    reconfiguring = Ready(messages=[to_fast], committed_entries=[change])
    assert _split_for_answers(reconfiguring) == ([to_fast], [])
    nothing_committed = Ready(messages=[to_fast])
    assert _split_for_answers(nothing_committed) == ([to_fast], [])
