"""What a whole-node simulation run is asked (`WholeNodeOptions`), what it counted
(`WholeNodeStats`) and its report (`WholeNodeResult.report_lines()`, a format SPEC §6
describes and scripts read)."""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.server.options import NodeOptions
from raftkv.sim.invariants import InvariantViolation
from raftkv.sim.options import REPLICATION_CHOICES
from raftkv.sim.runner import verdict_lines
from raftkv.sim.whole_node_leases import LeaseStats

WATCHERS_DEFAULT = 2
COMMIT_NOTICES = ("prompt", "lazy")


@dataclass
class WholeNodeOptions:
    seed: int
    nodes: int = 3
    seconds: float = 6.0  # virtual time under faults, before healing (raft-sim's default)
    faults: bool = True
    clients: int = 3
    # Members removed and added (joins, re-adds on a new disk) and leadership transfers.
    membership: bool = True
    # Watchers of the clients' keys, resuming on other nodes, checked at the end.
    watchers: int = WATCHERS_DEFAULT
    # A client of leases (grants, keys attached, keepalives, revokes, expiries) and the
    # check that none expires early (sim/whole_node_leases.py).
    leases: bool = True
    # The nodes' WAL segment size (None: raft-node's); small, segments rotate and are
    # deleted behind snapshots all through a run.
    wal_segment_bytes: int | None = None
    # The nodes' `sync_thread_min_entries` (None: by the seed, so that a sweep runs both
    # ways the Ready loop syncs: odd seeds 1, every Ready with entries synced through the
    # sync thread; even seeds 0, always on the loop, as every seed was before the thread).
    # raft-node's default (2) mixes the two.
    sync_thread_min_entries: int | None = None
    # The nodes' `read_rounds_inflight_max` (None: raft-node's, one round in flight; 0, a
    # round per Ready, replays the seeds found before session 28).
    read_rounds_inflight_max: int | None = None
    # Followers serve linearizable and lease reads (raft-node's default since session 30);
    # False (`--no-follower-reads`) replays the seeds found before, whose clients were sent
    # to the leader by a 421 (tests/sim/test_whole_node_reach.py).
    follower_reads: bool = True
    # How leaders tell followers of commits (NodeOptions.defer_commit_notices): None, by
    # the seed (seeds 3, 7, 11, ... at once, the others lazily, raft-node's default);
    # "prompt" (`--commit-notices prompt`), every seed at once, replays the seeds found
    # before session 38 (tests/sim/test_whole_node_reach.py); "lazy", every seed lazily.
    commit_notices: str | None = None
    # How leaders replicate a lone write (NodeOptions.quorum_first): None, by the seed
    # (seeds 0, 3, 4, 7, 8, 11, ... quorum-first, raft-node's default since session 45, the
    # others to every follower at once); "all" replays the seeds found before session 45;
    # "quorum-first", every seed so.
    replication: str | None = None
    # Core-only and whole-node seeds are separate spaces: a seed means one or the other.

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("--nodes must be at least 1")
        if self.wal_segment_bytes is not None and self.wal_segment_bytes < 1024:
            raise ValueError("--wal-segment-bytes must be at least 1024")
        if self.sync_thread_min_entries is not None and self.sync_thread_min_entries < 0:
            raise ValueError("--sync-thread-min-entries must not be negative")
        if self.read_rounds_inflight_max is not None and self.read_rounds_inflight_max < 0:
            raise ValueError("--read-rounds-inflight-max must not be negative")
        if self.commit_notices not in (None, *COMMIT_NOTICES):
            raise ValueError(f"--commit-notices is one of {', '.join(COMMIT_NOTICES)}")
        if self.replication not in (None, *REPLICATION_CHOICES):
            raise ValueError(f"--replication is one of {', '.join(REPLICATION_CHOICES)}")

    @property
    def nodes_sync_thread_min_entries(self) -> int:
        if self.sync_thread_min_entries is not None:
            return self.sync_thread_min_entries
        return 1 if self.seed % 2 else 0

    @property
    def nodes_read_rounds_inflight_max(self) -> int:
        if self.read_rounds_inflight_max is not None:
            return self.read_rounds_inflight_max
        return NodeOptions.read_rounds_inflight_max

    @property
    def nodes_defer_commit_notices(self) -> bool:
        if self.commit_notices is not None:
            return self.commit_notices == "lazy"
        return self.seed % 4 != 3

    @property
    def nodes_quorum_first(self) -> bool:
        if self.replication is not None:
            return self.replication == "quorum-first"
        # Both with and without the sync thread (seed % 2) and with both kinds of commit
        # notices (seed % 4 == 3).
        return self.seed % 4 in (0, 3)

    def replay_command(self) -> str:
        return (
            f"raft-sim --whole-node --seed {self.seed} --nodes {self.nodes}"
            f" --seconds {self.seconds:g}"
            + ("" if self.faults else " --faults none")
            + ("" if self.membership else " --workload kv")
            + ("" if self.watchers == WATCHERS_DEFAULT else f" --watchers {self.watchers}")
            + ("" if self.leases else " --no-leases")
            + ("" if self.follower_reads else " --no-follower-reads")
            + (
                ""
                if self.wal_segment_bytes is None
                else f" --wal-segment-bytes {self.wal_segment_bytes}"
            )
            + (
                ""
                if self.sync_thread_min_entries is None
                else f" --sync-thread-min-entries {self.sync_thread_min_entries}"
            )
            + (
                ""
                if self.read_rounds_inflight_max is None
                else f" --read-rounds-inflight-max {self.read_rounds_inflight_max}"
            )
            + ("" if self.commit_notices is None else f" --commit-notices {self.commit_notices}")
            + ("" if self.replication is None else f" --replication {self.replication}")
        )


@dataclass
class WholeNodeStats:
    callbacks: int = 0
    crashes: int = 0
    disk_crashes: int = 0  # power lost inside a disk operation
    restarts: int = 0
    refused_starts: list[str] = field(default_factory=list)
    partitions: int = 0
    pauses: int = 0
    slow_fsyncs: int = 0
    storage_failures: int = 0
    joins: int = 0
    removals: int = 0
    removed_stops: int = 0  # nodes that stopped after applying their own removal
    transfers: int = 0
    client_ok: int = 0
    client_failed: int = 0
    client_unknown: int = 0
    shape: str = ""
    load_writers: int = 0
    disks: str = ""
    snapshot_entries: int = 0
    snapshot_log_fraction: float = 0.0
    snapshot_trailing_entries: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    max_term: int = 0
    commit_index: int = 0
    liveness: str = "not checked"
    linearizability: str = "not checked"
    watches: str = "not checked"
    leases: LeaseStats | None = None  # None: no lease traffic


@dataclass
class WholeNodeResult:
    options: WholeNodeOptions
    stats: WholeNodeStats
    violation: InvariantViolation | None

    @property
    def ok(self) -> bool:
        return self.violation is None

    def report_lines(self) -> list[str]:
        options, stats = self.options, self.stats
        lines = [
            f"raft-sim --whole-node seed={options.seed} nodes={options.nodes}"
            f" seconds={options.seconds:g} faults={'all' if options.faults else 'none'}"
            f" workload={'membership' if options.membership else 'kv'}",
            f"cluster: {stats.shape}; disks: {stats.disks}; load writers: {stats.load_writers}",
            f"callbacks: {stats.callbacks}  max term: {stats.max_term}"
            f"  commit index: {stats.commit_index}",
            f"faults: crash={stats.crashes} (inside a disk operation {stats.disk_crashes})"
            f" restart={stats.restarts} partition={stats.partitions} pause={stats.pauses}"
            f" slow-fsync={stats.slow_fsyncs} storage-failure={stats.storage_failures}",
            f"operator: join={stats.joins} remove={stats.removals}"
            f" (stopped on removal {stats.removed_stops}) transfer={stats.transfers}",
            f"snapshots: every {stats.snapshot_entries} entries"
            + (
                f" and {stats.snapshot_log_fraction:g}x the last one in commands"
                if stats.snapshot_log_fraction
                else ""
            )
            + f", keeping"
            f" {stats.snapshot_trailing_entries}; taken={stats.snapshots_taken}"
            f" installed={stats.snapshots_installed}",
            f"client ops: ok={stats.client_ok} failed={stats.client_failed}"
            f" unknown={stats.client_unknown}",
        ]
        if stats.leases is not None:
            leases = stats.leases
            lines.append(
                f"leases: granted={leases.granted} keepalives={leases.keepalives}"
                f" revoked={leases.revoked} expired={leases.expired}"
            )
        lines += [
            f"liveness: {stats.liveness}",
            f"linearizability: {stats.linearizability}",
            f"watches: {stats.watches}",
        ]
        lines += [f"refused to start: {refusal}" for refusal in stats.refused_starts]
        return lines + verdict_lines(self.violation, options.seed, options.replay_command())
