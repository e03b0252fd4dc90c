"""What the core hands its driver: the Ready batch (the small records inside it are in
ready_records.py).

mypyc compiles this module (setup.py), so a Ready is a native object: the simulator builds
and reads one per node and message round, and a compiled caller reads its fields directly."""

from __future__ import annotations

from raftkv.core.messages import AnyMessage, Entry, HardState

# The records inside a Ready live in ready_records.py (see there why); imported from here too.
from raftkv.core.ready_records import PeerStatus as PeerStatus
from raftkv.core.ready_records import ReadState as ReadState
from raftkv.core.ready_records import SnapshotMeta as SnapshotMeta
from raftkv.core.ready_records import SoftState as SoftState

# Ready's fields, in its constructor's order (its repr).
_FIELDS = (
    "soft_state",
    "hard_state",
    "entries",
    "snapshot",
    "messages",
    "messages_after_persist",
    "committed_entries",
    "read_states",
    "events",
    "must_sync",
    "may_persist_later",
)


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

    `may_persist_later`: a Ready of entries whose term and vote are already durable, no
    snapshot: a leader's with nothing to send after persisting, or a follower's. The driver
    may then start making it durable, carry out step 4 and call
    `advance_before_persisted(ready)` without waiting, provided it sends
    `messages_after_persist` (a follower's acknowledgements) only once the entries are
    durable; and it calls `entries_persisted(index, term)` once the entries through that
    last entry are. Meanwhile the next Ready may come (a follower's entries applied before
    they are durable on it are committed, so durable on a majority), and the leader counts
    itself towards a commit only for what `entries_persisted` reported (thesis §10.2.1:
    several writes in flight).
    """

    # A plain class, not a dataclass: mypyc leaves a dataclass's generated __init__
    # interpreted, and the simulator builds one Ready per node and message round.

    def __init__(
        self,
        soft_state: SoftState | None = None,
        hard_state: HardState | None = None,
        entries: list[Entry] | None = None,
        snapshot: tuple[SnapshotMeta, bytes] | None = None,
        messages: list[AnyMessage] | None = None,
        messages_after_persist: list[AnyMessage] | None = None,
        committed_entries: list[Entry] | None = None,
        read_states: list[ReadState] | None = None,
        events: list[str] | None = None,
        must_sync: bool = False,
        may_persist_later: bool = False,
    ) -> None:
        self.soft_state = soft_state
        self.hard_state = hard_state
        self.entries: list[Entry] = [] if entries is None else entries
        self.snapshot = snapshot
        self.messages: list[AnyMessage] = [] if messages is None else messages
        self.messages_after_persist: list[AnyMessage] = (
            [] if messages_after_persist is None else messages_after_persist
        )
        self.committed_entries: list[Entry] = [] if committed_entries is None else committed_entries
        self.read_states: list[ReadState] = [] if read_states is None else read_states
        # Human-readable lines for the node's log: elections, role and membership changes.
        self.events: list[str] = [] if events is None else events
        self.must_sync = must_sync
        self.may_persist_later = may_persist_later

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"Ready({fields})"

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
