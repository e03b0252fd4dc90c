"""RaftNode: the sans-IO Raft state machine (roles, terms, elections, message dispatch).

Drive it with `tick()`, `step(message)` and `propose(data)`; collect the work with `ready()`,
carry it out as `Ready` describes, then `advance(ready)`. The leader's replication logic lives
in `replication.py`; this module owns terms, roles, elections and the follower side.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from mypy_extensions import mypyc_attr

from raftkv.core.config import RaftConfig
from raftkv.core.follower import FollowerSide
from raftkv.core.log import RaftLog, entry_size
from raftkv.core.membership import EMPTY, Membership
from raftkv.core.messages import (
    TERM_LIMIT,
    AnyMessage,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.core.quorum import VoteResult, joint_vote_result
from raftkv.core.ready import PeerStatus, ReadState, Ready, SnapshotMeta, SoftState
from raftkv.core.replication import Replication
from raftkv.errors import InvariantViolation, NotLeader, ProposalDropped


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# Module constants: an enum member looked up on its class costs a class lookup on every use.
_FOLLOWER: Final = Role.FOLLOWER
_PRE_CANDIDATE: Final = Role.PRE_CANDIDATE
_CANDIDATE: Final = Role.CANDIDATE
_LEADER: Final = Role.LEADER


class MembershipChangeRefused(ProposalDropped):
    code = "bad_request"


def _differs(a: int | None, b: int | None) -> bool:
    """`a != b` for optional node ids, by identity first: compiled, `!=` on `int | None` is
    a generic rich comparison, and has_ready() asks after every step about values that are
    almost always the very object remembered."""
    return a is not b and a != b


# Compiled with mypyc (setup.py): test doubles subclass it (`node_class`).
@mypyc_attr(allow_interpreted_subclasses=True)
class RaftNode:
    """One Raft peer. Not thread-safe; every call runs to completion without I/O."""

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: tuple[SnapshotMeta, bytes] | None = None,
        applied: int = 0,
    ) -> None:
        """Build a node from what storage holds (all empty for a brand-new node).

        `applied` is the index the state machine already reflects (the snapshot's index after
        a restore); committed entries after it come out of the first Ready again.
        """
        hard_state = hard_state or HardState()
        self.config = config
        self.id = config.node_id
        self._rng = rng
        meta = snapshot[0] if snapshot else None
        self.log = RaftLog(
            entries,
            snapshot_index=meta.index if meta else 0,
            snapshot_term=meta.term if meta else 0,
            committed=hard_state.commit,
            applied=applied,
        )
        self.term = hard_state.term
        self.voted_for = hard_state.voted_for
        # The newest snapshot this node holds, served to followers that fell behind it.
        self.snapshot: tuple[SnapshotMeta, bytes] | None = snapshot
        self.messages_now: list[AnyMessage] = []
        self.messages_after_persist: list[AnyMessage] = []
        self.read_states: list[ReadState] = []
        self.events: list[str] = []
        self.role = _FOLLOWER
        self.replication = Replication(self)
        self.membership: Membership = EMPTY
        self.membership_index = 0
        self.reload_membership()

        self.leader_id: int | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self._reset_randomized_election_timeout()
        self.votes: dict[int, bool] = {}
        self.transfer_target: int | None = None
        # Ticks left of our promise not to vote: for an election timeout after we last
        # heard from a leader, that leader may hold a lease (thesis §6.4.1 relies on
        # followers honouring it). Kept apart from `leader_id`, which a higher term clears
        # (a late vote answer, say) while the promise still stands. A restarted node has
        # forgotten which leader it heard from, so it keeps the promise from the start.
        self.lease_promise_ticks = config.election_timeout_ticks if self.term > 0 else 0

        self.follower = FollowerSide(self)
        # A snapshot installed from the leader, for the next Ready to hand to the driver.
        self.received_snapshot: tuple[SnapshotMeta, bytes] | None = None

        # The last HardState handed out (or loaded), field by field: has_ready() compares
        # them after every step, and a msgspec Struct's field costs a generic lookup.
        self._last_term = hard_state.term
        self._last_voted_for = hard_state.voted_for
        self._last_commit = hard_state.commit
        # The role and leader the last SoftState handed out named (the role by identity).
        self._last_role = self.role
        self._last_leader_id: int | None = None
        self._ready_outstanding = False

    # --- public driving API -------------------------------------------------------------
    def bootstrap(self, membership: Membership) -> None:
        """Start a brand-new cluster: every founding member calls this with the same
        membership, so all of them hold the identical, already committed entry 1."""
        if self.log.last_index != 0 or self.term != 0:
            raise InvariantViolation("bootstrap needs a fresh node")
        entry = Entry(term=1, index=1, kind=EntryKind.MEMBERSHIP, data=membership.encode())
        self.term = 1
        self.log.append([entry])
        self.log.commit_to(1)
        self.reload_membership()

    def tick(self) -> None:
        """One unit of logical time (§5.2: timeouts are counted in ticks)."""
        if self.role is _LEADER:
            self.replication.tick()
        else:
            if self.lease_promise_ticks > 0:  # never below 0
                self.lease_promise_ticks -= 1
            self.election_elapsed += 1
            if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
                self.events.append(f"election timeout at term {self.term}")
                self.campaign(pre_vote=self.config.pre_vote)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a client command; returns (index, term). The command is committed when an
        entry with this index *and* term is applied; another term there means it was lost."""
        return self._append_as_leader(EntryKind.NORMAL, data)

    def propose_membership(self, membership: Membership) -> tuple[int, int]:
        """Propose a new configuration (§6). One change at a time: refused while an earlier
        one is not committed. Entering a joint configuration is left automatically.

        Also refused until an entry of this leader's own term is committed (the 2015 fix to
        single-server changes, thesis §4.1 errata): a configuration the previous leader
        appended but did not commit could still be committed by another majority, and a
        change based on ours would then let two majorities decide the same index.
        """
        self._require_leader()
        if self.membership_index > self.log.committed:
            raise MembershipChangeRefused("a membership change is already in progress")
        if self.log.term(self.log.committed) != self.term:
            raise ProposalDropped(
                "this leader has not yet committed an entry of its term; try again shortly"
            )
        if not membership.voters:
            raise MembershipChangeRefused("a configuration needs at least one voter")
        return self._append_as_leader(EntryKind.MEMBERSHIP, membership.encode())

    def transfer_leadership(self, target: int) -> None:
        """Thesis §3.10: bring `target` up to date, then tell it to campaign at once."""
        self._require_leader()
        if target == self.id or target == self.transfer_target:
            return  # a repeat changes nothing (and must not restart the abort timer)
        if not self.membership.is_voter(target):
            raise MembershipChangeRefused(f"node {target} is not a voter")
        self.transfer_target = target
        self.events.append(f"transferring leadership to {target}")
        self.replication.start_transfer()

    def read_index(self, request_id: int) -> None:
        """Thesis §6.4: ask for a read index; a ReadState with `request_id` comes out of a
        later Ready once leadership is confirmed by a quorum."""
        self._require_leader()
        self.replication.request_read(request_id)

    def announce_commit(self, index: int) -> bool:
        """As leader, tell the followers the commit index as soon as it reaches `index`,
        even with no entries to send (RaftConfig.defer_commit_notices): for a follower that
        will wait to apply `index`, the answer to a request it forwarded (a proposal's
        index, a read's). True if the next Ready tells it (the driver has a Ready to make);
        False if it is told later, already told, or this node does not lead."""
        if self.role is _LEADER:
            return self.replication.announce_commit(index)
        return False

    def peer_status(self) -> dict[int, PeerStatus]:
        """Replication progress of every peer while leading (empty otherwise): the public
        view drivers read instead of reaching into `replication`."""
        return self.replication.peer_status() if self.role is _LEADER else {}

    def lease_valid(self) -> bool:
        """A leader lease (thesis §6.4.1): safe to read locally without a round trip.

        The lease is counted in ticks, so it holds only while the driver's ticks keep pace
        with real time (up to the drift margin). A driver whose process was paused, or whose
        ticks fell behind, must not trust it until ticks have been on time for an election
        timeout again; the server and the simulator both do exactly that.
        """
        return self.role is _LEADER and self.replication.lease_valid()

    def snapshot_taken(self, meta: SnapshotMeta, data: bytes, keep_entries: int = 0) -> None:
        """The driver snapshotted the state machine at `meta.index`: discard the log prefix
        it covers, keeping `keep_entries` before it for followers that are slightly behind."""
        if meta.index > self.log.applied:
            raise InvariantViolation(
                f"snapshot at {meta.index} beyond the applied index {self.log.applied}"
            )
        if self.snapshot is None or meta.index > self.snapshot[0].index:
            self.snapshot = (meta, data)
        compact_to = meta.index - keep_entries
        compact_term = self.log.term(compact_to)
        if compact_to > self.log.snapshot_index and compact_term is not None:
            self.log.compact(compact_to, compact_term)

    def step(self, message: AnyMessage) -> None:
        """Handle one message from a peer."""
        if message.to != self.id:
            return
        term = message.term  # read once: on a union of types, each read tests the type first
        if term > self.term:
            if term >= TERM_LIMIT:
                # Decoding refuses such a frame; this guards drivers that skip the codec.
                self.events.append(f"ignored {type(message).__name__}: term {term}")
                return
            if not self._accept_higher_term(message):
                return
        elif term < self.term:
            self._reject_stale(message)
            return
        # The message types are disjoint, so testing the common ones first changes nothing;
        # and final (a decoded message has exactly one of these types), so an identity test
        # of the type does: compiled, isinstance() costs a generic call per miss.
        if type(message) is AppendEntries:
            self._become_follower_of(message.leader_id)
            self.follower.handle_append_entries(message)
        elif type(message) is AppendEntriesResponse:
            if self.role is _LEADER:
                self.replication.handle_append_response(message)
        elif type(message) is RequestVote:
            self._handle_request_vote(message)
        elif type(message) is RequestVoteResponse:
            self._handle_vote_response(message)
        elif type(message) is InstallSnapshot:
            self._become_follower_of(message.leader_id)
            self.follower.handle_install_snapshot(message)
        elif type(message) is InstallSnapshotResponse:
            if self.role is _LEADER:
                self.replication.handle_snapshot_response(message)
        elif type(message) is TimeoutNow and self.promotable() and self.role is not _LEADER:
            self.events.append(f"TimeoutNow from {message.leader_id}: campaigning")
            self.campaign(pre_vote=False, transfer=True)

    def has_ready(self) -> bool:
        # The simulator asks after every step: plain attribute tests, no allocation, cheapest
        # first (every test is free of side effects, so their order changes no answer).
        if (
            self.messages_now
            or self.messages_after_persist
            or self.read_states
            or self.events
            or self.received_snapshot is not None
        ):
            return True
        log = self.log
        committed = log.committed
        if log.handed_off < log.snapshot_index + len(log.entries) or committed > log.applied:
            return True
        if (
            self.term != self._last_term
            or _differs(self.voted_for, self._last_voted_for)
            or committed != self._last_commit
        ):
            return True
        role = self.role
        if role is not self._last_role or _differs(self.leader_id, self._last_leader_id):
            return True
        return role is _LEADER and self.replication.has_pending_sends()

    def ready(self) -> Ready:
        if self._ready_outstanding:
            raise InvariantViolation("advance() the previous Ready first")
        if self.role is _LEADER:
            self.replication.flush()
        role = self.role
        # Compared field by field, built only when changed: ready() runs once per Ready.
        soft_state: SoftState | None = None
        leader_id = self.leader_id
        if role is not self._last_role or _differs(leader_id, self._last_leader_id):
            soft_state = SoftState(role.value, leader_id)
            self._last_role = role
            self._last_leader_id = leader_id
        log = self.log
        hard_state: HardState | None = None
        term_or_vote_changed = False
        term, voted_for, commit = self.term, self.voted_for, log.committed
        if (
            term != self._last_term
            or _differs(voted_for, self._last_voted_for)
            or commit != self._last_commit
        ):
            hard_state = self.hard_state()
            term_or_vote_changed = term != self._last_term or _differs(
                voted_for, self._last_voted_for
            )
            self._last_term, self._last_voted_for, self._last_commit = term, voted_for, commit
        must_sync = term_or_vote_changed
        entries = (
            log.unstable_entries() if log.handed_off < log.snapshot_index + len(log.entries) else []
        )
        if entries:
            must_sync = True
        snapshot = self.received_snapshot
        if snapshot is not None:
            self.received_snapshot = None
            must_sync = True
        committed_entries = (
            log.next_committed(self.config.committed_bytes_per_ready_max)
            if log.committed > log.applied
            else []
        )
        if term_or_vote_changed:
            # Every message carries our term, and a leader's speaks for it (§5.1): none may
            # leave before that term and vote are durable. A single voter wins its election
            # inside one step, so its first AppendEntries would otherwise reach a learner
            # before a power loss could send the node back to the old term, to win the same
            # term again and append different entries at the same indexes.
            messages: list[AnyMessage] = []
            messages_after_persist = self.messages_now + self.messages_after_persist
        else:
            messages = self.messages_now
            messages_after_persist = self.messages_after_persist
        self.messages_now = []
        self.messages_after_persist = []
        read_states, self.read_states = self.read_states, []
        events, self.events = self.events, []
        self._ready_outstanding = True
        # Entries alone (the term and vote durable, no snapshot) may be persisted while the
        # next Ready goes on: a leader's with nothing promised after the write, a follower's
        # with its acknowledgements sent once they are durable. See Ready.
        may_persist_later = (
            (role is _FOLLOWER or (role is _LEADER and not messages_after_persist))
            and bool(entries)
            and not term_or_vote_changed
            and snapshot is None
        )
        # Positional, in Ready's field order: a dataclass __init__ matches keywords slowly.
        return Ready(
            soft_state,
            hard_state,
            entries,
            snapshot,
            messages,
            messages_after_persist,
            committed_entries,
            read_states,
            events,
            must_sync,
            may_persist_later,
        )

    def advance(self, ready: Ready) -> None:
        """The driver carried out `ready`: its entries are durable, its committed entries
        applied."""
        if not self._ready_outstanding:
            raise InvariantViolation("advance() without ready()")
        self._ready_outstanding = False
        if ready.entries:
            last = ready.entries[-1]
            # A truncation after ready() may have replaced these entries; then they are not
            # what is stable (Log Matching: same index and term means same entries).
            if self.log.term(last.index) == last.term and last.index > self.log.stable:
                self.log.stable = last.index
        if ready.committed_entries:
            self.log.applied = max(self.log.applied, ready.committed_entries[-1].index)
        if self.role is _LEADER:
            # The leader counts itself only for what its own disk holds.
            self.replication.on_self_persisted()

    def advance_before_persisted(self, ready: Ready) -> None:
        """The driver carried out `ready` but for making its entries durable, which it
        started and reports with `entries_persisted` (only for `ready.may_persist_later`)."""
        if not self._ready_outstanding:
            raise InvariantViolation("advance_before_persisted() without ready()")
        if not ready.may_persist_later:
            raise InvariantViolation("this Ready must be persisted before advance()")
        self._ready_outstanding = False
        if ready.committed_entries:
            self.log.applied = max(self.log.applied, ready.committed_entries[-1].index)

    def entries_persisted(self, index: int, term: int) -> None:
        """The entries handed off through (index, term) are durable (after
        `advance_before_persisted`). If a truncation replaced that entry since, they are not
        what the log holds there (Log Matching), and nothing changes."""
        log = self.log
        if index > log.stable and log.term(index) == term:
            log.stable = index
            if self.role is _LEADER:
                self.replication.on_self_persisted()

    # --- state --------------------------------------------------------------------------
    def hard_state(self) -> HardState:
        return HardState(term=self.term, voted_for=self.voted_for, commit=self.log.committed)

    def promotable(self) -> bool:
        """May campaign: a voter of the newest configuration, or of the one before it while
        the newest is uncommitted. A leader that removed itself and lost office before its
        C_new committed may be the only node holding C_new; the others, still in the joint
        configuration, need its vote and cannot get it (its log is more up-to-date), so only
        it can finish the change (votes are still counted in C_new, which it is not in)."""
        membership = self.membership
        if membership.is_voter(self.id):
            return True
        index = self.membership_index
        if index <= self.log.committed or index <= self.log.snapshot_index:
            return False
        return self.membership_at(index - 1).is_voter(self.id)

    def _require_leader(self) -> None:
        if self.role is not _LEADER:
            raise NotLeader(self.leader_id)

    def _reset_randomized_election_timeout(self) -> None:
        timeout = self.config.election_timeout_ticks
        maximum = self.config.election_timeout_ticks_max or 2 * timeout
        self.randomized_election_timeout = self._rng.randrange(timeout, maximum)

    def reload_membership(self) -> None:
        """The configuration in force is the newest one in the log, committed or not (§6)."""
        for entry in reversed(self.log.entries):
            if entry.kind == EntryKind.MEMBERSHIP:
                self._set_membership(Membership.decode(entry.data), entry.index)
                return
        meta = self.snapshot[0] if self.snapshot else None
        if meta is not None:
            self._set_membership(meta.membership, meta.index)
        else:
            self._set_membership(EMPTY, 0)

    def membership_at(self, index: int) -> Membership:
        """The configuration in force once the log up to `index` is applied (for snapshots)."""
        if self.membership_index <= index:
            # The newest configuration in the log is at or before `index`: no entry after
            # it changes it. Scanning back from `index` instead, every snapshot of a large
            # state read 60,000 and more entries on the loop (10-20 ms at 300,000 keys).
            return self.membership
        log = self.log
        for position in range(min(index, log.last_index), log.snapshot_index, -1):
            entry = log.entry(position)
            if entry.kind == EntryKind.MEMBERSHIP:
                return Membership.decode(entry.data)
        return self.snapshot[0].membership if self.snapshot else EMPTY

    def _set_membership(self, membership: Membership, index: int) -> None:
        changed = membership != self.membership
        self.membership, self.membership_index = membership, index
        if changed:
            self.events.append(f"membership {describe_membership(membership)} (index {index})")
        self.replication.sync_progress()

    # --- roles --------------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.voted_for = None
        self.leader_id = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.votes = {}
        self.transfer_target = None

    def become_follower(self, term: int, leader_id: int | None) -> None:
        was = self.role
        self._reset(term)
        self.role = _FOLLOWER
        self.leader_id = leader_id
        self.replication.clear()
        if was is not _FOLLOWER:
            self.events.append(f"became follower at term {term}")

    def _become_follower_of(self, leader_id: int) -> None:
        """Same-term AppendEntries or InstallSnapshot: that sender is the leader (§5.2)."""
        if self.role is not _FOLLOWER:
            if self.role is _LEADER:
                raise InvariantViolation(f"two leaders in term {self.term}")
            self.become_follower(self.term, leader_id)
        self.leader_id = leader_id
        self.election_elapsed = 0
        self.lease_promise_ticks = self.config.election_timeout_ticks

    def campaign(self, *, pre_vote: bool, transfer: bool = False) -> None:
        """§5.2: start an election; with `pre_vote`, first a trial run at term + 1 that
        changes nobody's term (thesis §9.6)."""
        if self.term + 1 >= TERM_LIMIT:
            # The next term would not fit storage (messages.TERM_LIMIT): stay put rather
            # than write a term no node could read back. Tried again at the next election timeout.
            self.election_elapsed = 0
            self.events.append(f"not campaigning: term {self.term} is the last one allowed")
            return
        if pre_vote:
            self._reset(self.term)
            self.role = _PRE_CANDIDATE
            vote_term = self.term + 1
            self.events.append(f"became pre-candidate at term {self.term}")
        else:
            self._reset(self.term + 1)
            self.role = _CANDIDATE
            self.voted_for = self.id
            vote_term = self.term
            self.events.append(f"became candidate at term {self.term}")
        self.votes = {self.id: True}
        if self._tally_votes():
            return
        for voter in sorted(self.membership.all_voters - {self.id}):
            request = RequestVote(
                to=voter,
                term=vote_term,
                candidate_id=self.id,
                last_log_index=self.log.last_index,
                last_log_term=self.log.last_term,
                pre_vote=pre_vote,
                transfer=transfer,
            )
            # A real request goes out only once our term and self-vote are durable.
            (self.messages_now if pre_vote else self.messages_after_persist).append(request)

    def _tally_votes(self) -> bool:
        """Act on the votes so far; True when the election is decided."""
        result = joint_vote_result(self.membership, self.votes)
        if result is VoteResult.PENDING:
            return False
        granted = sorted(voter for voter, granted in self.votes.items() if granted)
        if result is VoteResult.WON:
            if self.role is _PRE_CANDIDATE:
                self.events.append(f"pre-vote won at term {self.term} (votes {granted})")
                self.campaign(pre_vote=False)
            else:
                self._become_leader(granted)
        else:
            self.events.append(f"election lost at term {self.term}")
            self.become_follower(self.term, None)
        return True

    def _become_leader(self, granted: list[int]) -> None:
        self._reset(self.term)
        self.role = _LEADER
        self.leader_id = self.id
        self.events.append(f"became leader at term {self.term} (votes {granted})")
        self.replication.become_leader()
        # §5.4.2 / thesis §6.4: an entry of the new term commits everything before it.
        self.log.append([Entry(term=self.term, index=self.log.last_index + 1, kind=EntryKind.NOOP)])
        self.replication.broadcast()

    def _append_as_leader(self, kind: EntryKind, data: bytes) -> tuple[int, int]:
        self._require_leader()
        if self.transfer_target is not None:
            raise ProposalDropped(f"leadership transfer to {self.transfer_target} in progress")
        entry = Entry(term=self.term, index=self.log.last_index + 1, kind=kind, data=data)
        self.replication.admit(entry_size(entry))
        self.log.append([entry])
        if kind == EntryKind.MEMBERSHIP:
            self._set_membership(Membership.decode(data), entry.index)
        self.replication.broadcast(command=kind == EntryKind.NORMAL)
        return entry.index, entry.term

    # --- terms (§5.1) -------------------------------------------------------------------
    def _accept_higher_term(self, message: AnyMessage) -> bool:
        """A message from a higher term; False when it must be ignored."""
        if isinstance(message, RequestVote):
            # Thesis §4.2.3: while we hear from a live leader, ignore vote requests, so a
            # removed or partitioned server cannot depose it. TimeoutNow campaigns pass.
            in_lease = self.config.check_quorum and (
                self.role is _LEADER or self.lease_promise_ticks > 0
            )
            if in_lease and not message.transfer:
                return False
            if message.pre_vote:
                return True  # a pre-vote never changes our term
        if isinstance(message, RequestVoteResponse) and message.pre_vote and message.granted:
            return True  # a granted pre-vote carries the future term, not a real one
        leader = (
            message.sender
            if isinstance(message, AppendEntries | InstallSnapshot | TimeoutNow)
            else None
        )
        self.events.append(f"term {self.term} -> {message.term} (from node {message.sender})")
        self.become_follower(message.term, leader)
        return True

    def _reject_stale(self, message: AnyMessage) -> None:
        """§5.1: a request from an older term is rejected with our term, which tells a stale
        leader or candidate to step down. Stale responses are dropped."""
        if isinstance(message, AppendEntries | InstallSnapshot):
            self.messages_now.append(
                AppendEntriesResponse(
                    to=message.sender,
                    term=self.term,
                    from_id=self.id,
                    success=False,
                    match_index=0,
                )
            )
        elif isinstance(message, RequestVote):
            self.messages_now.append(
                RequestVoteResponse(
                    to=message.candidate_id,
                    term=self.term,
                    from_id=self.id,
                    granted=False,
                    pre_vote=message.pre_vote,
                )
            )

    # --- elections (§5.2, §5.4.1) ---------------------------------------------------------
    def _handle_request_vote(self, message: RequestVote) -> None:
        # A node that holds no configuration yet (one joining, perhaps under the id of a
        # removed member whose disk is gone) votes for nobody: it cannot know which entries
        # were committed, and a stale candidate that still counts that id as a voter would
        # win with its empty log's vote (found by the whole-node simulator, seed 57). Once a
        # leader has sent it a configuration, its log holds everything committed before it.
        can_vote = bool(self.membership.members) and (
            self.voted_for == message.candidate_id
            or (self.voted_for is None and self.leader_id is None)
            or (message.pre_vote and message.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(message.last_log_index, message.last_log_term)
        if granted and not message.pre_vote:
            self.voted_for = message.candidate_id
            self.election_elapsed = 0
        self.messages_after_persist.append(
            RequestVoteResponse(
                to=message.candidate_id,
                term=message.term if granted else self.term,
                from_id=self.id,
                granted=granted,
                pre_vote=message.pre_vote,
            )
        )

    def _handle_vote_response(self, message: RequestVoteResponse) -> None:
        expecting_pre_vote = self.role is _PRE_CANDIDATE
        if self.role not in (_PRE_CANDIDATE, _CANDIDATE):
            return
        if message.pre_vote != expecting_pre_vote:
            return
        if message.from_id not in self.votes:
            self.votes[message.from_id] = message.granted
            self._tally_votes()


def describe_membership(membership: Membership) -> str:
    text = f"voters={sorted(membership.voters)}"
    if membership.voters_outgoing:
        text += f" outgoing={sorted(membership.voters_outgoing)}"
    if membership.learners:
        text += f" learners={sorted(membership.learners)}"
    return text
