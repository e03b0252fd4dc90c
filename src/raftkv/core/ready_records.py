"""The small records a Ready carries: snapshot metadata, soft state, read states, and the
leader's view of a follower.

Apart from ready.py, which mypyc compiles (setup.py): a compiled frozen dataclass can no
longer be copied or pickled (mypyc's __setstate__ assigns fields, which a frozen dataclass
refuses), and a msgspec Struct defined in a compiled module loses the type parameters of
its field annotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from raftkv.core.membership import Membership


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
