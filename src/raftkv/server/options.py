"""Everything a node is started with, and the limits of the client API, in one place."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from raftkv.addresses import WILDCARD_HOSTS, format_address
from raftkv.core.config import RaftConfig
from raftkv.server.auth import AccessPolicy
from raftkv.server.watches import WatchLimits
from raftkv.tls import TlsSettings

# Client API limits (SPEC §3).
KEY_BYTES_MAX = 1024
VALUE_BYTES_MAX_DEFAULT = 1 << 20
# How long the server waits for a write to commit or a read to be confirmed.
REQUEST_TIMEOUT_SECONDS_DEFAULT = 5.0
# applied_hash values remembered per applied index, for `raft-client check`.
HASH_WINDOW_ENTRIES = 10_000
# WAL segment size: compaction deletes whole segments, so this bounds the log on disk at
# about two segments beyond what the last snapshot covers.
WAL_SEGMENT_BYTES = 16 << 20
# The smallest Ready (in entries) whose WAL sync runs in the sync thread (NodeOptions).
SYNC_THREAD_MIN_ENTRIES_DEFAULT = 2
# ...or in bytes of entries, however few: writing and syncing a large value takes
# milliseconds, and a disk busy with a snapshot's file made it 100 ms and more, all of it
# with the event loop standing still (no ticks, heartbeats or requests meanwhile).
SYNC_THREAD_MIN_BYTES = 64 << 10
# How long a removed member stays reachable, so queued messages (its removal) still reach it.
REMOVED_PEER_GRACE_SECONDS = 2.0
# How long a member keeps dialing a removed node to tell it so (SPEC §4), when it does not
# answer: an hour covers a node down for maintenance; one stopped for good is let go.
REMOVAL_NOTICE_SECONDS = 3600.0
# A snapshot is due once this many entries were applied since the last one (etcd's
# --snapshot-count default too). Each snapshot stalls every node at once for a moment (the
# state frozen, encoded in the disk thread beside the loop, the log compacted, segments
# deleted): side by side with etcd at C=16 and C=64, 100,000 instead of 10,000 brought p99
# from 8-10 ms down to 5-6 at C=16 and ~5 % more writes (docs/ARCHITECTURE.md, "Session 26"),
# while the log it keeps in memory (under 64 MiB of commands, SNAPSHOT_BYTES_DEFAULT) made
# no measurable difference to a node's memory (139-144 MiB at 190,000 keys either way) and
# a restart's replay of ~90,000 entries took 1.35 s to ready against 1.18.
SNAPSHOT_ENTRIES_DEFAULT = 100_000
# A snapshot of a large state also waits for commands adding up to this fraction of the
# last snapshot's size (NodeOptions.snapshot_log_fraction): taking one costs time in
# proportion to the state (80 ms of encoding for 200,000 keys), so taking one every
# `snapshot_entries` entries made each write pay a share that grew with the state, and
# encoding took a fifth of every node's CPU at 150,000 keys under load. Waiting for a
# fraction of the state's size in commands makes that share a constant. 1.0 (it was 0.25):
# the log since the last snapshot holds at most as much as the state itself, and every byte
# written costs at most one byte of snapshot encoding. Side by side with etcd on a state of
# 200,000 keys, 1.0 cost 12-16 % less CPU per write and halved p99.9 at C=64 (docs/
# ARCHITECTURE.md, "Session 26"), for a peak memory 0-13 % higher and a longer replay on
# restart (up to the state's size in commands, and never over 64 MiB).
SNAPSHOT_LOG_FRACTION_DEFAULT = 1.0
# Past this, 64 MiB of commands (SNAPSHOT_BYTES_DEFAULT) comes first for any state worth it.
SNAPSHOT_LOG_FRACTION_MAX = 10.0
# ...for states whose last snapshot was at least this big (smaller ones cost little).
SNAPSHOT_FRACTION_FROM_BYTES = 1 << 20
# Log entries kept behind a snapshot so slightly slow followers avoid an InstallSnapshot.
SNAPSHOT_TRAILING_ENTRIES = 1_000
# ...and no more than this many bytes of commands: with 1 MiB values, 1,000 entries would
# keep a GiB in memory.
SNAPSHOT_TRAILING_BYTES = 16 << 20
# `GET /readyz`: a node is ready while it has applied all but at most this many entries of
# the commit index it knows. As many as a snapshot keeps for "slightly slow" followers: a
# node one or two fsyncs behind under load is serving; one installing a snapshot or
# replaying a long log is not.
READY_LAG_ENTRIES_DEFAULT = SNAPSHOT_TRAILING_ENTRIES


@dataclass
class NodeOptions:
    node_id: int
    data_dir: str
    listen: tuple[str, int]
    client_listen: tuple[str, int]
    # What this node tells peers and clients instead of `listen` and `client_listen`
    # (`--advertise-peer`, `--advertise-client`): needed when those are wildcard addresses.
    advertise_peer: tuple[str, int] | None = None
    advertise_client: tuple[str, int] | None = None
    # Peer addresses of the founding members (`--peers`), self excluded.
    peers: dict[int, tuple[str, int]] = field(default_factory=dict)
    join: tuple[str, int] | None = None
    # Bootstrap a brand-new cluster whose only member is this node (`--single-node`); it
    # grows by others joining. Explicit, never the default: a member restarted on an
    # emptied data dir without `--join` must not quietly found a cluster of its own.
    single_node: bool = False
    cluster_id: str | None = None
    tick_ms: int = 10
    election_timeout_ms: tuple[int, int] = (150, 300)
    heartbeat_ms: int = 50
    snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT
    # ...and, once the last snapshot was `snapshot_fraction_from_bytes` or more, commands of
    # at least this fraction of its size (0: entries alone; `--snapshot-log-fraction`).
    snapshot_log_fraction: float = SNAPSHOT_LOG_FRACTION_DEFAULT
    snapshot_fraction_from_bytes: int = SNAPSHOT_FRACTION_FROM_BYTES
    # The WAL's segment size: a segment is deleted once a snapshot covers all of it. The
    # whole-node simulator can make it small, so that rotation and deletion meet crashes.
    wal_segment_bytes: int = WAL_SEGMENT_BYTES
    # A Ready with at least this many entries (a batch: the node is under load) has its WAL
    # synced in the node's sync thread while the loop goes on reading requests and
    # acknowledgements; fewer are synced on the loop, where a fast fsync costs less than
    # the hop to a thread and back. 0: always on the loop (`--sync-thread-min-entries`).
    sync_thread_min_entries: int = SYNC_THREAD_MIN_ENTRIES_DEFAULT
    # ReadIndex rounds a leader keeps in flight (RaftConfig.read_rounds_inflight_max; 0: a
    # round per Ready, as before session 28). The whole-node simulator sets 0 to replay the
    # seed ranges found before (tests/sim/test_whole_node_reach.py).
    read_rounds_inflight_max: int = RaftConfig.read_rounds_inflight_max
    # Entries kept behind a snapshot for slightly slow followers (at most
    # SNAPSHOT_TRAILING_BYTES of them); the simulator keeps few, so installs happen.
    snapshot_trailing_entries: int = SNAPSHOT_TRAILING_ENTRIES
    # Linearizable and lease reads on a follower ask the leader for its read index and run
    # here (thesis §6.4); False: a follower answers them 421 not_leader, as before session
    # 30 (`--no-follower-reads`).
    follower_reads: bool = True
    # Followers learn of a commit with the next entries or at the next tick
    # (RaftConfig.defer_commit_notices); False: at once, as before session 38
    # (`--prompt-commit-notices`).
    defer_commit_notices: bool = RaftConfig.defer_commit_notices
    # A lone write goes at once to as many voters as commit it, the other followers get
    # it at the next tick (RaftConfig.quorum_first); False: every follower at once, as
    # before session 45 (`--no-quorum-first`).
    quorum_first: bool = RaftConfig.quorum_first
    # The event loop's thread runs SCHED_BATCH while this node is not the leader, so that
    # on shared CPUs a woken follower does not preempt the leader (server/
    # thread_scheduling.py). Off by default here: the loop's thread is the embedding
    # application's; raft-node turns it on (`--no-follower-batch-scheduling` to not).
    follower_batch_scheduling: bool = False
    # After each low-load Ready with a client's work in it (server/idle_poll.py), the CPU
    # the event loop ran on is kept out of halt for this many microseconds by an
    # idle-priority thread. 0 (off) by default here: it is the embedding process's CPU
    # time; raft-node turns it on (`--idle-poll-us`, 1000 by default there).
    idle_poll_us: int = 0
    seed: int | None = None
    trace_rpc: bool = False
    value_bytes_max: int = VALUE_BYTES_MAX_DEFAULT
    request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS_DEFAULT
    pre_vote: bool = True
    check_quorum: bool = True
    # Flow control: a leader refuses proposals (503 "retry") once this many bytes of
    # entries are appended but uncommitted; one entry is always admitted into an empty
    # window. The simulator makes it small, so refusals meet every proposer.
    uncommitted_bytes_max: int = RaftConfig.uncommitted_bytes_max
    # Readiness (`GET /readyz`): at most this many committed entries not yet applied.
    ready_lag_entries_max: int = READY_LAG_ENTRIES_DEFAULT
    # Who may call what on the client port (`--auth-tokens`, `--auth-public`); the default
    # lets everyone do everything.
    access: AccessPolicy = field(default_factory=AccessPolicy)
    # The bearer token `--join` presents to the cluster (an admin's); None: none.
    join_token: str | None = field(default=None, repr=False)
    # Certificate files: mutual TLS between peers, HTTPS on the client port (SPEC §6).
    tls: TlsSettings = field(default_factory=TlsSettings)
    # Watchers per node, the history of changes they resume from, their buffers (SPEC §6).
    watch: WatchLimits = field(default_factory=WatchLimits)

    @property
    def advertised_peer_address(self) -> tuple[str, int]:
        """Where peers reach this node: what it records and announces as its own."""
        return self.advertise_peer or self.listen

    @property
    def advertised_client_address(self) -> tuple[str, int]:
        """Where clients reach this node: what its leader hints name."""
        return self.advertise_client or self.client_listen

    def wildcard_refusal(self) -> str | None:
        """Why `raft-node` refuses to start with these addresses, if it does: a wildcard
        listen address (every interface) names no address anyone could dial back, so it
        needs the matching advertised address (SPEC §6)."""
        if self.listen[0] in WILDCARD_HOSTS and self.advertise_peer is None:
            return (
                f"--listen {format_address(self.listen)} is a wildcard address peers cannot "
                "dial: add --advertise-peer HOST:PORT (the address peers reach this node at)"
            )
        if self.client_listen[0] in WILDCARD_HOSTS and self.advertise_client is None:
            return (
                f"--client-listen {format_address(self.client_listen)} is a wildcard address "
                "clients cannot dial: add --advertise-client HOST:PORT (the address clients "
                "reach this node at)"
            )
        return None

    @property
    def election_timeout_ticks(self) -> tuple[int, int]:
        low, high = self.election_timeout_ms
        return max(2, low // self.tick_ms), max(3, high // self.tick_ms)

    @property
    def heartbeat_ticks(self) -> int:
        return max(1, self.heartbeat_ms // self.tick_ms)


def new_cluster_id() -> str:
    """A new cluster's id: 128 random bits, made once by one founding member and kept in
    every member's data dir. It tells clusters apart; it is no secret (TLS keeps strangers
    out; the id keeps a misdirected node of another cluster out)."""
    return "raftkv-" + secrets.token_hex(16)
