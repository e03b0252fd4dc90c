"""Prometheus metrics of one node (`GET /metrics`).

Gauges are read from the node when scraped (a custom collector), so the hot path pays only
for the counters and the fsync histogram.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from raftkv.core import RaftNode
from raftkv.kv.snapshot_format import walks_moved
from raftkv.server.auth import AccessPolicy
from raftkv.server.http_server import HttpServer
from raftkv.server.idle_poll import IdlePoller
from raftkv.server.watches import WatchHub
from raftkv.transport.base import Transport

ROLE_CODES = {"follower": 0, "pre_candidate": 1, "candidate": 2, "leader": 3, "learner": 4}
# The `_created` timestamps double the output and tell an operator nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]

FSYNC_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
# How late the ticker woke (a tick is 10 ms by default): from a busy loop to a lost election.
LOOP_STALL_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.3, 0.5, 1.0, 2.0, 5.0)


class RequestCounts(Protocol):
    """Client requests as the metrics count them (`RequestTracker`)."""

    @property
    def proposals_total(self) -> int: ...

    @property
    def commands_failed_total(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def writes_applied_total(self) -> int: ...

    @property
    def write_seconds_total(self) -> float: ...


class FollowerReadCounts(Protocol):
    """What a scrape reads of a follower's reads (`FollowerReads`)."""

    @property
    def reads_total(self) -> int: ...

    @property
    def forwards_total(self) -> int: ...


class MetricsSource(Protocol):
    """What the gauges are read from when scraped (`RaftServer`). Properties: the core,
    the transport and the client port exist only once the node has started."""

    @property
    def node(self) -> RaftNode: ...

    @property
    def storage_failure(self) -> str | None: ...

    @property
    def requests(self) -> RequestCounts: ...

    @property
    def http(self) -> HttpServer | None: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def access(self) -> AccessPolicy: ...

    @property
    def watches(self) -> WatchHub: ...

    @property
    def follower_reads(self) -> FollowerReadCounts: ...

    @property
    def idle_poller(self) -> IdlePoller | None: ...

    def role_name(self) -> str: ...


class _NodeCollector(Collector):
    def __init__(self, server: MetricsSource) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        node = server.node
        log = node.log
        for name, help_text, value in (
            ("raft_term", "Current term", node.term),
            (
                "raft_role",
                "Role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader, 4 learner",
                ROLE_CODES.get(server.role_name(), -1),
            ),
            ("raft_commit_index", "Commit index", log.committed),
            ("raft_applied_index", "Last applied index", log.applied),
            ("raft_last_log_index", "Last log index", log.last_index),
            ("raft_snapshot_index", "Index of the newest snapshot", log.snapshot_index),
            (
                "raft_log_entries",
                "Entries in the log since the snapshot",
                log.last_index - log.snapshot_index,
            ),
            (
                "raft_storage_failed",
                "1 when the disk failed and writes are refused",
                int(server.storage_failure is not None),
            ),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)
        yield CounterMetricFamily(
            "raft_proposals", "Client commands proposed", value=server.requests.proposals_total
        )
        yield CounterMetricFamily(
            "raft_snapshot_walks_moved",
            "Walks of snapshot key maps in this process that found too little idle CPU in time"
            " and were finished at ordinary priority (kv/snapshot_native.c)",
            value=walks_moved(),
        )
        yield CounterMetricFamily(
            "raft_commands_failed",
            "Committed commands the state machine raised on (each one's result, on every node)",
            value=server.requests.commands_failed_total,
        )
        yield SummaryMetricFamily(
            "raft_write_seconds",
            "Writes proposed on this node: time from proposal to applied (the dashboard's latency)",
            count_value=server.requests.writes_applied_total,
            sum_value=server.requests.write_seconds_total,
        )
        follower_reads = server.follower_reads
        yield CounterMetricFamily(
            "raft_follower_reads",
            "Linearizable and lease reads this node, as a follower, asked the leader's read"
            " index for",
            value=follower_reads.reads_total,
        )
        yield CounterMetricFamily(
            "raft_follower_read_forwards",
            "Read-index requests sent to the leader for them (each for a batch of reads)",
            value=follower_reads.forwards_total,
        )
        poller = server.idle_poller
        yield CounterMetricFamily(
            "raft_idle_poll_seconds",
            "Time the idle-priority thread kept the event loop's CPU out of halt after a Ready"
            " (server/idle_poll.py; CPU time nothing else wanted)",
            value=poller.spun_seconds if poller is not None else 0.0,
        )
        yield GaugeMetricFamily(
            "raft_requests_waiting",
            "Client writes and reads waiting to be committed, confirmed or applied",
            value=server.requests.waiting,
        )
        lag = GaugeMetricFamily(
            "raft_replication_lag_entries",
            "Leader only: entries each follower is behind the leader's last index",
            labels=["peer"],
        )
        for peer, peer_status in sorted(node.peer_status().items()):
            lag.add_metric([str(peer)], log.last_index - peer_status.match)
        yield lag
        http = server.http
        if http is not None:
            yield GaugeMetricFamily(
                "raft_http_connections", "Open client connections", value=len(http.connections)
            )
            responses = CounterMetricFamily(
                "raft_http_responses",
                "Answers on the client port, by HTTP status",
                labels=["status"],
            )
            for status, count in sorted(http.responses.items()):
                responses.add_metric([str(status)], count)
            yield responses
        yield from _watch_metrics(server.watches)
        access = server.access
        if access.enabled:
            failures = CounterMetricFamily(
                "raft_http_auth_failures",
                "Client requests refused: no token (missing), not a bearer token (malformed),"
                " an unknown token (invalid), a role too low (forbidden)",
                labels=["reason"],
            )
            for reason, count in access.failures.items():
                failures.add_metric([reason], count)
            yield failures
        if hasattr(server, "transport"):  # set once the node has started
            totals = server.transport.counters().totals()
            yield GaugeMetricFamily(
                "raft_transport_frames_dropped",
                "Frames dropped by full queues or lost links",
                value=totals.frames_dropped,
            )
            yield CounterMetricFamily(
                "raft_transport_frames_sent_from_sync_thread",
                "Frames the WAL sync thread wrote itself once their promise was durable"
                " (a follower's acknowledgements of a batch, over plain TCP)",
                value=totals.frames_sent_from_thread,
            )


def _watch_metrics(hub: WatchHub) -> Iterator[Metric]:
    yield GaugeMetricFamily("raft_watchers", "Watchers this node streams to", value=hub.watchers)
    yield CounterMetricFamily(
        "raft_watch_events_sent", "Watch events written to watchers", value=hub.events_sent_total
    )
    cut_offs = CounterMetricFamily(
        "raft_watch_cut_offs",
        "Watchers ended with an error line: too far behind (slow_watcher), or their place"
        " in the history was dropped (compacted)",
        labels=["reason"],
    )
    for reason, count in sorted(hub.cut_offs.items()):
        cut_offs.add_metric([reason], count)
    yield cut_offs
    events, size = hub.history.held
    yield GaugeMetricFamily(
        "raft_watch_history_events", "Key changes held for watchers", value=events
    )
    yield GaugeMetricFamily(
        "raft_watch_history_bytes", "Approximate bytes of the changes held", value=size
    )
    yield GaugeMetricFamily(
        "raft_watch_history_oldest_index",
        "Watchers may resume from this index on",
        value=hub.history.oldest_index,
    )


class NodeMetrics:
    def __init__(self, server: MetricsSource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.elections = Counter(
            "raft_elections", "Elections this node started", registry=self.registry
        )
        self.snapshots_taken = Counter(
            "raft_snapshots_taken", "Snapshots taken", registry=self.registry
        )
        self.snapshot_failures = Counter(
            "raft_snapshot_failures",
            "Snapshots that could not be taken (state not encodable, disk error)",
            registry=self.registry,
        )
        self.safety_violations = Counter(
            "raft_safety_violations",
            "Peer messages refused because they contradict this node's committed log",
            registry=self.registry,
        )
        self.snapshots_installed = Counter(
            "raft_snapshots_installed", "Snapshots installed from a leader", registry=self.registry
        )
        self.fsync_seconds = Histogram(
            "raft_fsync_seconds",
            "Latency of one WAL sync",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self.loop_stall_seconds = Histogram(
            "raft_loop_stall_seconds",
            "How late the ticker woke, each time it was more than a tick late (the event loop"
            " blocked, or the process paused)",
            buckets=LOOP_STALL_BUCKETS,
            registry=self.registry,
        )
        self.snapshot_seconds = Histogram(
            "raft_snapshot_seconds",
            "Time to take or install a snapshot",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(server))

    def render(self) -> bytes:
        return generate_latest(self.registry)
