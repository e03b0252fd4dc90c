"""Log entries, hard state and the messages nodes exchange (Raft paper Figure 2).

Field names follow the seed's wire schema (SPEC §4). Every message names its destination
(`to`) and its sender (`leader_id`, `candidate_id` or `from_id`), so a message is
self-describing in a trace and a driver can route it without an envelope.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec


class EntryKind(IntEnum):
    NORMAL = 0  # a state-machine command from a client
    NOOP = 1  # appended by a new leader to commit entries of earlier terms (§5.4.2)
    MEMBERSHIP = 2  # a membership change; `data` is an encoded Membership


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One log entry. Array-like on the wire: entries dominate frame size. Not tracked by
    the cyclic garbage collector (it holds only ints and bytes): a log of hundreds of
    thousands of entries would otherwise make every full collection a long pause."""

    term: int
    index: int
    kind: int = EntryKind.NORMAL
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, gc=False):
    """What must be durable before the messages that depend on it leave (§5.1, Figure 2)."""

    term: int = 0
    voted_for: int | None = None
    commit: int = 0


class Message(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of every message between nodes; `to` is the destination node id."""

    to: int
    term: int


class AppendEntries(Message, frozen=True, tag="AppendEntries"):
    """§5.3: replicate entries, and with none, the heartbeat (§5.2).

    `read_context` is non-zero when the message also confirms leadership for ReadIndex
    (thesis §6.4); the follower echoes it back.
    """

    leader_id: int
    prev_log_index: int
    prev_log_term: int
    entries: list[Entry]
    leader_commit: int
    read_context: int = 0

    @property
    def sender(self) -> int:
        return self.leader_id


class AppendEntriesResponse(Message, frozen=True, tag="AppendEntriesResponse"):
    """Answer to AppendEntries.

    On success `match_index` is the last index the follower now holds in agreement with the
    leader. On rejection `match_index` echoes the rejected `prev_log_index`, and
    `conflict_index` / `conflict_term` give the hint for fast backtracking (§5.3, final
    paragraphs): the term of the follower's entry at `prev_log_index` (0 when its log is
    shorter) and the first index the follower holds of that term (or its last index + 1).
    """

    from_id: int
    success: bool
    match_index: int
    conflict_index: int = 0
    conflict_term: int = 0
    read_context: int = 0

    @property
    def sender(self) -> int:
        return self.from_id


class RequestVote(Message, frozen=True, tag="RequestVote"):
    """§5.2. With `pre_vote`, a trial run that changes no one's term (thesis §9.6).

    `transfer` marks a campaign started by TimeoutNow (thesis §3.10): voters grant it even
    while they believe a leader is alive.
    """

    candidate_id: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False

    @property
    def sender(self) -> int:
        return self.candidate_id


class RequestVoteResponse(Message, frozen=True, tag="RequestVoteResponse"):
    from_id: int
    granted: bool
    pre_vote: bool = False

    @property
    def sender(self) -> int:
        return self.from_id


class InstallSnapshot(Message, frozen=True, tag="InstallSnapshot"):
    """§7: send a snapshot to a follower whose next entry was compacted away.

    Sent in chunks: `offset` is where `data` starts in the snapshot and `done` marks the
    last chunk. `membership` is the encoded configuration as of `last_included_index`.
    """

    leader_id: int
    last_included_index: int
    last_included_term: int
    offset: int
    data: bytes
    done: bool
    membership: bytes = b""

    @property
    def sender(self) -> int:
        return self.leader_id


class InstallSnapshotResponse(Message, frozen=True, tag="InstallSnapshotResponse"):
    """Acknowledges a chunk: `next_offset` is the byte the follower wants next.

    When `done` the follower has installed the snapshot and `last_included_index` is its match.
    """

    from_id: int
    last_included_index: int
    next_offset: int
    done: bool = False

    @property
    def sender(self) -> int:
        return self.from_id


class TimeoutNow(Message, frozen=True, tag="TimeoutNow"):
    """Thesis §3.10: the leader asks a caught-up follower to start an election at once."""

    leader_id: int

    @property
    def sender(self) -> int:
        return self.leader_id


AnyMessage = (
    AppendEntries
    | AppendEntriesResponse
    | RequestVote
    | RequestVoteResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)
