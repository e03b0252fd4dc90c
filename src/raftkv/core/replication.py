"""The leader's half of Raft: replication (§5.3), commitment (§5.4.2), heartbeats,
check-quorum, InstallSnapshot (§7), leadership transfer (thesis §3.10) and ReadIndex
(thesis §6.4).

Sends are lazy: proposals and acknowledgements only mark followers as needing an
AppendEntries, and `flush()` (called by `ready()`) sends one batch per follower. Under load,
everything proposed between two Ready batches travels in one message.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from raftkv.core.log import entry_size
from raftkv.core.membership import Membership
from raftkv.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
)
from raftkv.core.progress import Progress, ProgressState
from raftkv.core.quorum import joint_committed_index, quorum_active
from raftkv.core.ready import PeerStatus, ReadState
from raftkv.errors import InvariantViolation, ProposalDropped

if TYPE_CHECKING:
    from raftkv.core.node import RaftNode

# Module constants: an enum member looked up on its class costs a class lookup on every use.
_PROBE: Final = ProgressState.PROBE
_REPLICATE: Final = ProgressState.REPLICATE
_SNAPSHOT: Final = ProgressState.SNAPSHOT


class _ReadRound:
    """One heartbeat round confirming leadership for every read queued before it."""

    __slots__ = ("acks", "commit_index", "request_ids")

    def __init__(self, commit_index: int, request_ids: list[int], leader_id: int) -> None:
        self.commit_index = commit_index
        self.request_ids = request_ids
        self.acks = {leader_id}


class Replication:
    def __init__(self, node: RaftNode) -> None:
        self.node = node
        self.progress: dict[int, Progress] = {}
        self._dirty: set[int] = set()
        # The peers `sync_progress` last tracked as members: one that is a member again
        # after it was not (removed, then added back) is a new incarnation (`sync_progress`).
        self._tracked_members: frozenset[int] = frozenset()
        # A commit the followers have not been told of (`_commit_owed`) goes with the next
        # AppendEntries that carries entries, or at the next tick, or once it reaches the
        # index a follower waits for (`announce_commit`, `_announce_through`): then it is
        # `_commit_due`. See RaftConfig.defer_commit_notices.
        self._commit_changed = False
        self._commit_owed = False
        self._commit_due = False
        self._announce_through = 0
        self._uncommitted_bytes = 0
        # Every AppendEntries carries the current round number (`read_context`) and every
        # answer echoes it, so the leader knows when the message a peer answered was sent:
        # the basis of ReadIndex confirmation and of the lease (thesis §6.4).
        self._ticks = 0
        self._round = 0
        self._round_started: dict[int, int] = {}
        self._last_heard: dict[int, int] = {}
        # ReadIndex: reads waiting for this term's first commit, then rounds in flight.
        self._reads_waiting_for_commit: list[int] = []
        self._reads_unsent: list[int] = []
        self._read_rounds: deque[tuple[int, _ReadRound]] = deque()
        self._snapshot_stalled: dict[int, int] = {}
        # Ticks since the current leadership transfer began (it aborts after an election
        # timeout); apart from `election_elapsed`, which paces check-quorum.
        self._transfer_elapsed = 0
        # The tick at which each peer last answered anything (for `peer_status`).
        self._last_answer: dict[int, int] = {}
        # Once TimeoutNow is sent, the target may win votes that ignore the followers'
        # lease promise: the lease is gone for the rest of this term.
        self._lease_forfeited = False
        # What flush() and _maybe_commit() read of the configuration on every Ready and
        # acknowledgement, derived once per Membership object (`_configuration`): its
        # members (`Membership.members` builds a new set per call), and the voters of a plain
        # (not joint) configuration as a list, empty when joint (a Struct field read is a
        # generic lookup, compiled).
        self._derived_of: Membership | None = None
        self._members_cache: frozenset[int] = frozenset()
        self._plain_voters: list[int] = []
        # Quorum-first replication (RaftConfig.quorum_first): the proposals since the last
        # flush (and whether all were commands), the followers the last lone command went
        # to (chosen again while they stay idle and caught up), and the followers left out
        # since the last tick, which the next tick sends what they lack.
        self._proposals_unsent = 0
        self._only_commands = True
        self._fast: list[int] = []
        self._deferred: set[int] = set()
        # The commit index each was told by the tick that caught it up: the Ready after
        # that tick tells the others of a commit owed, and it need not be told twice.
        self._caught_up_told: dict[int, int] = {}

    # --- lifecycle ----------------------------------------------------------------------
    def become_leader(self) -> None:
        self._lease_forfeited = False
        self.progress = {}
        self._tracked_members = frozenset()
        self._uncommitted_bytes = 0
        self._forget_deferrals()
        self._last_heard = {}
        self._last_answer = {}
        self._start_round()
        self.sync_progress()
        for progress in self.progress.values():
            progress.recent_active = True

    def clear(self) -> None:
        self.progress = {}
        self._tracked_members = frozenset()
        self._dirty.clear()
        self._commit_changed = False
        self._commit_owed = False
        self._commit_due = False
        self._announce_through = 0
        self._reads_waiting_for_commit.clear()
        self._reads_unsent.clear()
        self._read_rounds.clear()
        self._forget_deferrals()

    def _forget_deferrals(self) -> None:
        self._proposals_unsent = 0
        self._only_commands = True
        self._fast = []
        self._deferred = set()
        self._caught_up_told = {}

    def sync_progress(self) -> None:
        """Track the current members (other than ourselves) while leading.

        A peer removed by a configuration that is not yet committed keeps being replicated
        to, so that it learns of its removal; it is dropped after a last message carrying
        the commit (see `_say_farewell`). It never counts toward any quorum meanwhile.

        A peer that is a member again after it was not (removed, then added back under the
        same id) gets a new progress, even if the old one still waits for its farewell (a
        removed node that stopped before acknowledging its removal never gets one): the new
        incarnation's log may be empty, and the old `match` would keep every probe above it.
        """
        node = self.node
        if node.role != "leader":
            return
        members = node.membership.members - {node.id}
        removal_committed = node.membership_index <= node.log.committed
        for peer in list(self.progress):
            if peer not in members and removal_committed:
                del self.progress[peer]
        rejoined = members - self._tracked_members
        self._tracked_members = members
        for peer in members:
            if peer not in self.progress or peer in rejoined:
                progress = Progress(node.log.last_index + 1, node.config.inflight_messages_max)
                progress.recent_active = True
                self.progress[peer] = progress
                self._dirty.add(peer)

    def peer_status(self) -> dict[int, PeerStatus]:
        horizon = self._ticks - self.node.config.election_timeout_ticks
        return {
            peer: PeerStatus(
                match=progress.match,
                next=progress.next,
                state=progress.state.value,
                active=self._last_answer.get(peer, horizon - 1) >= horizon,
            )
            for peer, progress in self.progress.items()
        }

    # --- proposals ----------------------------------------------------------------------
    def admit(self, size: int) -> None:
        """Flow control for proposals: refuse once too much is appended but uncommitted."""
        # An empty window admits any one entry (etcd's rule): else an entry larger than
        # the window could never be proposed at all.
        uncommitted = self._uncommitted_bytes
        if uncommitted and uncommitted + size > self.node.config.uncommitted_bytes_max:
            raise ProposalDropped("too many uncommitted bytes; try again")
        self._uncommitted_bytes += size

    def broadcast(self, command: bool = False) -> None:
        self._dirty.update(self.progress)
        self._proposals_unsent += 1
        if not command:
            self._only_commands = False

    def has_pending_sends(self) -> bool:
        return bool(
            self._dirty or self._commit_changed or self._commit_due or self._read_round_due()
        )

    def announce_commit(self, index: int) -> bool:
        """Tell the followers the commit index as soon as it reaches `index`, whether or not
        entries go with it: True if that is now, in the next Ready. Followers quorum-first
        replication left out get what they lack now too: the one waiting may be among them."""
        if index <= self.node.log.committed:
            caught_up = bool(self._deferred)
            if caught_up:
                self._send_deferred()
            if self._commit_owed:
                self._commit_due = True
                return True
            return caught_up
        elif index > self._announce_through:
            self._announce_through = index
        return False

    def _read_round_due(self) -> bool:
        if not self._reads_unsent:
            return False
        limit = self.node.config.read_rounds_inflight_max
        return limit == 0 or len(self._read_rounds) < limit

    # --- time ---------------------------------------------------------------------------
    def tick(self) -> None:
        node = self.node
        config = node.config
        self._ticks += 1
        node.heartbeat_elapsed += 1
        node.election_elapsed += 1
        if node.election_elapsed >= config.election_timeout_ticks:
            node.election_elapsed = 0
            if config.check_quorum:
                active = {node.id} | {p for p, pr in self.progress.items() if pr.recent_active}
                if not quorum_active(node.membership, active):
                    node.events.append(f"stepping down at term {node.term}: quorum not heard")
                    node.become_follower(node.term, None)
                    return
                for progress in self.progress.values():
                    progress.recent_active = False
        if node.transfer_target is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= config.election_timeout_ticks:
                node.events.append(f"leadership transfer to {node.transfer_target} aborted")
                node.transfer_target = None
        if self._deferred:
            self._send_deferred()
        if node.heartbeat_elapsed >= config.heartbeat_ticks:
            node.heartbeat_elapsed = 0
            self._start_round()
            self._heartbeat()
            self._commit_owed = False  # every peer's heartbeat carries the commit index
        elif self._commit_owed:
            self._commit_due = True

    def _start_round(self) -> None:
        self._round += 1
        started = self._round_started
        started[self._round] = self._ticks
        # Answers to rounds older than an election timeout are useless for the lease. Rounds
        # are recorded in the order they start and `_ticks` never goes back, so the old ones
        # are a prefix.
        horizon = self._ticks - 2 * self.node.config.election_timeout_ticks
        old = []
        for number, tick in started.items():
            if tick >= horizon:
                break
            old.append(number)
        for number in old:
            del started[number]

    def _heartbeat(self) -> None:
        node = self.node
        for peer, progress in self.progress.items():
            if progress.state is _PROBE:
                progress.probe_sent = False  # retry a probe that may have been lost
                self._send_append(peer, progress, True)
            elif progress.state is _REPLICATE:
                prev_index = progress.next - 1
                prev_term = node.log.term(prev_index)
                if prev_term is None:
                    progress.become_probe()
                    self._send_append(peer, progress, True)
                else:
                    # Checking the optimistic end of the stream: if messages in flight were
                    # lost, the follower rejects and we fall back to probing.
                    self._send_empty_append(peer, prev_index, prev_term)
            else:
                acked = progress.snapshot_acked_offset
                if self._snapshot_stalled.get(peer) == acked:
                    # No progress for a heartbeat: the window may have been lost, or the link
                    # is just slow. Resend from the acknowledged offset with a window of one
                    # chunk, doubling as acknowledgements return (resending the whole window
                    # every heartbeat saturated slow links).
                    progress.snapshot_sent_offset = acked
                    progress.snapshot_window_chunks = 1
                self._snapshot_stalled[peer] = acked
                self._send_snapshot(peer, progress)
                self._send_empty_append(peer, 0, 0)  # keeps the follower's timer quiet

    def _send_empty_append(self, peer: int, prev_index: int, prev_term: int) -> None:
        node = self.node
        node.messages_now.append(
            AppendEntries(
                to=peer,
                term=node.term,
                leader_id=node.id,
                prev_log_index=prev_index,
                prev_log_term=prev_term,
                entries=[],
                leader_commit=node.log.committed,
                read_context=self._round,
            )
        )

    # --- sending ------------------------------------------------------------------------
    def flush(self) -> None:
        """Send what proposals, acknowledgements and commits have made necessary."""
        if self._read_round_due():
            self._start_read_round()
        if self._commit_changed:
            self._commit_changed = False
            self._commit_owed = True
            through = self._announce_through
            if through and self.node.log.committed >= through:
                self._announce_through = 0
                self._commit_due = True
        dirty = self._dirty
        tell_commit = self._commit_owed and (
            bool(dirty) or self._commit_due or not self.node.config.defer_commit_notices
        )
        fast = self._quorum_first() if self._proposals_unsent == 1 else None
        self._proposals_unsent = 0
        self._only_commands = True
        # A follower left out, here only to be told the commit, is told it at the tick with
        # the entries it lacks; unless a follower waits for it (`announce_commit`).
        leave_out = self._deferred if self._deferred and not self._commit_due else None
        self._commit_due = False
        if tell_commit:
            self._commit_owed = False
            told = dirty.union(self.progress)
            if leave_out is not None:
                told.difference_update(leave_out - dirty)
            peers = sorted(told)
        else:
            peers = sorted(dirty) if dirty else []
        for peer in peers:
            progress = self.progress.get(peer)
            if progress is None:
                continue
            if progress.state is _SNAPSHOT:
                self._send_snapshot(peer, progress)
                continue
            if fast is not None and peer not in fast and progress.state is _REPLICATE:
                self._deferred.add(peer)
                continue
            tell = tell_commit and self._caught_up_told.get(peer) != self.node.log.committed
            self._send_appends(peer, progress, tell)
            if self._deferred:
                self._deferred.discard(peer)
        self._dirty.clear()
        if self._caught_up_told:
            self._caught_up_told.clear()
        self._say_farewell()

    def _quorum_first(self) -> set[int] | None:
        """The followers a lone command goes to at once (RaftConfig.quorum_first): as few
        voters as commit it with the leader, each caught up and with nothing in flight, the
        ones chosen last time first; None (send to every follower) when that does not apply:
        a membership change or a no-op among the proposals, a joint configuration, a
        transfer, or a commit some follower waits for (`announce_commit`)."""
        node = self.node
        if not node.config.quorum_first or not self._only_commands or self._commit_due:
            return None
        if node.transfer_target is not None or self._announce_through > node.log.committed:
            return None
        self._members()  # derives `_plain_voters`
        voters = self._plain_voters
        if node.id not in voters:
            return None  # (empty when joint)
        needed = len(voters) // 2  # a majority, less the leader
        if needed == 0 or needed >= len(voters) - 1:
            return None  # nobody left out
        new_index = node.log.last_index
        idle: list[int] = []
        for peer in voters:
            progress = self.progress.get(peer)
            if (
                progress is not None
                and progress.state is _REPLICATE
                and not progress.inflight
                and progress.next == new_index
            ):
                idle.append(peer)
        if len(idle) < needed:
            return None
        chosen = [peer for peer in self._fast if peer in idle]
        chosen.extend(peer for peer in idle if peer not in chosen)
        self._fast = chosen[:needed]
        return set(self._fast)

    def _send_deferred(self) -> None:
        """At a tick, the followers quorum-first replication left out get what they lack
        and the commit index: one batch a tick each, not a message and a sync per write."""
        deferred, self._deferred = sorted(self._deferred), set()
        for peer in deferred:
            progress = self.progress.get(peer)
            if progress is None:
                continue
            self._send_appends(peer, progress, True)
            self._caught_up_told[peer] = self.node.log.committed

    def _say_farewell(self) -> None:
        """Drop peers whose removal is committed, once they hold the configuration entry
        that removed them, with a last message at their match point (which they hold)
        carrying the commit index: so they apply their own removal and can stop."""
        node = self.node
        if node.membership_index > node.log.committed:
            return
        members = self._members()
        if self.progress.keys() <= members:
            return  # nobody to drop (the common case: flush() ends here on every Ready)
        for peer in [peer for peer in self.progress if peer not in members]:
            progress = self.progress[peer]
            if progress.match >= node.membership_index:
                del self.progress[peer]
                # At its match point, which it holds (or, compacted away here, at index 0,
                # which every log shares): never a made-up term at a real index.
                term = node.log.term(progress.match)
                if term is None:
                    self._send_empty_append(peer, 0, 0)
                else:
                    self._send_empty_append(peer, progress.match, term)

    def _members(self) -> frozenset[int]:
        """The current configuration's members (derived once per configuration)."""
        if self.node.membership is not self._derived_of:
            self._derive_configuration()
        return self._members_cache

    def _derive_configuration(self) -> None:
        membership = self.node.membership
        self._derived_of = membership
        self._members_cache = membership.members
        plain = bool(membership.voters) and not membership.voters_outgoing
        self._plain_voters = sorted(membership.voters) if plain else []

    def _send_appends(self, peer: int, progress: Progress, send_if_empty: bool) -> None:
        """Send `peer` what it lacks: while it streams (REPLICATE), as many AppendEntries as
        its window and `message_bytes_max` allow."""
        sent = self._send_append(peer, progress, send_if_empty)
        while sent and progress.state is _REPLICATE:
            sent = self._send_append(peer, progress, False)

    def _send_append(self, peer: int, progress: Progress, send_if_empty: bool) -> bool:
        """Send the next AppendEntries to `peer`; True if it carried entries."""
        node = self.node
        log = node.log
        # progress.is_paused(), inlined: this runs for every peer in every flush.
        state = progress.state
        if state is _PROBE:
            if progress.probe_sent:
                return False
        elif state is not _REPLICATE or len(progress.inflight) >= progress.inflight_max:
            return False
        prev_index = progress.next - 1
        prev_term = log.term(prev_index)
        if prev_term is None:
            self._send_snapshot(peer, progress)
            return False
        last_index = log.snapshot_index + len(log.entries)
        entries = (
            log.slice(progress.next, last_index + 1, node.config.message_bytes_max)
            if progress.next <= last_index
            else []
        )
        if not entries and not send_if_empty:
            return False
        if entries:
            progress.sent_entries(entries[-1].index)
        elif progress.state is _PROBE:
            progress.probe_sent = True
        node.messages_now.append(
            AppendEntries(
                to=peer,
                term=node.term,
                leader_id=node.id,
                prev_log_index=prev_index,
                prev_log_term=prev_term,
                entries=entries,
                leader_commit=log.committed,
                read_context=self._round,
            )
        )
        return bool(entries)

    def _send_snapshot(self, peer: int, progress: Progress) -> None:
        """§7, in chunks with a bounded number unacknowledged.

        A transfer in flight is finished before a newer snapshot is sent: restarting at
        every new snapshot never completes a transfer that takes longer than the interval
        between snapshots. The follower then catches up from the log, or with the newer one.
        """
        node = self.node
        if progress.state is not _SNAPSHOT or progress.snapshot is None:
            if node.snapshot is None:
                raise InvariantViolation("log compacted without a snapshot")
            progress.become_snapshot(node.snapshot, node.config.snapshot_chunks_inflight_max)
            node.events.append(f"sending snapshot at index {node.snapshot[0].index} to node {peer}")
        snapshot = progress.snapshot
        if snapshot is None:
            raise InvariantViolation("snapshot progress without a snapshot")
        meta, data = snapshot
        chunk_size = node.config.snapshot_chunk_bytes
        window_end = progress.snapshot_acked_offset + chunk_size * progress.snapshot_window_chunks
        total = len(data)
        while progress.snapshot_sent_offset < window_end:
            offset = progress.snapshot_sent_offset
            if offset > total or (offset == total and total > 0):
                break
            chunk = data[offset : offset + chunk_size]
            done = offset + len(chunk) >= total
            node.messages_now.append(
                InstallSnapshot(
                    to=peer,
                    term=node.term,
                    leader_id=node.id,
                    last_included_index=meta.index,
                    last_included_term=meta.term,
                    offset=offset,
                    data=chunk,
                    done=done,
                    membership=meta.membership.encode(),
                )
            )
            progress.snapshot_sent_offset = offset + max(len(chunk), 1)
            if done:
                break

    # --- responses ----------------------------------------------------------------------
    def handle_append_response(self, message: AppendEntriesResponse) -> None:
        node = self.node
        peer = message.from_id
        progress = self.progress.get(peer)
        if progress is None:
            return
        if message.match_index > node.log.last_index:
            # We never sent that index: a broken or hostile peer. Believing it would make
            # the next heartbeat look for entries we do not hold.
            self._refuse_claim(peer, "match index", message.match_index)
            return
        progress.recent_active = True
        self._last_answer[peer] = self._ticks
        sent_at = self._round_started.get(message.read_context)
        if sent_at is not None and sent_at > self._last_heard.get(peer, -1):
            self._last_heard[peer] = sent_at
        if self._read_rounds:
            self._acknowledge_read(peer, message.read_context)
        if not message.success:
            next_hint = message.conflict_index
            if message.conflict_term > 0:
                next_hint, _ = node.log.find_conflict_by_term(
                    message.conflict_index, message.conflict_term
                )
            if progress.decrease_to(message.match_index, next_hint):
                if progress.state is _REPLICATE:
                    progress.become_probe()
                self._dirty.add(peer)
            return
        updated = progress.update_match(message.match_index)
        if progress.state is _PROBE and message.match_index == progress.match:
            # The probe found where our logs agree: stream from there on.
            progress.become_replicate()
        if updated:
            self._maybe_commit()
            if peer == node.transfer_target:
                self.advance_transfer()
        elif progress.state is _REPLICATE and progress.inflight:
            # A heartbeat answered at our optimistic end while acknowledgements were lost.
            while progress.inflight and progress.inflight[0] <= message.match_index:
                progress.inflight.popleft()
        # Behind our last index: sent what it lacks. But left out of a lone command since
        # the last tick, it waits for the tick: sent the command now, it would chase each
        # next one a step behind the chosen follower, syncing every write all the same.
        log = node.log
        if progress.match < log.snapshot_index + len(log.entries) and peer not in self._deferred:
            self._dirty.add(peer)

    def _refuse_claim(self, peer: int, what: str, index: int) -> None:
        self.node.events.append(
            f"refused an answer from node {peer}: {what} {index} is past the last index "
            f"{self.node.log.last_index}"
        )

    def handle_snapshot_response(self, message: InstallSnapshotResponse) -> None:
        peer = message.from_id
        progress = self.progress.get(peer)
        if progress is None:
            return
        if message.last_included_index > self.node.log.last_index:
            self._refuse_claim(peer, "snapshot index", message.last_included_index)
            return
        progress.recent_active = True
        self._last_answer[peer] = self._ticks
        if message.done:
            progress.update_match(message.last_included_index)
            if progress.state is _SNAPSHOT:
                progress.become_probe()
            self._maybe_commit()
            self._dirty.add(peer)
            return
        if (
            progress.state is not _SNAPSHOT
            or message.last_included_index != progress.snapshot_index
        ):
            return
        if message.next_offset > progress.snapshot_acked_offset:
            progress.snapshot_acked_offset = message.next_offset
            progress.snapshot_window_chunks = min(
                2 * progress.snapshot_window_chunks, self.node.config.snapshot_chunks_inflight_max
            )
        elif message.next_offset < progress.snapshot_acked_offset:
            # Below what it acknowledged before: the follower lost its partial copy (it
            # restarted). Start again from what it holds.
            progress.snapshot_acked_offset = message.next_offset
            progress.snapshot_window_chunks = 1
            progress.snapshot_sent_offset = message.next_offset
        # An answer below what we sent is usually just the acknowledgement of an earlier
        # chunk of the window, not a loss: rewinding on it sent every chunk twice. Losses
        # are repaired by the stall check at the next heartbeat (see `_heartbeat`).
        progress.snapshot_sent_offset = max(progress.snapshot_sent_offset, message.next_offset)
        self._dirty.add(peer)

    # --- commitment (§5.3, §5.4.2) ------------------------------------------------------
    def on_self_persisted(self) -> None:
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        node = self.node
        log = node.log
        if log.committed >= log.snapshot_index + len(log.entries):
            # Everything is committed (the common case: every leader Ready and every
            # acknowledgement ask): an index beyond the log has no term, so nothing commits.
            return
        membership = node.membership
        if membership is not self._derived_of:
            self._derive_configuration()
        voters = self._plain_voters
        if voters:
            # joint_committed_index for one voter set, without building the match map.
            node_id, stable, progress = node.id, log.stable, self.progress
            indexes = [
                stable
                if voter == node_id
                else (peer.match if (peer := progress.get(voter)) is not None else 0)
                for voter in voters
            ]
            indexes.sort()  # ascending: `sorted(reverse=True)` is a generic call, compiled
            index = indexes[len(indexes) - 1 - len(indexes) // 2]  # the majority's match
        else:
            match = {peer: progress.match for peer, progress in self.progress.items()}
            match[node.id] = log.stable
            index = joint_committed_index(membership, match)
        # Figure 8: only an entry of the leader's own term is committed by counting replicas.
        if index <= log.committed or log.term(index) != node.term:
            return
        newly_committed = log.entries[
            log.committed - log.snapshot_index : index - log.snapshot_index
        ]
        self._uncommitted_bytes = max(
            0, self._uncommitted_bytes - sum(entry_size(entry) for entry in newly_committed)
        )
        log.commit_to(index)
        self._commit_changed = True
        if self._reads_waiting_for_commit and log.term(log.committed) == node.term:
            self._reads_unsent.extend(self._reads_waiting_for_commit)
            self._reads_waiting_for_commit.clear()
        self._after_commit()

    def _after_commit(self) -> None:
        """Membership follow-ups once the configuration entry is committed (§6)."""
        node = self.node
        if node.membership_index > node.log.committed:
            return
        membership = node.membership
        if membership.is_joint:
            # Leave the joint configuration automatically (etcd's auto-leave).
            leave = Membership(
                voters=membership.voters,
                learners=membership.learners,
                addresses=membership.addresses,
            )
            index = node.log.last_index + 1
            node.log.append([Entry(node.term, index, EntryKind.MEMBERSHIP, leave.encode())])
            node._set_membership(leave, index)
            self.broadcast()
        elif not membership.is_voter(node.id):
            node.events.append("removed from the configuration: stepping down")
            node.become_follower(node.term, None)

    # --- leadership transfer (thesis §3.10) ---------------------------------------------
    def start_transfer(self) -> None:
        self._transfer_elapsed = 0
        self.advance_transfer()

    def advance_transfer(self) -> None:
        node = self.node
        target = node.transfer_target
        if target is None:
            return
        progress = self.progress.get(target)
        if progress is None:
            return
        if progress.match == node.log.last_index:
            self._lease_forfeited = True
            node.messages_now.append(TimeoutNow(to=target, term=node.term, leader_id=node.id))
        else:
            self._dirty.add(target)

    # --- reads (thesis §6.4) ------------------------------------------------------------
    def request_read(self, request_id: int) -> None:
        node = self.node
        if node.log.term(node.log.committed) != node.term:
            # Until an entry of this term commits, our commit index may be stale.
            self._reads_waiting_for_commit.append(request_id)
        else:
            self._reads_unsent.append(request_id)

    def _start_read_round(self) -> None:
        node = self.node
        request_ids, self._reads_unsent = self._reads_unsent, []
        read_round = _ReadRound(node.log.committed, request_ids, node.id)
        if quorum_active(node.membership, read_round.acks):
            node.read_states.extend(ReadState(r, read_round.commit_index) for r in request_ids)
            return
        self._start_round()
        self._read_rounds.append((self._round, read_round))
        for peer, progress in self.progress.items():
            if node.membership.is_voter(peer):
                # At the follower's match point, which it holds, so the probe changes nothing.
                prev_index = progress.match
                prev_term = node.log.term(prev_index)
                if prev_term is None:
                    prev_index, prev_term = 0, 0
                self._send_empty_append(peer, prev_index, prev_term)

    def _acknowledge_read(self, peer: int, context: int) -> None:
        node = self.node
        confirmed = 0
        for round_context, read_round in self._read_rounds:
            if round_context <= context:
                read_round.acks.add(peer)
                if quorum_active(node.membership, read_round.acks):
                    confirmed = round_context
        # A confirmed round also confirms every earlier one (leadership held throughout).
        while self._read_rounds and self._read_rounds[0][0] <= confirmed:
            _, read_round = self._read_rounds.popleft()
            node.read_states.extend(
                ReadState(request_id, read_round.commit_index)
                for request_id in read_round.request_ids
            )

    def lease_valid(self) -> bool:
        """Thesis §6.4.1: a quorum heard within the election timeout minus a drift margin
        cannot have elected another leader yet (requires check-quorum)."""
        node = self.node
        config = node.config
        if self._lease_forfeited or not config.check_quorum:
            return False
        if node.log.term(node.log.committed) != node.term:
            return False
        # Measured from when the answered message was *sent*: the follower's timer started
        # no earlier than that. The margin absorbs clock drift between the nodes' tickers.
        lease_ticks = config.election_timeout_ticks - max(1, config.election_timeout_ticks // 5)
        oldest = self._ticks - lease_ticks  # heard after this tick: within the lease
        recent = {peer for peer, sent_at in self._last_heard.items() if sent_at > oldest}
        recent.add(node.id)
        return quorum_active(node.membership, recent)
