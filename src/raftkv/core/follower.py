"""The follower's half of Raft: AppendEntries (§5.3) and InstallSnapshot (§7).

The node has already checked the term and recognised the sender as leader of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from raftkv.core.membership import Membership
from raftkv.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
)
from raftkv.core.ready import SnapshotMeta
from raftkv.errors import SafetyViolation

if TYPE_CHECKING:
    from raftkv.core.node import RaftNode

_MEMBERSHIP: Final = EntryKind.MEMBERSHIP  # a module constant: no class lookup per entry


class FollowerSide:
    def __init__(self, node: RaftNode) -> None:
        self.node = node
        # The snapshot being received, chunk by chunk: (index, term, bytes so far).
        self.incoming_snapshot: tuple[int, int, bytearray] | None = None

    def handle_append_entries(self, message: AppendEntries) -> None:
        node = self.node
        log = node.log
        prev_index, prev_term = message.prev_log_index, message.prev_log_term
        entries: Sequence[Entry] = message.entries
        expected = prev_index + 1
        for entry in entries:
            if entry.index != expected:
                node.events.append(
                    f"refused AppendEntries from node {message.leader_id}: entry index "
                    f"{entry.index} does not follow prev_log_index {prev_index}"
                )
                return
            expected += 1
        committed = log.committed
        if prev_index < committed:
            # Our committed prefix matches every legitimate leader's log (§5.4, Leader
            # Completeness); skip the part of the message it covers, after checking that
            # it does match: a difference there is a broken safety property, never hidden.
            self._check_committed_prefix(message, committed)
            entries = entries[committed - prev_index :]
            prev_index, prev_term = committed, log.term(committed) or 0
        # log.term(prev_index), inlined: this runs for every AppendEntries.
        snapshot_index = log.snapshot_index
        if prev_index > snapshot_index:
            offset = prev_index - snapshot_index - 1
            held = log.entries[offset].term if offset < len(log.entries) else None
        else:
            held = log.snapshot_term if prev_index == snapshot_index else None
        if held != prev_term:
            hint_index, hint_term = log.find_conflict_by_term(prev_index, prev_term)
            self._respond_append(message, False, prev_index, hint_index, hint_term)
            return
        if entries:
            changed = log.merge(entries)
            if changed is not None and (
                changed <= node.membership_index
                or any(entry.kind == _MEMBERSHIP for entry in entries)
            ):
                node.reload_membership()
            last_new = prev_index + len(entries)
        else:
            last_new = prev_index
        commit = message.leader_commit
        if last_new < commit:
            commit = last_new
        if commit > log.committed:
            log.commit_to(commit)
        # _respond_append(message, True, last_new), inlined.
        node.messages_after_persist.append(
            AppendEntriesResponse(
                to=message.leader_id,
                term=node.term,
                from_id=node.id,
                success=True,
                match_index=last_new,
                conflict_index=0,
                conflict_term=0,
                read_context=message.read_context,
            )
        )

    def _check_committed_prefix(self, message: AppendEntries, committed: int) -> None:
        log = self.node.log
        claims = [(message.prev_log_index, message.prev_log_term)]
        claims += [(e.index, e.term) for e in message.entries if e.index <= committed]
        for index, term in claims:
            held = log.term(index)
            if held is not None and held != term:
                raise SafetyViolation(
                    f"node {message.leader_id} (term {message.term}) sent term {term} at "
                    f"index {index}, where this node committed term {held} "
                    f"(commit index {committed})"
                )

    def _respond_append(
        self,
        message: AppendEntries,
        success: bool,
        match_index: int,
        hint_index: int = 0,
        hint_term: int = 0,
    ) -> None:
        node = self.node
        node.messages_after_persist.append(
            AppendEntriesResponse(
                to=message.leader_id,
                term=node.term,
                from_id=node.id,
                success=success,
                match_index=match_index,
                conflict_index=hint_index,
                conflict_term=hint_term,
                read_context=message.read_context,
            )
        )

    def handle_install_snapshot(self, message: InstallSnapshot) -> None:
        node = self.node
        index, term = message.last_included_index, message.last_included_term
        if index <= node.log.committed:
            self.incoming_snapshot = None
            self._respond_snapshot(message, node.log.committed, 0, done=True)
            return
        incoming = self.incoming_snapshot
        if incoming is None or incoming[:2] != (index, term):
            if message.offset != 0:
                self._respond_snapshot(message, index, 0)
                return
            incoming = self.incoming_snapshot = (index, term, bytearray())
        buffer = incoming[2]
        if message.offset != len(buffer):
            self._respond_snapshot(message, index, len(buffer))
            return
        buffer += message.data
        if not message.done:
            self._respond_snapshot(message, index, len(buffer))
            return
        self.incoming_snapshot = None
        if node.log.matches(index, term):
            # §7: our log already holds the snapshot's last entry; keep what follows it.
            node.log.commit_to(index)
        else:
            meta = SnapshotMeta(index, term, Membership.decode(message.membership))
            data = bytes(buffer)
            node.log.restore(index, term)
            node.snapshot = node.received_snapshot = (meta, data)
            node.reload_membership()
            node.events.append(f"installed snapshot at index {index} term {term}")
        self._respond_snapshot(message, index, len(buffer), done=True)

    def _respond_snapshot(
        self, message: InstallSnapshot, index: int, next_offset: int, done: bool = False
    ) -> None:
        node = self.node
        node.messages_after_persist.append(
            InstallSnapshotResponse(
                to=message.leader_id,
                term=node.term,
                from_id=node.id,
                last_included_index=index,
                next_offset=next_offset,
                done=done,
            )
        )
