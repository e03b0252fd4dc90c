"""What the core hands its driver: the Ready batch and the small records inside it."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from raftkv.core.membership import Membership
from raftkv.core.messages import AnyMessage, Entry, HardState


class SnapshotMeta(msgspec.Struct, frozen=True):
    """Where a snapshot ends and which configuration was in force there (§7)."""

    index: int
    term: int
    membership: Membership


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth logging when it changes; never persisted."""

    role: str
    leader_id: int | None


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """The leader's view of one follower (etcd's `Status().Progress`): how far its log
    matches ours, how replication to it runs, and whether it answered lately (within an
    election timeout)."""

    match: int
    next: int
    state: str
    active: bool


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer (thesis §6.4): the read `request_id` may be served once the state
    machine has applied `index`."""

    request_id: int
    index: int


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver. Carry it out in this order, then `advance(ready)`:

    1. send `messages` (they may leave before the save; see below);
    2. save `snapshot` (and reset the log to it), `entries` (truncating any stored entries at
       or after `entries[0].index` first) and `hard_state`; make them durable when
       `must_sync`;
    3. send `messages_after_persist` (vote grants and append acknowledgements: §5.1 requires
       the vote and the log they promise to be durable first);
    4. restore the state machine from `snapshot` if there is one, then apply
       `committed_entries` in order, then answer `read_states`.

    `messages` holds only leader traffic (AppendEntries, InstallSnapshot, TimeoutNow) whose
    content depends on state made durable by an earlier Ready, so the leader's own disk write
    overlaps with replication (thesis §10.2.1).
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: tuple[SnapshotMeta, bytes] | None = None
    messages: list[AnyMessage] = field(default_factory=list)
    messages_after_persist: list[AnyMessage] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    # Human-readable lines for the node's log: elections, role and membership changes.
    events: list[str] = field(default_factory=list)
    must_sync: bool = False

    def is_empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.entries
            or self.snapshot
            or self.messages
            or self.messages_after_persist
            or self.committed_entries
            or self.read_states
            or self.events
        )
