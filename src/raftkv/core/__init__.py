"""The sans-IO Raft core: pure, synchronous, deterministic.

Nothing in this package touches a socket, a file, a clock, a thread or the module-level
`random`. Drivers (the asyncio server, the simulator, the tests) feed it ticks, messages and
proposals, and carry out what `RaftNode.ready()` asks for.
"""

from raftkv.core.config import RaftConfig
from raftkv.core.membership import Membership
from raftkv.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.core.node import RaftNode, Role
from raftkv.core.ready import PeerStatus, ReadState, Ready, SnapshotMeta, SoftState

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "Entry",
    "EntryKind",
    "HardState",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "Membership",
    "Message",
    "PeerStatus",
    "RaftConfig",
    "RaftNode",
    "ReadState",
    "Ready",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "SnapshotMeta",
    "SoftState",
    "TimeoutNow",
]
