"""One simulated computer of the whole-node simulator: a disk that outlives the server
processes it runs, and where it stands in its life."""

from __future__ import annotations

import enum

from raftkv.core import RaftNode
from raftkv.core.messages import HardState
from raftkv.server.runtime import RaftServer
from raftkv.storage.simulated_disk import SimulatedFileSystem


class MachineState(enum.Enum):
    NEW = "new"  # not a member yet (a later joiner), or gave up joining
    JOINING = "joining"  # asking the cluster to add it
    RUNNING = "running"  # a server process is up (or starting)
    DOWN = "down"  # crashed or lost power; restarted later
    REFUSED = "refused"  # refused to start: its disk lost or damaged what it held
    REMOVED = "removed"  # stopped after its removal; only a new join brings it back


class Machine:
    def __init__(self, node_id: int, disk: SimulatedFileSystem, *, disk_faults: bool) -> None:
        self.id = node_id
        self.disk = disk
        # Whether its disk fails now and then (ENOSPC, EIO): a storage failure is expected.
        self.disk_faults = disk_faults
        self.state = MachineState.NEW
        self.server: RaftServer | None = None
        self.incarnation = 0
        self.refusal: str | None = None
        # It applied its own removal and is stopping.
        self.leaving = False
        # Started with `--join` (not a founder, or a founder's id re-added on a new disk).
        self.joined = False
        # (index, term) of the newest committed entry its WAL held after a sync.
        self.durable = (0, 0)
        # The hard state (term, vote) its disk holds: no message may run ahead of it.
        self.durable_hard_state = HardState()

    @property
    def owner(self) -> tuple[int, int]:
        """Whose callbacks these are on the simulated loop: this process, not the last."""
        return (self.id, self.incarnation)

    def server_node(self) -> RaftNode:
        """The Raft core of the running server (only while it runs)."""
        assert self.server is not None
        return self.server.node

    def started(self) -> bool:
        """Running with its core built (start-up got past recovery)."""
        return self.server is not None and hasattr(self.server, "node")
