"""What one simulation run is: its arguments (the seed decides everything else) and limits.

Every tunable of the simulator lives here or next to the code it bounds (network.py,
faults.py, clients.py), as a named constant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from raftkv.core.config import RaftConfig

# The fault kinds `--faults` accepts. Network faults act on every message; the others are
# events the fault injector schedules (faults.py).
FAULT_KINDS: tuple[str, ...] = (
    "drop",
    "duplicate",
    "reorder",
    "partition",
    "oneway",
    "crash",
    "pause",
    "snapshot",
)
# kv: three clients and leadership transfers; membership: kv plus membership changes; none.
WORKLOADS: tuple[str, ...] = ("kv", "membership", "none")

NODES_DEFAULT = 3
NODES_MAX = 9
# Long enough for dozens of faults and elections, short enough for thousands of seeds.
TICKS_DEFAULT = 3000

# The core's timing (ticks): heartbeats well inside the election timeout, as in a real node.
ELECTION_TIMEOUT_TICKS = 10
HEARTBEAT_TICKS = 2

# Liveness: once every fault is healed, a leader must exist and every node must have applied
# the leader's whole log within this many election timeouts, plus catching up. Healing costs
# a restarted node's quiet period (one timeout), a pre-vote and a vote round (a few timeouts
# with split votes); 30 timeouts leaves room for unlucky election draws.
LIVENESS_ELECTION_TIMEOUTS = 30
LIVENESS_BOUND_TICKS = LIVENESS_ELECTION_TIMEOUTS * ELECTION_TIMEOUT_TICKS
# Catching up: the slowest tuning (one entry per message, one message in flight) moves one
# entry per round trip, so the bound grows by a round trip per entry the furthest-behind node
# lacks when the faults heal.


def parse_faults(text: str) -> frozenset[str]:
    """`drop,crash` -> {"drop", "crash"}; `all` is every kind, `none` (or empty) no fault."""
    kinds: set[str] = set()
    for raw in text.split(","):
        name = raw.strip()
        if not name or name == "none":
            continue
        if name == "all":
            kinds.update(FAULT_KINDS)
        elif name in FAULT_KINDS:
            kinds.add(name)
        else:
            raise ValueError(
                f"unknown fault kind {name!r} (choose from {', '.join(FAULT_KINDS)}, all, none)"
            )
    return frozenset(kinds)


def format_faults(faults: frozenset[str]) -> str:
    if faults == frozenset(FAULT_KINDS):
        return "all"
    if not faults:
        return "none"
    return ",".join(kind for kind in FAULT_KINDS if kind in faults)


@dataclass(frozen=True)
class SimulationOptions:
    seed: int
    nodes: int = NODES_DEFAULT
    ticks: int = TICKS_DEFAULT
    faults: frozenset[str] = field(default_factory=lambda: frozenset(FAULT_KINDS))
    workload: str = "kv"
    verbose: bool = False
    # How leaders replicate a lone command (RaftConfig.quorum_first): None, by the seed's
    # draw (half the seeds quorum-first, `CoreTuning`); "all", every follower at once, as
    # the seeds pinned before session 45 were found; "quorum-first", every seed so.
    replication: str | None = None

    def __post_init__(self) -> None:
        if self.replication not in (None, *REPLICATION_CHOICES):
            raise ValueError(f"replication is one of {', '.join(REPLICATION_CHOICES)}")
        if not 1 <= self.nodes <= NODES_MAX:
            raise ValueError(f"nodes must be between 1 and {NODES_MAX}")
        if self.ticks < 0:
            raise ValueError("ticks must not be negative")
        unknown = self.faults - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r} (choose from {WORKLOADS})")

    def replay_command(self) -> str:
        """The exact command line that reruns this simulation."""
        return (
            f"raft-sim --seed {self.seed} --nodes {self.nodes} --ticks {self.ticks}"
            f" --faults {format_faults(self.faults)} --workload {self.workload}"
            + ("" if self.replication is None else f" --replication {self.replication}")
        )

    def tuning_for_run(self, tuning: CoreTuning) -> CoreTuning:
        """`tuning` with `replication` applied, when given."""
        if self.replication is None:
            return tuning
        return replace(tuning, quorum_first=self.replication == "quorum-first")

    def raft_config(self, node_id: int, tuning: CoreTuning) -> RaftConfig:
        return RaftConfig(
            node_id=node_id,
            election_timeout_ticks=ELECTION_TIMEOUT_TICKS,
            heartbeat_ticks=HEARTBEAT_TICKS,
            message_bytes_max=tuning.message_bytes_max,
            inflight_messages_max=tuning.inflight_messages_max,
            snapshot_chunk_bytes=tuning.snapshot_chunk_bytes,
            snapshot_chunks_inflight_max=tuning.snapshot_chunks_inflight_max,
            defer_commit_notices=tuning.defer_commit_notices,
            quorum_first=tuning.quorum_first,
        )


# Per-seed choices of the core's flow-control limits. Small values stretch replication over
# many round trips, which opens the windows where a follower holds part of a leader's log
# (Figure 8 needs one); large values test batching. Small snapshot chunks make InstallSnapshot
# a multi-message transfer whose chunks get lost and reordered.
MESSAGE_BYTES_CHOICES = (64, 256, 1 << 20)
INFLIGHT_MESSAGES_CHOICES = (1, 4, 64)
SNAPSHOT_CHUNK_BYTES_CHOICES = (32, 256, 1 << 18)
SNAPSHOT_CHUNKS_INFLIGHT_CHOICES = (1, 4)
# A quarter of the seeds tell commits at once, the default's alternative
# (RaftConfig.defer_commit_notices).
PROMPT_COMMIT_NOTICES_SHARE = 0.25
# Half the seeds replicate a lone command quorum-first, raft-node's default
# (RaftConfig.quorum_first); `SimulationOptions.replication` overrides the draw.
QUORUM_FIRST_SHARE = 0.5
REPLICATION_CHOICES = ("all", "quorum-first")


@dataclass(frozen=True)
class CoreTuning:
    message_bytes_max: int
    inflight_messages_max: int
    snapshot_chunk_bytes: int
    snapshot_chunks_inflight_max: int
    defer_commit_notices: bool = True
    # False where a tuning is written out (the golden run, pinned tests): as before.
    quorum_first: bool = False

    @staticmethod
    def draw(rng: random.Random) -> CoreTuning:
        return CoreTuning(
            message_bytes_max=rng.choice(MESSAGE_BYTES_CHOICES),
            inflight_messages_max=rng.choice(INFLIGHT_MESSAGES_CHOICES),
            snapshot_chunk_bytes=rng.choice(SNAPSHOT_CHUNK_BYTES_CHOICES),
            snapshot_chunks_inflight_max=rng.choice(SNAPSHOT_CHUNKS_INFLIGHT_CHOICES),
            # Drawn last: the draws above (and the seeds pinned on them) do not move.
            defer_commit_notices=rng.random() >= PROMPT_COMMIT_NOTICES_SHARE,
            quorum_first=rng.random() < QUORUM_FIRST_SHARE,  # (after it, for the same reason)
        )

    def describe(self) -> str:
        return (
            f"message_bytes_max={self.message_bytes_max}"
            f" inflight={self.inflight_messages_max}"
            f" snapshot_chunk={self.snapshot_chunk_bytes}x{self.snapshot_chunks_inflight_max}"
            + ("" if self.defer_commit_notices else " prompt-commit-notices")
            + (" quorum-first" if self.quorum_first else "")
        )
