"""The review's defects put back, one at a time, for the whole-node simulator's proofs of
reach (tests/sim/test_whole_node_reach.py): each function patches the production code the
way it was before that defect's fix, for as long as its context lasts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from raftkv.core import Entry
from raftkv.core.membership import Membership
from raftkv.core.messages import ForwardKind, HardState
from raftkv.core.node import MembershipChangeRefused, RaftNode
from raftkv.core.ready import Ready, SnapshotMeta
from raftkv.errors import NotLeader
from raftkv.server import follower_reads, runtime
from raftkv.server import members as members_module
from raftkv.server.deferred_syncs import DeferredSyncs
from raftkv.server.follower_reads import FollowerReads
from raftkv.server.members import MembershipOperations
from raftkv.server.peer_book import PeerBook
from raftkv.server.ready_durability import ReadyDurability
from raftkv.server.runtime import RaftServer
from raftkv.server.snapshots import SnapshotTaker
from raftkv.storage import recovery
from raftkv.storage.base import LogStore, SnapshotStore, StableStore
from raftkv.transport import handshake
from raftkv.transport.shared import FramedMessage


@contextlib.contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def single_voter_sends_early() -> Iterator[None]:
    """Defect 1: messages made while the term or vote changed leave with `messages`, before
    the Ready's hard state is durable (a single voter's first AppendEntries reaches a
    learner, then a power loss takes the node back to the old term)."""
    original = RaftNode.ready

    def ready(self: RaftNode) -> Ready:
        early, self.messages_now = self.messages_now, []
        result: Ready = original(self)
        result.messages = early
        return result

    with _patched(RaftNode, "ready", ready):
        yield


@contextlib.contextmanager
def rejoined_node_trusts_old_removals() -> Iterator[None]:
    """Defect 7: "removed" decided from every configuration replayed, not only those since
    this node's own join: a re-added id that replays its earlier removal stops itself."""
    original = PeerBook.membership_applied

    def membership_applied(self: PeerBook, membership: Membership, index: int) -> None:
        self.joined_index = 0
        original(self, membership, index)

    with _patched(PeerBook, "membership_applied", membership_applied):
        yield


@contextlib.contextmanager
def promotion_task_dies_on_a_dropped_proposal() -> Iterator[None]:
    """Defect 8: the learner-promotion task catches only `MembershipChangeRefused` and
    `NotLeader`; a `ProposalDropped` (a transfer under way, a full window) ends it, and with
    no watch on background tasks nobody notices: learners are never promoted again."""

    async def promote(self: MembershipOperations) -> None:
        while True:
            await asyncio.sleep(members_module.PROMOTION_CHECK_SECONDS)
            with contextlib.suppress(MembershipChangeRefused, NotLeader):
                self.promote_one_learner()

    def watch(self: RaftServer, task: asyncio.Task[None]) -> None:
        pass

    with (
        _patched(MembershipOperations, "promote_caught_up_learners", promote),
        _patched(RaftServer, "_watch", watch),
    ):
        yield


class _CoreAppliedIndex:
    """The server as the snapshot taker saw it before the fix: `applied_index` is the
    core's, which a received snapshot moves before the state machine is restored."""

    def __init__(self, server: RaftServer) -> None:
        self._server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    @property
    def applied_index(self) -> int:
        return self._server.node.log.applied


@contextlib.contextmanager
def snapshot_taken_racing_an_install() -> Iterator[None]:
    """Defect 2: the snapshot task labels its copy with the core's applied index, and an
    install marks its index only after its save: a snapshot task that starts just after an
    InstallSnapshot was stepped saves the old state under the new index, over the good
    file, and a restart loads it."""
    original_init = SnapshotTaker.__init__

    def init(self: SnapshotTaker, server: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, _CoreAppliedIndex(server), *args, **kwargs)

    async def install(self: SnapshotTaker, meta: SnapshotMeta, data: bytes) -> None:
        server = self.server
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._disk_executor, server.snapshot_store.save, meta, data)
        self.last_index = max(self.last_index, meta.index)  # after the save, not before
        server.storage.reset(meta.index, meta.term)
        server.state_machine.restore(data)
        server.state_machine_restored(meta.index)
        self.bytes_since = 0
        self._metrics.snapshots_installed.inc()

    with _patched(SnapshotTaker, "__init__", init), _patched(SnapshotTaker, "install", install):
        yield


@contextlib.contextmanager
def damaged_newest_snapshot_falls_back() -> Iterator[None]:
    """Defect 4: a damaged newest snapshot is passed over for an older one and the WAL is
    reset to it, even when the WAL no longer holds the entries between the two: the node
    starts without entries it stored and acknowledged."""

    def recover(
        log_store: LogStore, stable_store: StableStore, snapshot_store: SnapshotStore
    ) -> recovery.Recovered:
        found, damaged = recovery._newest_readable(snapshot_store)
        snapshot = found[1] if found else None
        index, term = (snapshot[0].index, snapshot[0].term) if snapshot else (0, 0)
        if damaged and snapshot is None:
            recovery._check_fallback(log_store, None, damaged)
        if log_store.term(index) != term:
            if damaged:
                log_store.reset(index, term)
                log_store.sync()
            else:
                recovery._reset_to_snapshot(log_store, stable_store, snapshot_store, found)
        entries = log_store.entries(index + 1, log_store.last_index() + 1)
        hard_state = stable_store.hard_state()
        last = entries[-1].index if entries else index
        if hard_state.commit > last:
            hard_state = HardState(hard_state.term, hard_state.voted_for, last)
        return recovery.Recovered(hard_state, entries, snapshot, index, [])

    with _patched(runtime, "recover", recover):
        yield


@contextlib.contextmanager
def acknowledged_before_durable() -> Iterator[None]:
    """Session 50's order broken: a follower's sync the Ready loop does not wait for
    (server/deferred_syncs.py) lets its acknowledgements leave when it starts, not once it
    has returned, so a crash can take back entries a leader counted as durable there."""
    original = DeferredSyncs.start

    def start(self: DeferredSyncs, last: Entry, messages: list[FramedMessage]) -> None:
        for message in messages:
            self._send_from_loop(message)
        original(self, last, [])

    with _patched(DeferredSyncs, "start", start):
        yield


@contextlib.contextmanager
def promise_sent_beside_a_deferred_sync() -> Iterator[None]:
    """Session 50's first cut: a Ready that syncs nothing sends its acknowledgements at
    once, though they may promise entries an earlier Ready handed to a sync not yet ended
    (a follower's answer to an AppendEntries repeating entries it holds)."""
    with _patched(ReadyDurability, "promises_now", lambda durability, messages: messages):
        yield


@contextlib.contextmanager
def removed_node_never_told() -> Iterator[None]:
    """Session 20's fix undone: a member never tells a dialer it was removed (no
    `removed_at`), so a removed node whose removal no leader told it (the leadership changed
    right after, or the members restarted and forgot it) runs on forever. (Session 29's
    notices undone too: they tell most such nodes as well, the other way round.)"""
    with (
        _patched(handshake, "removal_refusal", lambda handshake, applied: None),
        removed_node_never_dialed(),
    ):
        yield


@contextlib.contextmanager
def removed_node_never_dialed() -> Iterator[None]:
    """Session 29's fix undone: a member that applies a removal never dials the removed node
    to tell it (`PeerBook._tell_removed`), so one that dials no member (every peer it knows
    is gone) runs on forever."""
    with _patched(PeerBook, "_tell_removed", lambda book, peers, index: None):
        yield


@contextlib.contextmanager
def follower_reads_its_own_commit() -> Iterator[None]:
    """Follower reads without the leader: a follower answers a linearizable read at the
    commit index it knows (it may be cut off from a leader that committed more since)."""

    async def read_index(reads: FollowerReads, kind: ForwardKind) -> int:
        return reads._host.node.log.committed  # type: ignore[attr-defined]

    with _patched(FollowerReads, "read_index", read_index):
        yield


@contextlib.contextmanager
def follower_reads_share_the_forward_out() -> Iterator[None]:
    """Session 30's batching rule broken: reads that began while a forward was out take
    its answer too, though the leader may have taken that read index before they began."""
    original = follower_reads._settle

    def settle(batch: list[asyncio.Future[int]], outcome: int | BaseException) -> None:
        original(batch, outcome)
        for reads in live:
            for waiting in reads._queued.values():
                original(waiting, outcome)

    original_init = FollowerReads.__init__
    live: list[FollowerReads] = []  # (a list: the order the nodes were made, every run)

    def init(reads: FollowerReads, *arguments: Any) -> None:
        original_init(reads, *arguments)
        live.append(reads)

    with _patched(follower_reads, "_settle", settle), _patched(FollowerReads, "__init__", init):
        yield
