"""Every tunable of the core and every limit it enforces, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RaftConfig:
    node_id: int
    # §5.2: each election timeout is drawn uniformly from [T, 2T) ticks, or up to
    # `election_timeout_ticks_max` (exclusive) when that is set.
    election_timeout_ticks: int = 10
    election_timeout_ticks_max: int | None = None
    # A leader sends heartbeats every H ticks; H must be well below T.
    heartbeat_ticks: int = 2
    # Thesis §9.6: a trial election first, so a node that was partitioned away cannot
    # disrupt a healthy leader by bumping terms.
    pre_vote: bool = True
    # A leader that has not heard from a quorum for an election timeout steps down, and a
    # follower that hears a live leader ignores vote requests (thesis §4.2.3, §9.6).
    check_quorum: bool = True
    # Replication flow control: AppendEntries in flight per follower in replicate mode.
    inflight_messages_max: int = 64
    # Bytes of entries in one AppendEntries (at least one entry always goes).
    message_bytes_max: int = 1 << 20
    # Bytes of committed entries handed to the application in one Ready.
    committed_bytes_per_ready_max: int = 8 << 20
    # Proposals refused once this many bytes are appended but not yet committed.
    uncommitted_bytes_max: int = 64 << 20
    # InstallSnapshot chunk size and how many chunks may be unacknowledged.
    snapshot_chunk_bytes: int = 256 << 10
    snapshot_chunks_inflight_max: int = 4
    # ReadIndex rounds (thesis §6.4: a heartbeat round confirming leadership for the reads
    # queued before it) in flight at once; 0 = no limit. Reads that arrive while the limit
    # is reached wait and share the next round, as etcd's read loop keeps one in flight: a
    # round costs the leader two messages out and two answers in, and under load starting
    # one per Ready cost more than the reads it served (docs/ARCHITECTURE.md, session 28).
    # A round whose messages are lost is confirmed by the next heartbeat's answers.
    read_rounds_inflight_max: int = 1
    # A leader tells its followers of a commit with the next AppendEntries that carries
    # entries, or at the latest at its next tick, rather than at once in an AppendEntries
    # of its own: under a steady stream of writes the commit rides on the next write's
    # entries, and each follower handles one message and sends one answer per write, not
    # two (at C=1: 16 % less CPU per write on the members, p50 0.692 -> 0.630 ms,
    # docs/ARCHITECTURE.md, session 38). Followers apply up to a tick later when writes
    # pause, except that a follower waiting for an index the leader gave it (a forwarded
    # read's or proposal's) is told as soon as that index commits
    # (`RaftNode.announce_commit`). False: told at once.
    defer_commit_notices: bool = True
    # Quorum-first replication: a lone command proposed while enough followers are idle
    # and caught up goes at once only to as many voters as commit it with the leader (one
    # of two followers, two of four); the others get it with the leader's next tick, in one
    # batch with whatever else came meanwhile. The commit needs no more than before (a
    # majority's fsync), the left-out followers sync once a tick instead of once a write,
    # and at C=1 the one follower that matters no longer shares the CPUs and the disk with
    # the others (p50 0.708 -> 0.607 ms, 19 % less CPU per write; docs/ARCHITECTURE.md,
    # session 45). Under load (a batch of commands, or a follower with entries in flight)
    # every follower gets every entry at once, as before. A follower chosen that fails
    # costs the command in flight to it at most a tick: the next tick sends it to the
    # others. False: every follower at once.
    quorum_first: bool = True

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError("node_id must be a positive integer")
        if self.heartbeat_ticks <= 0 or self.election_timeout_ticks <= self.heartbeat_ticks:
            raise ValueError("need 0 < heartbeat_ticks < election_timeout_ticks")
        maximum = self.election_timeout_ticks_max
        if maximum is not None and maximum <= self.election_timeout_ticks:
            raise ValueError("election_timeout_ticks_max must exceed election_timeout_ticks")
        if self.read_rounds_inflight_max < 0:
            raise ValueError("read_rounds_inflight_max must be 0 (no limit) or positive")
        if self.inflight_messages_max <= 0 or self.message_bytes_max <= 0:
            raise ValueError("limits must be positive")
