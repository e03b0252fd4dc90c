"""Log entries, hard state and the messages nodes exchange (Raft paper Figure 2).

Field names follow the seed's wire schema (SPEC §4). Every message names its destination
(`to`) and its sender (`leader_id`, `candidate_id` or `from_id`), so a message is
self-describing in a trace and a driver can route it without an envelope.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal

import msgspec


class EntryKind(IntEnum):
    NORMAL = 0  # a state-machine command from a client
    NOOP = 1  # appended by a new leader to commit entries of earlier terms (§5.4.2)
    MEMBERSHIP = 2  # a membership change; `data` is an encoded Membership


# --- bounds on every integer a peer sends ----------------------------------------------------
# Checked when a frame is decoded (msgspec enforces them; building a message in code does
# not), so a peer cannot hand the core a number that storage cannot hold. The WAL stores
# terms and indexes as signed 64-bit fields (storage/wal_records.py); a term of 2**63 - 1
# was accepted once, and the next election's term + 1 no longer fitted, stopping every node
# with the term already on disk. Keeping terms and indexes below 2**62 leaves a margin no
# cluster will ever use up, and the core refuses to campaign past it (node.py).
TERM_LIMIT = 1 << 62
INDEX_LIMIT = 1 << 62
# Node ids are positive; 2**31 keeps them within a signed 32-bit field anywhere.
NODE_ID_LIMIT = 1 << 31
# A byte offset into a snapshot: 256 TiB is beyond any snapshot, well within 64 bits.
SNAPSHOT_OFFSET_LIMIT = 1 << 48

Term = Annotated[int, msgspec.Meta(ge=0, lt=TERM_LIMIT)]
Index = Annotated[int, msgspec.Meta(ge=0, lt=INDEX_LIMIT)]
NodeId = Annotated[int, msgspec.Meta(ge=1, lt=NODE_ID_LIMIT)]
SnapshotOffset = Annotated[int, msgspec.Meta(ge=0, lt=SNAPSHOT_OFFSET_LIMIT)]
# Heartbeat round numbers count up from 1 for as long as a node leads.
RoundNumber = Annotated[int, msgspec.Meta(ge=0, lt=1 << 62)]
KindNumber = Annotated[int, msgspec.Meta(ge=0, le=int(max(EntryKind)))]


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One log entry. Array-like on the wire: entries dominate frame size. Not tracked by
    the cyclic garbage collector (it holds only ints and bytes): a log of hundreds of
    thousands of entries would otherwise make every full collection a long pause."""

    term: Term
    index: Index
    kind: KindNumber = EntryKind.NORMAL
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, gc=False):
    """What must be durable before the messages that depend on it leave (§5.1, Figure 2)."""

    term: Term = 0
    voted_for: NodeId | None = None
    commit: Index = 0


class Message(msgspec.Struct, frozen=True, tag_field="type", gc=False):
    """Base of every message between nodes; `to` is the destination node id.

    Not tracked by the garbage collector (gc=False, inherited): a message holds numbers,
    bytes and lists of untracked entries, never a reference back to itself, so it can never
    be part of a cycle, and thousands are made per second (fewer collections)."""

    to: NodeId
    term: Term


class AppendEntries(Message, frozen=True, tag="AppendEntries"):
    """§5.3: replicate entries, and with none, the heartbeat (§5.2).

    `read_context` is non-zero when the message also confirms leadership for ReadIndex
    (thesis §6.4); the follower echoes it back.
    """

    leader_id: NodeId
    prev_log_index: Index
    prev_log_term: Term
    entries: list[Entry]
    leader_commit: Index
    read_context: RoundNumber = 0

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

    from_id: NodeId
    success: bool
    match_index: Index
    conflict_index: Index = 0
    conflict_term: Term = 0
    read_context: RoundNumber = 0

    @property
    def sender(self) -> int:
        return self.from_id


class RequestVote(Message, frozen=True, tag="RequestVote"):
    """§5.2. With `pre_vote`, a trial run that changes no one's term (thesis §9.6).

    `transfer` marks a campaign started by TimeoutNow (thesis §3.10): voters grant it even
    while they believe a leader is alive.
    """

    candidate_id: NodeId
    last_log_index: Index
    last_log_term: Term
    pre_vote: bool = False
    transfer: bool = False

    @property
    def sender(self) -> int:
        return self.candidate_id


class RequestVoteResponse(Message, frozen=True, tag="RequestVoteResponse"):
    from_id: NodeId
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

    leader_id: NodeId
    last_included_index: Index
    last_included_term: Term
    offset: SnapshotOffset
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

    from_id: NodeId
    last_included_index: Index
    next_offset: SnapshotOffset
    done: bool = False

    @property
    def sender(self) -> int:
        return self.from_id


class TimeoutNow(Message, frozen=True, tag="TimeoutNow"):
    """Thesis §3.10: the leader asks a caught-up follower to start an election at once."""

    leader_id: NodeId

    @property
    def sender(self) -> int:
        return self.leader_id


# --- not Raft: what the embedding API passes to the leader on the same links -------------
RequestId = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
# "status": any node (not only the leader) answers with its status for the dashboard
# (server/dashboard.py), as JSON in the reply's `payload`.
ForwardKind = Literal["propose", "read_index", "lease_read", "add", "remove", "transfer", "status"]
# Error codes and messages are short; a longer one from a peer is a malformed frame.
ShortText = Annotated[str, msgspec.Meta(max_length=1024)]


class Forward(Message, frozen=True, tag="Forward"):
    """A follower asks the leader to do something for one of its callers (server/
    forwarding.py): propose `payload`, confirm a read index, change membership. `term` is
    always 0: it speaks for no term, so the core drops one it is ever handed."""

    from_id: NodeId
    request_id: RequestId
    kind: ForwardKind
    payload: bytes = b""

    @property
    def sender(self) -> int:
        return self.from_id


class ForwardReply(Message, frozen=True, tag="ForwardReply"):
    """The leader's answer to a `Forward`: `error` empty on success (then `index`/`term`:
    where the proposal was appended, or the read index), else an error code (SPEC §3's
    codes) with `message` and the leader it knows (`leader_id`, 0: none)."""

    from_id: NodeId
    request_id: RequestId
    error: ShortText = ""
    message: ShortText = ""
    leader_id: Annotated[int, msgspec.Meta(ge=0, lt=NODE_ID_LIMIT)] = 0
    index: Index = 0
    entry_term: Term = 0
    # A `status` request's answer (JSON); empty for every other kind. Last and defaulted:
    # a node without it ignores the field, and one with it reads an older reply as empty.
    payload: bytes = b""

    @property
    def sender(self) -> int:
        return self.from_id


AnyMessage = (
    AppendEntries
    | AppendEntriesResponse
    | RequestVote
    | RequestVoteResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | Forward
    | ForwardReply
)
