"""The messages nodes exchange (Raft paper Figure 2), and re-exported from `entries.py`, the
log entries, hard state and bounds they carry.

Field names follow the seed's wire schema (SPEC §4). Every message names its destination
(`to`) and its sender (`leader_id`, `candidate_id` or `from_id`), so a message is
self-describing in a trace and a driver can route it without an envelope.

Native classes, compiled with mypyc (setup.py): the core reads a message's fields at every
step, and a compiled read of a native field is a load, where a msgspec Struct's is a generic
attribute lookup (the simulator ran about 11 % fewer instructions per seed once messages
left msgspec). Their wire form, with the bounds a peer's numbers are checked against, is in
`wire.py`; `codec.py` converts. A message is never changed once built (the network and a
duplicated delivery share one object): build a new one (`replace`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from raftkv.core.entries import (
    INDEX_LIMIT as INDEX_LIMIT,
)
from raftkv.core.entries import (
    NODE_ID_LIMIT as NODE_ID_LIMIT,
)
from raftkv.core.entries import (
    SNAPSHOT_OFFSET_LIMIT as SNAPSHOT_OFFSET_LIMIT,
)
from raftkv.core.entries import (
    TERM_LIMIT as TERM_LIMIT,
)
from raftkv.core.entries import (
    Entry as Entry,
)
from raftkv.core.entries import (
    EntryKind as EntryKind,
)
from raftkv.core.entries import (
    HardState as HardState,
)

# "status": any node (not only the leader) answers with its status for the dashboard
# (server/dashboard.py), as JSON in the reply's `payload`.
ForwardKind = Literal["propose", "read_index", "lease_read", "add", "remove", "transfer", "status"]


class Message:
    """Base of every message between nodes; `to` is the destination node id.

    Equality, hashing and repr compare and show the fields named in `FIELDS` (in wire
    order, as a msgspec Struct did); `sender` is the sending node's id."""

    FIELDS: ClassVar[tuple[str, ...]] = ("to", "term")

    def __init__(self, to: int, term: int) -> None:
        self.to = to
        self.term = term

    @property
    def sender(self) -> int:
        raise NotImplementedError  # every message type names its sender

    def values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.FIELDS])

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Message)
            and (self.values() == other.values())
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({shown})"


def replace(message: Message, **changes: Any) -> Any:
    """A copy of `message` with some fields changed (tests build hostile variants so)."""
    fields = dict(zip(message.FIELDS, message.values(), strict=True))
    unknown = set(changes) - set(fields)
    if unknown:
        raise TypeError(f"{type(message).__name__} has no field {sorted(unknown)}")
    fields.update(changes)
    return type(message)(**fields)


class AppendEntries(Message):
    """§5.3: replicate entries, and with none, the heartbeat (§5.2).

    `read_context` is non-zero when the message also confirms leadership for ReadIndex
    (thesis §6.4); the follower echoes it back.
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "leader_id",
        "prev_log_index",
        "prev_log_term",
        "entries",
        "leader_commit",
        "read_context",
    )

    def __init__(
        self,
        to: int,
        term: int,
        leader_id: int,
        prev_log_index: int,
        prev_log_term: int,
        entries: list[Entry],
        leader_commit: int,
        read_context: int = 0,
    ) -> None:
        super().__init__(to, term)
        self.leader_id = leader_id
        self.prev_log_index = prev_log_index
        self.prev_log_term = prev_log_term
        self.entries = entries
        self.leader_commit = leader_commit
        self.read_context = read_context

    @property
    def sender(self) -> int:
        return self.leader_id


class AppendEntriesResponse(Message):
    """Answer to AppendEntries.

    On success `match_index` is the last index the follower now holds in agreement with the
    leader. On rejection `match_index` echoes the rejected `prev_log_index`, and
    `conflict_index` / `conflict_term` give the hint for fast backtracking (§5.3, final
    paragraphs): the term of the follower's entry at `prev_log_index` (0 when its log is
    shorter) and the first index the follower holds of that term (or its last index + 1).
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "from_id",
        "success",
        "match_index",
        "conflict_index",
        "conflict_term",
        "read_context",
    )

    def __init__(
        self,
        to: int,
        term: int,
        from_id: int,
        success: bool,
        match_index: int,
        conflict_index: int = 0,
        conflict_term: int = 0,
        read_context: int = 0,
    ) -> None:
        super().__init__(to, term)
        self.from_id = from_id
        self.success = success
        self.match_index = match_index
        self.conflict_index = conflict_index
        self.conflict_term = conflict_term
        self.read_context = read_context

    @property
    def sender(self) -> int:
        return self.from_id


class RequestVote(Message):
    """§5.2. With `pre_vote`, a trial run that changes no one's term (thesis §9.6).

    `transfer` marks a campaign started by TimeoutNow (thesis §3.10): voters grant it even
    while they believe a leader is alive.
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "candidate_id",
        "last_log_index",
        "last_log_term",
        "pre_vote",
        "transfer",
    )

    def __init__(
        self,
        to: int,
        term: int,
        candidate_id: int,
        last_log_index: int,
        last_log_term: int,
        pre_vote: bool = False,
        transfer: bool = False,
    ) -> None:
        super().__init__(to, term)
        self.candidate_id = candidate_id
        self.last_log_index = last_log_index
        self.last_log_term = last_log_term
        self.pre_vote = pre_vote
        self.transfer = transfer

    @property
    def sender(self) -> int:
        return self.candidate_id


class RequestVoteResponse(Message):
    FIELDS: ClassVar[tuple[str, ...]] = (*Message.FIELDS, "from_id", "granted", "pre_vote")

    def __init__(
        self, to: int, term: int, from_id: int, granted: bool, pre_vote: bool = False
    ) -> None:
        super().__init__(to, term)
        self.from_id = from_id
        self.granted = granted
        self.pre_vote = pre_vote

    @property
    def sender(self) -> int:
        return self.from_id


class InstallSnapshot(Message):
    """§7: send a snapshot to a follower whose next entry was compacted away.

    Sent in chunks: `offset` is where `data` starts in the snapshot and `done` marks the
    last chunk. `membership` is the encoded configuration as of `last_included_index`.
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "leader_id",
        "last_included_index",
        "last_included_term",
        "offset",
        "data",
        "done",
        "membership",
    )

    def __init__(
        self,
        to: int,
        term: int,
        leader_id: int,
        last_included_index: int,
        last_included_term: int,
        offset: int,
        data: bytes,
        done: bool,
        membership: bytes = b"",
    ) -> None:
        super().__init__(to, term)
        self.leader_id = leader_id
        self.last_included_index = last_included_index
        self.last_included_term = last_included_term
        self.offset = offset
        self.data = data
        self.done = done
        self.membership = membership

    @property
    def sender(self) -> int:
        return self.leader_id


class InstallSnapshotResponse(Message):
    """Acknowledges a chunk: `next_offset` is the byte the follower wants next.

    When `done` the follower has installed the snapshot and `last_included_index` is its match.
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "from_id",
        "last_included_index",
        "next_offset",
        "done",
    )

    def __init__(
        self,
        to: int,
        term: int,
        from_id: int,
        last_included_index: int,
        next_offset: int,
        done: bool = False,
    ) -> None:
        super().__init__(to, term)
        self.from_id = from_id
        self.last_included_index = last_included_index
        self.next_offset = next_offset
        self.done = done

    @property
    def sender(self) -> int:
        return self.from_id


class TimeoutNow(Message):
    """Thesis §3.10: the leader asks a caught-up follower to start an election at once."""

    FIELDS: ClassVar[tuple[str, ...]] = (*Message.FIELDS, "leader_id")

    def __init__(self, to: int, term: int, leader_id: int) -> None:
        super().__init__(to, term)
        self.leader_id = leader_id

    @property
    def sender(self) -> int:
        return self.leader_id


# --- not Raft: what the embedding API passes to the leader on the same links -------------


class Forward(Message):
    """A follower asks the leader to do something for one of its callers (server/
    forwarding.py): propose `payload`, confirm a read index, change membership. `term` is
    always 0: it speaks for no term, so the core drops one it is ever handed."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "from_id",
        "request_id",
        "kind",
        "payload",
    )

    def __init__(
        self,
        to: int,
        term: int,
        from_id: int,
        request_id: int,
        kind: ForwardKind,
        payload: bytes = b"",
    ) -> None:
        super().__init__(to, term)
        self.from_id = from_id
        self.request_id = request_id
        self.kind: ForwardKind = kind
        self.payload = payload

    @property
    def sender(self) -> int:
        return self.from_id


class ForwardReply(Message):
    """The leader's answer to a `Forward`: `error` empty on success (then `index`/`term`:
    where the proposal was appended, or the read index), else an error code (SPEC §3's
    codes) with `message` and the leader it knows (`leader_id`, 0: none). `payload` is a
    `status` request's answer (JSON), empty for every other kind."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        *Message.FIELDS,
        "from_id",
        "request_id",
        "error",
        "message",
        "leader_id",
        "index",
        "entry_term",
        "payload",
    )

    def __init__(
        self,
        to: int,
        term: int,
        from_id: int,
        request_id: int,
        error: str = "",
        message: str = "",
        leader_id: int = 0,
        index: int = 0,
        entry_term: int = 0,
        payload: bytes = b"",
    ) -> None:
        super().__init__(to, term)
        self.from_id = from_id
        self.request_id = request_id
        self.error = error
        self.message = message
        self.leader_id = leader_id
        self.index = index
        self.entry_term = entry_term
        self.payload = payload

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
