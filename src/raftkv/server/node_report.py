"""What a node says of itself: `GET /v1/status`, the facts `GET /readyz` decides from,
and its own part of the dashboard (`GET /ui`), which peers also ask it for over the peer
link (server/forwarding.py). The one place these read the server's parts: the Ready loop
(server/runtime.py) never reads them, and they never change the node."""

from __future__ import annotations

import json
from typing import Any, Protocol

from raftkv.core import RaftNode
from raftkv.kv import StateMachine
from raftkv.server.dashboard import LOG_TAIL_ENTRIES, Timeline
from raftkv.server.health import HealthFacts
from raftkv.server.peer_book import PeerBook
from raftkv.server.requests import RequestTracker
from raftkv.transport.base import Transport


class ReportedServer(Protocol):
    """What the report reads of the node (`RaftServer`); the core, the transport and the
    state machine exist only once the node has started."""

    @property
    def id(self) -> int: ...

    @property
    def node(self) -> RaftNode: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def state_machine(self) -> StateMachine: ...

    @property
    def requests(self) -> RequestTracker: ...

    @property
    def timeline(self) -> Timeline: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def peers(self) -> PeerBook: ...

    @property
    def storage_failure(self) -> str | None: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def leader_commit_seen(self) -> int:
        """The highest commit index a leader told this node of."""

    def role_name(self) -> str: ...


class NodeReport:
    def __init__(self, server: ReportedServer) -> None:
        self._server = server

    @property
    def id(self) -> int:
        return self._server.id

    def health_facts(self) -> HealthFacts:
        """What `GET /readyz` decides from: the leader heard from within an election
        timeout (this node, when it leads), storage, membership and how far behind the
        commit index it knows this node has applied."""
        server = self._server
        node = server.node
        leader = node.leader_id
        silent = node.election_elapsed >= node.config.election_timeout_ticks
        if leader is not None and leader != server.id and silent:
            leader = None
        return HealthFacts(
            leader_id=leader,
            storage_failure=server.storage_failure,
            member=server.id in node.membership.members,
            removed=server.peers.removed.is_set(),
            commit_index=max(node.log.committed, server.leader_commit_seen),
            applied_index=server.applied_index,
        )

    def status(self) -> dict[str, Any]:
        """`GET /v1/status` (SPEC §2)."""
        server = self._server
        node = server.node
        log = node.log
        membership = node.membership
        return {
            "id": server.id,
            "role": server.role_name(),
            "term": node.term,
            "leader": node.leader_id,
            "commit_index": log.committed,
            "last_applied": log.applied,
            "last_log_index": log.last_index,
            "last_log_term": log.last_term,
            "snapshot_index": node.snapshot[0].index if node.snapshot else 0,
            "log_first_index": log.first_index,
            "log_entries": log.last_index - log.snapshot_index,
            "members": sorted(membership.members),
            "voters": sorted(membership.all_voters),
            "learners": sorted(membership.learners),
            "applied_hash": server.state_machine.applied_hash,
            "cluster_id": server.cluster_id,
            "storage_failure": server.storage_failure,
            "peers_connected": sorted(
                peer for peer in server.peers.addresses if server.transport.is_connected(peer)
            ),
            # The removed nodes this one still dials to tell them so: id -> removal index.
            "removal_notices": {
                str(peer): removed_at
                for peer, (_address, removed_at) in sorted(server.peers.removal_notices.items())
            },
        }

    # --- the dashboard (server/dashboard.py's DashboardSource) ---------------------------
    def dashboard_report_dict(self) -> dict[str, Any]:
        """This node as the dashboard shows it: its status, the (index, term) of its last
        log entries, its timeline, its write counters and, leading, each peer's progress."""
        server = self._server
        node = server.node
        log = node.log
        tail_from = max(log.first_index, log.last_index - LOG_TAIL_ENTRIES + 1)
        tail = [[index, log.term(index) or 0] for index in range(tail_from, log.last_index + 1)]
        last = log.last_index
        progress = [
            {
                "id": peer,
                "match": peer_status.match,
                "next": peer_status.next,
                "state": peer_status.state,
                "active": peer_status.active,
                "lag": max(0, last - peer_status.match),
            }
            for peer, peer_status in sorted(node.peer_status().items())
        ]
        requests = server.requests
        return {
            **self.status(),
            "log_tail": tail,
            "progress": progress,
            "timeline": server.timeline.events(),
            "counters": {
                "proposals": requests.proposals_total,
                "writes": requests.writes_applied_total,
                "write_seconds": requests.write_seconds_total,
            },
        }

    def dashboard_report(self) -> bytes:
        """The same as JSON: a peer's `status` request over the peer link."""
        return json.dumps(self.dashboard_report_dict(), separators=(",", ":")).encode()

    def dashboard_peers(self) -> list[int]:
        server = self._server
        peers = set(server.node.membership.members) | set(server.peers.addresses)
        peers.discard(server.id)
        return sorted(peers)

    def peer_connected(self, peer: int) -> bool:
        return self._server.transport.is_connected(peer)
