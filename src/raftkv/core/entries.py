"""Log entries and hard state (Raft paper Figure 2), and the bounds on every number a peer
sends: the msgspec Structs that storage writes and the wire carries.

Interpreted, not compiled: msgspec Structs must stay interpreted (setup.py). The messages
themselves are native classes in `messages.py`, which re-exports all of this.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

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
