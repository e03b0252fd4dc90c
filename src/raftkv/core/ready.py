"""What the core hands its driver: the Ready batch (the small records inside it are in
ready_records.py).

mypyc compiles this module (setup.py), so a Ready is a native object: the simulator builds
and reads one per node and message round, and a compiled caller reads its fields directly."""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.core.messages import AnyMessage, Entry, HardState

# The records inside a Ready live in ready_records.py (see there why); imported from here too.
from raftkv.core.ready_records import PeerStatus as PeerStatus
from raftkv.core.ready_records import ReadState as ReadState
from raftkv.core.ready_records import SnapshotMeta as SnapshotMeta
from raftkv.core.ready_records import SoftState as SoftState


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
