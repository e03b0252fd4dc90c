"""RaftServer: one node's runtime. A ticker drives `core.tick()`, the Ready loop persists
(one fsync per Ready), sends, applies and advances, and client requests become proposals
answered when their entry is applied.

Everything runs in one asyncio event loop but the disk's work. A lone entry is fsynced on the
loop once the transport has put the Ready's leader messages on the wire; a batch in the
node's sync thread (server/sync_thread.py), and a Ready of entries alone is not waited for
(server/deferred_syncs.py): the loop goes on to the next Ready, and a follower's
acknowledgements leave from the sync thread once their entries are durable. Peer messages
and client requests that arrive meanwhile pile up into the next Ready: under load one fsync
and one AppendEntries per follower carry many requests. Snapshot encoding and writing run in
a disk thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import resource
import sys
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from raftkv.addresses import format_address
from raftkv.core import Entry, EntryKind, Membership, RaftConfig, RaftNode, Ready
from raftkv.core.messages import (
    AnyMessage,
    AppendEntries,
    Forward,
    ForwardKind,
    ForwardReply,
)
from raftkv.errors import (
    Corruption,
    InvariantViolation,
    NotLeader,
    RaftError,
    SafetyViolation,
    StorageError,
)
from raftkv.kv import KVStore, StateMachine
from raftkv.server.auth import AccessPolicy
from raftkv.server.backup import BackupMaker
from raftkv.server.dashboard import Dashboard, Timeline, ask_peer_status
from raftkv.server.follower_reads import FollowerReads
from raftkv.server.forwarding import Forwarding
from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import CONNECTIONS_MAX, HttpServer
from raftkv.server.idle_poll import IdlePoller, polls_after
from raftkv.server.lease_duties import LeaseDuties
from raftkv.server.lessor import lease_ttl_min_seconds
from raftkv.server.logs import trace_line
from raftkv.server.members import MembershipOperations
from raftkv.server.metrics import NodeMetrics
from raftkv.server.node_report import NodeReport
from raftkv.server.options import (
    HASH_WINDOW_ENTRIES,
    NodeOptions,
    new_cluster_id,
)
from raftkv.server.peer_book import PeerBook
from raftkv.server.ready_durability import ReadyDurability
from raftkv.server.requests import RequestFailed, RequestTracker
from raftkv.server.snapshots import SnapshotTaker
from raftkv.server.stalls import StallReporter
from raftkv.server.sync_thread import SyncThread
from raftkv.server.thread_scheduling import RoleScheduling
from raftkv.server.watches import WatchHub
from raftkv.server.write_stages import WriteStages
from raftkv.storage import open_data_dir
from raftkv.storage.base import LogStore, SnapshotStore, StableStore, Stores
from raftkv.storage.datadir import DataDir
from raftkv.storage.file_log import FileStorage, Pending
from raftkv.storage.filesystem import OS_FILE_SYSTEM, FileSystem
from raftkv.storage.recovery import recover
from raftkv.tls import client_port_context, peer_tls, url_scheme
from raftkv.transport.base import Transport, TransportFactory
from raftkv.transport.handshake import LeaseSettings
from raftkv.transport.tcp import TcpTransport

T = TypeVar("T")

logger = logging.getLogger("raftkv.node")

# File descriptors kept for everything but client connections: WAL segments, snapshot
# files, the data dir lock, listening sockets, peer connections in and out.
FDS_RESERVED = 256


def _client_connections_max() -> int:
    """As many client connections as the file-descriptor limit allows, keeping room for
    the WAL, snapshots and peer connections, and at most CONNECTIONS_MAX."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTIONS_MAX
    return max(16, min(CONNECTIONS_MAX, soft - FDS_RESERVED))


class RaftServer:
    """Open with `await start()`, stop with `await stop()`. See NodeOptions for settings.

    Seams passed in (hashicorp/raft's `NewRaft(conf, fsm, logs, stable, snaps, trans)`):
    the state machine; `stores`, the log, stable and snapshot stores (by default the WAL and
    snapshot files in the data dir, which the server opens and closes; stores passed in
    belong to the caller: the server syncs them but never closes them); `transport_factory`,
    called once the node knows its identity (`TcpTransport` by default; the simulator
    passes in-memory ones on a faulty hub); `disk_executor`, where snapshot encoding and
    saving run (a one-thread pool by default; the simulator's event loop runs executor work
    itself); `sync_executor`, where the WAL is synced under load (a thread of its own by
    default, `SyncThread`, so that a sync never waits behind a snapshot being encoded; stores
    passed in, whose `sync` may not be safe beside their reads, are synced on the loop
    unless one is given); `filesystem`, under the data dir and the file stores in it (the
    real one by default; the simulator's simulated disk). The data dir is opened either
    way: it holds the node's identity, its lock and the peers file. Time is the event
    loop's (`loop.time()`, which the simulator's loop makes virtual). Without
    `listen_for_clients` no client port is opened, and requests go to `api.handle()`
    directly (the simulator's clients do).

    The helpers (requests, snapshots, members, metrics, the API) each see the server
    through a Protocol of their own that names what they use.
    """

    def __init__(
        self,
        options: NodeOptions,
        state_machine: StateMachine | None = None,
        *,
        transport_factory: TransportFactory = TcpTransport,
        disk_executor: Executor | None = None,
        sync_executor: Executor | None = None,
        filesystem: FileSystem = OS_FILE_SYSTEM,
        listen_for_clients: bool = True,
        stores: Stores | None = None,
    ) -> None:
        self.options = options
        self._filesystem = filesystem
        self._given_stores = stores
        # The WAL this server opened itself (no `stores` given): closed at stop.
        self._own_wal: FileStorage | None = None
        self._listen_for_clients = listen_for_clients
        self.id = options.node_id
        self.state_machine: StateMachine = state_machine or KVStore()
        # The key changes the store applies, kept for watchers (`GET /v1/watch`), from the
        # state it holds now: a snapshot restored at start-up restarts the history there, and
        # the entries replayed after it feed it. Another state machine has no keys to watch.
        store = self.state_machine
        if isinstance(store, KVStore):
            self.watches = WatchHub(options.watch, store.applied_index, store.observer)
            store.observer = self.watches
        else:
            self.watches = WatchHub(options.watch)
        self.metrics = NodeMetrics(self)
        # Warnings and histograms of the loop standing still and of slow WAL syncs.
        self.stalls = StallReporter(
            self.metrics.loop_stall_seconds.observe, self.metrics.fsync_seconds.observe
        )
        self.write_stages = WriteStages(self.metrics.registry)
        self.requests = RequestTracker(
            self, options.request_timeout_seconds, stages=self.write_stages
        )
        self.node: RaftNode
        # The log store keeps its historical name: the simulator wraps `storage.sync`.
        self.storage: LogStore
        self.stable_store: StableStore
        self.snapshot_store: SnapshotStore
        self.transport: Transport
        self._transport_factory = transport_factory
        self.data_dir: DataDir | None = None
        self.cluster_id = ""
        self.storage_failure: str | None = None
        # Where the peers are, and this node's own membership (`peers.removed`).
        self.peers = PeerBook(self.id)
        self.client_addresses: dict[int, str] = {}
        self.applied_hashes: OrderedDict[int, str] = OrderedDict()
        # The index the state machine reflects. Not `node.log.applied`: a received snapshot
        # moves that at once, while the state machine is restored only at the next Ready.
        # Reads, applied-index waits and snapshots go by what the state machine holds.
        self.applied_index = 0
        # The highest `leader_commit` a leader sent this node: a follower still receiving
        # entries commits only what it holds, so its own commit index hides how far behind
        # it is (readiness). Any leader's commit index is committed, so this never overstates.
        self.leader_commit_seen = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.disk_executor: Executor = disk_executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"disk-{self.id}"
        )
        if sync_executor is None and stores is None:
            sync_executor = SyncThread(f"sync-{self.id}")
        self.sync_executor = sync_executor
        # Where and when each Ready's writes become durable (server/ready_durability.py).
        self.durability = ReadyDurability(
            sync_executor,
            options.sync_thread_min_entries,
            self.stalls,
            self.write_stages,
            stable_index=lambda: self.node.log.stable,
            frame=lambda messages: self.transport.frame(messages),
            send_framed=lambda framed: self.transport.send_framed(framed),
            persisted=self._entries_persisted,
            failed=self._sync_failed,
        )
        self._stopping = False
        self._stopped = asyncio.Event()
        self._last_tick_time = 0.0
        self._lease_blackout_ticks = 0
        self.snapshots = SnapshotTaker(
            self,
            self.metrics,
            self.disk_executor,
            snapshot_entries=options.snapshot_entries,
            log_fraction=options.snapshot_log_fraction,
            fraction_from_bytes=options.snapshot_fraction_from_bytes,
            trailing_entries_max=options.snapshot_trailing_entries,
        )
        self.members = MembershipOperations(
            self,
            self.requests.wait_entry,
            request_timeout_seconds=options.request_timeout_seconds,
            tick_seconds=options.tick_ms / 1000,
        )
        self.backups = BackupMaker(self)
        # What followers ask of this node as leader, and what it asks of the leader, for the
        # embedding API's callers (server/forwarding.py).
        self.forwarding = Forwarding(self)
        # Linearizable and lease reads on a follower: the leader's read index, asked for a
        # batch of reads at a time (server/follower_reads.py; `--no-follower-reads`: 421).
        self.follower_reads = FollowerReads(
            self, self.forwarding, self.requests, options.request_timeout_seconds
        )
        # Called with (role, leader_id) after every change of either (the embedding API's
        # events); on the loop, inside the Ready loop: a listener must not block.
        self.soft_state_listeners: list[Callable[[str, int | None], None]] = []
        # The loop's thread yields to the leader while this node follows (options).
        self.role_scheduling = RoleScheduling() if options.follower_batch_scheduling else None
        if self.role_scheduling is not None:
            self.soft_state_listeners.append(self.role_scheduling)
        # The loop's CPU kept out of halt for a window after a low-load Ready (idle_poll.py).
        self.idle_poller = IdlePoller(options.idle_poll_us) if options.idle_poll_us > 0 else None
        # Role, leader and membership changes, and the live view built from every node's
        # (`GET /ui`, server/dashboard.py): gathering runs only while someone watches.
        self.timeline = Timeline()
        self.report = NodeReport(self)
        self.dashboard = Dashboard(
            self.report,
            lambda peer, timeout: ask_peer_status(self.forwarding.ask, peer, timeout),
        )
        self.http: HttpServer | None = None
        self.api: ClientApi | None = None
        # Lease deadlines and expiries, kept by the leader (server/lease_duties.py); None for
        # a state machine other than the KV store, which has no leases.
        self.leases: LeaseDuties | None = None
        self.lease_ttl_min_seconds = lease_ttl_min_seconds(options.election_timeout_ms[1])

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        options = self.options
        self._open_storage()
        self._build_node()
        self.peers.forget_removed(self.node.membership, self.node.membership_index)
        self.applied_index = self.node.log.applied
        if isinstance(self.state_machine, KVStore):
            self.leases = LeaseDuties(
                self.state_machine,
                asyncio.get_running_loop().time,
                self.node.propose,
                election_timeout_seconds=options.election_timeout_ms[1] / 1000,
                tick_ms=options.tick_ms,
                registry=self.metrics.registry,
            )
        transport_factory = self._transport_factory
        if options.tls.peer is not None and transport_factory is TcpTransport:
            transport_factory = functools.partial(TcpTransport, peer_tls=peer_tls(options.tls.peer))
        self.transport = transport_factory(
            node_id=self.id,
            cluster_id=self.cluster_id,
            # Peers compare these and refuse a mismatch: the lease assumes all nodes share them.
            lease_settings=LeaseSettings.of(
                tick_ms=options.tick_ms,
                election_timeout_ticks_min=self.node.config.election_timeout_ticks,
                check_quorum=self.node.config.check_quorum,
            ),
            listen_host=options.listen[0],
            listen_port=options.listen[1],
            on_message=self._on_message,
            on_peer_state=self._on_peer_state,
            on_trace=self._trace if options.trace_rpc else None,
            client_address=format_address(options.advertised_client_address),
            accept_unknown_peers=False,
            rng=random.Random(options.seed),
            on_cluster_id=self._record_learnt_cluster_id,
            on_removed_by=self.peers.refused_as_removed,
            member_since=self.peers.member_since,
        )
        if options.advertise_peer is not None:
            self.transport.set_advertised_address(*options.advertise_peer)
        self.peers.attach(self.transport)
        await self.transport.start()
        if self.role_scheduling is not None:
            self.role_scheduling(self.role_name())  # (on the loop's thread, as later calls)
        if self.idle_poller is not None:
            self.idle_poller.start()
        self._tasks = [
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._ready_loop(), name="ready-loop"),
            asyncio.create_task(self.members.promote_caught_up_learners(), name="promotion"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._watch)
        # The KV routes make sense only for the KV store's commands: a custom state machine
        # would be handed commands it cannot decode.
        self.api = ClientApi(
            self,
            options.value_bytes_max,
            key_value_routes=isinstance(self.state_machine, KVStore),
            ready_lag_entries_max=options.ready_lag_entries_max,
            access=options.access,
            url_scheme=url_scheme(options.tls.https),
        )
        if self._listen_for_clients:
            self.http = HttpServer(
                self.api.handle,
                body_bytes_max=self.api.body_bytes_max,
                max_connections=_client_connections_max(),
            )
            client_tls = options.tls.client_port
            await self.http.start(
                *options.client_listen,
                ssl_context=client_port_context(client_tls) if client_tls else None,
                client_certificates_required=client_tls is not None and client_tls.ca is not None,
            )
        self._wake.set()
        logger.info(
            "started: cluster %s, peers on %s, clients on %s, term %d, log %d..%d, applied %d",
            self.cluster_id,
            format_address(self.transport.listen_address),
            format_address(options.client_listen),
            self.node.term,
            self.node.log.first_index,
            self.node.log.last_index,
            self.node.log.applied,
        )

    def _open_storage(self) -> None:
        options = self.options
        cluster_id = options.cluster_id
        self.data_dir = open_data_dir(
            options.data_dir, self.id, cluster_id, filesystem=self._filesystem
        )
        if self.data_dir.cluster_id is None:
            # A new cluster's id is random, so that two clusters never take each other's
            # nodes for their own (one derived from the member ids was the same for every
            # cluster of nodes 1, 2 and 3). One founder makes it, the one with the lowest id;
            # the others learn it from the first member that knows it (the transport's
            # handshake) and record it then (`_record_learnt_cluster_id`).
            founders = {self.id, *options.peers}
            if cluster_id is None and (
                options.single_node or min(founders) == self.id < max(founders)
            ):
                cluster_id = new_cluster_id()
            if cluster_id is not None:
                self.data_dir.record_cluster_id(cluster_id)
        self.cluster_id = self.data_dir.cluster_id or ""
        self.peers.open(self.data_dir, options.peers, options.advertised_peer_address)
        stores = self._given_stores
        if stores is None:
            # One WAL holds the log and the hard state, so a Ready costs one fsync.
            # Obsolete segments are deleted in the disk thread, not in the loop's sync.
            self._own_wal = self.data_dir.open_storage(
                deleter=self._in_disk_thread, segment_bytes_max=options.wal_segment_bytes
            )
            stores = Stores(self._own_wal, self._own_wal, self.data_dir.open_snapshots())
        self.storage = stores.log
        self.stable_store = stores.stable
        self.snapshot_store = stores.snapshots
        self.durability.open(stores.log, stores.stable)

    def _in_disk_thread(self, job: Callable[[], None]) -> Pending:
        """Run `job` in the disk thread, through the loop (the simulator's runs it itself,
        deterministically, and drops it with the process when the node crashes). The WAL
        asks from its sync, which runs on the loop or in the sync thread; there, with no
        loop in that thread, the job goes to the same pool directly (a thread only a real
        loop has: the simulator's syncs all run on its loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self.disk_executor.submit(job)
        return loop.run_in_executor(self.disk_executor, job)

    def _record_learnt_cluster_id(self, cluster_id: str) -> None:
        """Keep the cluster id a member told this founding member, before anything else
        from it is taken in: a restart must present the same id."""
        assert self.data_dir is not None
        self.data_dir.record_cluster_id(cluster_id)
        self.cluster_id = cluster_id

    def _build_node(self) -> None:
        options = self.options
        timeout_low, timeout_high = options.election_timeout_ticks
        config = RaftConfig(
            node_id=self.id,
            election_timeout_ticks=timeout_low,
            election_timeout_ticks_max=timeout_high if timeout_high > timeout_low else None,
            heartbeat_ticks=options.heartbeat_ticks,
            pre_vote=options.pre_vote,
            check_quorum=options.check_quorum,
            uncommitted_bytes_max=options.uncommitted_bytes_max,
            read_rounds_inflight_max=options.read_rounds_inflight_max,
            defer_commit_notices=options.defer_commit_notices,
            quorum_first=options.quorum_first,
        )
        # Every rule of what a node restarts from lives in recover(); it raises Corruption
        # (exit code 4) rather than start without entries this node stored.
        recovered = recover(self.storage, self.stable_store, self.snapshot_store)
        for warning in recovered.warnings:
            logger.warning("recovery: %s", warning)
        if recovered.snapshot is not None:
            meta, data = recovered.snapshot
            try:
                self.state_machine.restore(data)
            except ValueError as error:
                # The file's checksum held, so the bytes are what was written: a snapshot of
                # another state machine, or of a newer format. Starting without it would
                # lose every entry it covers; refuse, as for any unreadable stored state.
                raise Corruption(
                    f"the snapshot at index {meta.index} does not load into this node's "
                    f"state machine ({type(self.state_machine).__name__}): {error}; it may "
                    "have been written by a newer version of raftkv"
                ) from error
            logger.info("loaded snapshot at index %d term %d", meta.index, meta.term)
            self.peers.snapshot_loaded(meta.membership, meta.index)
            self.snapshots.loaded(len(data))
        self.node = RaftNode(
            config,
            random.Random(options.seed),
            hard_state=recovered.hard_state,
            entries=recovered.entries,
            snapshot=recovered.snapshot,
            applied=recovered.applied_index,
        )
        brand_new = self.node.log.last_index == 0 and self.node.term == 0
        if brand_new and (options.peers or options.single_node) and options.join is None:
            members = frozenset({self.id, *options.peers})
            self.node.bootstrap(Membership(voters=members))
            logger.info("bootstrapping a new cluster with members %s", sorted(members))

    async def shutdown_gracefully(self) -> None:
        """SIGTERM: a leader first hands leadership to its most caught-up voter, so the
        cluster does not wait out an election timeout (thesis §3.10); then stop."""
        node = self.node
        if node.role == "leader" and self.storage_failure is None:
            progress = node.peer_status()
            voters = [p for p in node.membership.all_voters if p != self.id and p in progress]
            if voters:
                best = max(
                    voters, key=lambda peer: (progress[peer].active, progress[peer].match, -peer)
                )
                timeout_seconds = self.options.election_timeout_ms[1] / 1000
                try:
                    await self.members.transfer_leadership(best, timeout_seconds)
                    logger.info("handed leadership to node%d before stopping", best)
                except RaftError as error:
                    logger.info("leadership transfer before stopping failed: %s", error)
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, flush what is pending, close everything."""
        if self._stopping:
            return
        self._stopping = True
        self.peers.close()
        if self.http is not None:
            self.http.stop_listening()
        # Waiting requests get their answer (an error) before the connections close.
        self.requests.fail_all("node shutting down")
        self.follower_reads.close()
        self.watches.close()  # their clients resume on another node
        if self.http is not None:
            await self.http.close(grace_seconds=1.0)
        self.snapshots.cancel()
        self.dashboard.close()
        self.forwarding.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.transport.close()
        if self.sync_executor is not None:
            self.sync_executor.shutdown(wait=True)  # syncs still queued end before the last
        with contextlib.suppress(StorageError):
            if self.storage_failure is None:
                self.durability.sync_stores()
        self._close_own_stores()
        self.disk_executor.shutdown(wait=True)
        if self.data_dir is not None:
            self.data_dir.close()
        if self.role_scheduling is not None:
            self.role_scheduling.restore()
        if self.idle_poller is not None:
            self.idle_poller.stop()
        self._stopped.set()
        logger.info("stopped")

    def _entries_persisted(self, index: int, term: int, seconds: float, written_at: float) -> None:
        """A sync the Ready loop did not wait for ended (DeferredSyncs), its messages
        written (by the sync thread at `written_at`, else by the loop just now)."""
        if self._stopping or self.storage_failure is not None:
            return
        self.stalls.synced(seconds)
        self.write_stages.synced(index)
        self.write_stages.acknowledged(index, written_at)
        self.node.entries_persisted(index, term)
        self._wake.set()

    def _sync_failed(self, error: BaseException) -> None:
        if self._stopping:
            return
        if isinstance(error, StorageError):
            self._stop_participating(str(error))
        else:
            logger.error("the WAL sync failed", exc_info=error)
            self._stop_participating("internal error syncing the WAL")

    def _close_own_stores(self) -> None:
        """Close the WAL if this server opened it (stores passed in are the caller's)."""
        if self._own_wal is not None:
            self._own_wal.close()

    # --- inputs -------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def _on_message(self, message: AnyMessage) -> None:
        if self.storage_failure is not None:
            return
        if isinstance(message, Forward | ForwardReply):
            self.forwarding.received(message)  # not Raft: never the core's
            return
        try:
            self.node.step(message)
        except SafetyViolation as error:
            # Checked before anything changed: refuse the message, keep our committed log,
            # and say so as loudly as we can (a peer or this node's storage is damaged).
            self.metrics.safety_violations.inc()
            logger.critical(
                "SAFETY VIOLATION, message from node%d refused: %s", message.sender, error
            )
            return
        except Exception:
            # Our own invariant broke while stepping: nothing more can be trusted.
            logger.exception("internal error stepping a message from node%d", message.sender)
            self._stop_participating("internal error stepping a message")
            return
        if type(message) is AppendEntries:
            if (
                message.leader_commit > self.leader_commit_seen
                and message.term == self.node.term  # from the leader of this node's term
            ):
                self.leader_commit_seen = message.leader_commit
            if message.entries:
                self.write_stages.append_arrived(message.entries[-1].index)
        self._wake.set()

    def _on_peer_state(self, peer: int, connected: bool) -> None:
        logger.info("peer node%d %s", peer, "connected" if connected else "disconnected")
        address = self.transport.peer_client_address(peer)
        if address:
            self.client_addresses[peer] = address

    def _trace(self, direction: str, message: AnyMessage) -> None:
        sys.stdout.write(trace_line(direction, message) + "\n")
        sys.stdout.flush()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.options.tick_ms / 1000
        next_tick = loop.time()
        while True:
            next_tick += interval
            delay = next_tick - loop.time()
            if delay < -interval:
                self.stalls.loop_stalled(-delay)
                # The process was paused or the loop blocked. Do not fire a burst of ticks
                # (it would look like a silent leader and trigger needless elections); resume
                # from now. But logical time no longer tracks real time, so the leader lease
                # (counted in ticks) cannot be trusted until a full election timeout of
                # normal ticking has passed.
                next_tick = loop.time()
                delay = 0.0
                self._lease_blackout_ticks = self.node.config.election_timeout_ticks * 2
            await asyncio.sleep(max(0.0, delay))
            self._last_tick_time = loop.time()
            self.requests.expire(self._last_tick_time)
            self._lease_blackout_ticks = max(0, self._lease_blackout_ticks - 1)
            if self.storage_failure is None:
                try:
                    if self.leases is not None:
                        self.leases.tick()
                    self.node.tick()
                except Exception:
                    # The ticker itself goes on: it also times out waiting requests.
                    logger.exception("internal error in a tick")
                    self._stop_participating("internal error in the ticker")
                self._wake.set()

    def send(self, message: AnyMessage) -> None:
        self.transport.send(message)

    def lease_usable(self) -> bool:
        """The core's lease, guarded against a paused process: its ticks must be on time.
        A node that stopped taking part claims none (its core still says leader)."""
        if self.storage_failure is not None:
            return False
        interval = self.options.tick_ms / 1000
        on_time = asyncio.get_running_loop().time() - self._last_tick_time < 2 * interval
        return on_time and self._lease_blackout_ticks == 0 and self.node.lease_valid()

    # --- the Ready loop -----------------------------------------------------------------
    async def _ready_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.storage_failure is None and self.node.has_ready():
                    await self._handle_ready(self.node.ready())
        except asyncio.CancelledError:
            raise
        except StorageError as error:
            self._stop_participating(str(error))
        except Exception:
            logger.exception("the Ready loop failed; stopping the node")
            self._stop_participating("internal error in the Ready loop")

    async def _handle_ready(self, ready: Ready) -> None:
        node = self.node
        stages = self.write_stages
        stages.ready_started(ready)
        self._log_changes(ready)
        sent_first, told_after_applying = _split_for_answers(ready)
        # A Ready of one entry (a write at low load) writes its messages from this turn
        # when their links are idle, rather than waking each link's writer task and
        # yielding to it: nothing else is queued to join them in one write, and a lone
        # write's every hop is latency. Under load, the writer tasks batch a link's frames
        # of several Readies into one write (docs/ARCHITECTURE.md, session 38).
        at_once = len(ready.entries) <= 1 and len(ready.committed_entries) <= 1
        messages_queued = self._send_all(sent_first, at_once) if sent_first else False
        if ready.snapshot is not None:
            meta, data = ready.snapshot
            await self.snapshots.install(meta, data)
            # The configuration it carries is one this node never applies as an entry: a
            # follower caught up by a snapshot must learn its peers (and its own removal)
            # from it, or it refuses a new leader it has never heard of.
            self._membership_applied(meta.membership, meta.index)
        if ready.entries:
            self.storage.append(ready.entries)
        if ready.hard_state is not None:
            self.stable_store.set_hard_state(ready.hard_state)
        persisting_later = False
        if ready.must_sync:
            if messages_queued:
                await asyncio.sleep(0)  # let the transport's writers put them on the wire
            persisting_later = await self.durability.sync(ready)
        acknowledgements_queued = False
        if not persisting_later:  # (else they go with the deferred sync)
            promising = ready.messages_after_persist
            if promising and not ready.must_sync:
                promising = self.durability.promises_now(promising)
            acknowledgements_queued = self._send_all(promising, at_once)
            stages.acknowledged(ready.entries[-1].index if ready.entries else 0)
        if ready.committed_entries:
            if acknowledgements_queued:
                # A follower's acknowledgement goes on the wire before it applies: the
                # leader's commit waits for it, and nothing waits here for the apply.
                await asyncio.sleep(0)
            self._apply(ready.committed_entries)
            stages.applied()
        for message in told_after_applying:
            self.transport.send(message)
        for read_state in ready.read_states:
            self.requests.read_confirmed(read_state.request_id, read_state.index)
        if persisting_later:
            node.advance_before_persisted(ready)
        else:
            node.advance(ready)
        self.peers.newest_membership(node.membership, node.membership_index)
        if ready.soft_state is not None:
            self.members.leader_changed()
            if ready.soft_state.role != "leader":
                self.requests.leadership_lost()
            self.follower_reads.leader_changed()
            if self.leases is not None:
                self.leases.leadership(ready.soft_state.role == "leader")
            self.timeline.role_changed(self.role_name(), self.node.term, ready.soft_state.leader_id)
            for listener in self.soft_state_listeners:
                listener(ready.soft_state.role, ready.soft_state.leader_id)
        await self.snapshots.maybe_take()
        if self.idle_poller is not None and polls_after(ready, self.requests.waiting):
            self.idle_poller.arm()

    def _send_all(self, messages: list[AnyMessage], at_once: bool) -> bool:
        """Send `messages` (written at once where their links are idle, if `at_once`);
        True if any waits in a link's queue for its writer task."""
        transport = self.transport
        if not at_once:
            for message in messages:
                transport.send(message)
            return bool(messages)
        queued = False
        for message in messages:
            if not transport.send_at_once(message):
                queued = True
        return queued

    def _apply(self, entries: list[Entry]) -> None:
        state_machine = self.state_machine
        hashes = self.applied_hashes
        for entry in entries:
            result: Any = None
            failure: Exception | None = None
            if entry.kind == EntryKind.NORMAL:
                try:
                    result = state_machine.apply(entry.index, entry.data)
                except (InvariantViolation, MemoryError):
                    # A bug of ours, or this process short of memory (which another replica
                    # may not be): not the command's doing, so the node stops (the Ready loop).
                    raise
                except Exception as error:
                    # The command's result, never a node failure: every replica applies
                    # the same entry with the same deterministic code and decides the same
                    # way, a replay too. Stopping made one bad command stop every replica.
                    failure = error
                self.snapshots.note_applied_bytes(len(entry.data))
            elif entry.kind == EntryKind.MEMBERSHIP:
                self._membership_applied(Membership.decode(entry.data), entry.index)
            hashes[entry.index] = state_machine.applied_hash
            if failure is None:
                self.requests.applied(entry, result)
            else:
                self.requests.command_failed(entry, failure)
        while len(hashes) > HASH_WINDOW_ENTRIES:
            hashes.popitem(last=False)
        self.applied_index = entries[-1].index
        if self.leases is not None:
            self.leases.applied()
        self.requests.applied_through(self.applied_index)
        self.watches.applied_through(self.applied_index)

    def state_machine_restored(self, index: int) -> None:
        """The state machine was just restored from a snapshot at `index` (SnapshotTaker):
        it reflects that index now, and waits for it are over."""
        self.applied_hashes.clear()
        self.applied_hashes[index] = self.state_machine.applied_hash
        self.applied_index = index
        if self.leases is not None:
            self.leases.applied()
        self.requests.applied_through(index)
        self.watches.applied_through(index)

    def _membership_applied(self, membership: Membership, index: int) -> None:
        self.peers.membership_applied(membership, index)
        self.timeline.membership_changed(
            index, sorted(membership.members), sorted(membership.learners)
        )

    def _log_changes(self, ready: Ready) -> None:
        for event in ready.events:
            logger.info("%s", event)
            if event.startswith("became candidate"):
                self.metrics.elections.inc()
        if ready.soft_state is not None:
            leader = ready.soft_state.leader_id
            logger.info(
                "role %s, term %d, leader %s",
                ready.soft_state.role,
                self.node.term,
                f"node{leader}" if leader is not None else "unknown",
            )

    def _stop_participating(self, reason: str) -> None:
        """The disk failed, or an invariant broke: stop taking part (nothing more can be
        made durable or trusted), fail what waits, and say so. Reads of status and metrics
        go on, so an operator sees why (`storage_failure` in the status)."""
        if self.storage_failure is not None:
            return
        self.storage_failure = reason
        logger.critical("stopped taking part, refusing writes from now on: %s", reason)
        self.requests.fail_all(f"storage failed: {reason}")

    def _watch(self, task: asyncio.Task[None]) -> None:
        """A background task that ends on its own is a bug: stop loudly, never silently
        (a ticker that died once left a node answering HTTP but never ticking)."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        logger.critical("background task %s ended: %r", task.get_name(), error, exc_info=error)
        self._stop_participating(f"background task {task.get_name()} ended")

    # --- client operations --------------------------------------------------------------
    async def read(self, key: str, consistency: str) -> tuple[str | None, int]:
        """Read `key` (see `read_query`)."""
        getter = getattr(self.state_machine, "get", None)
        if getter is None:
            raise RequestFailed("this state machine does not support key reads")
        value: str | None
        value, index = await self.read_query(consistency, lambda _: getter(key))
        return value, index

    async def read_query(
        self, consistency: str, query: Callable[[Any], T], *, leader_only: bool = False
    ) -> tuple[T, int]:
        """Run `query` on the state machine: `stale` from this node's state, `lease` from the
        leader while its lease holds, otherwise (and `linearizable`) after a ReadIndex round
        (thesis §6.4). On a follower the leader's read index is asked for (a batch of reads
        at a time) and the query runs on this node's state once it has applied that index;
        unless `leader_only` (the answer needs the leader itself: a lease's time left is its
        lessor's), when a follower answers `NotLeader` but for a stale read. With the
        applied index it answered at: `query` runs synchronously once the wait is over, so
        no entry is applied in the middle of it (a range is the state at one index)."""
        if self.storage_failure is not None:
            raise RequestFailed(f"storage failed: {self.storage_failure}")
        node = self.node
        if consistency != "stale":
            if node.role != "leader":
                if leader_only or not self.options.follower_reads:
                    raise NotLeader(node.leader_id)
                kind: ForwardKind = "read_index" if consistency != "lease" else "lease_read"
                index = await self.follower_reads.read_index(kind)
            elif consistency == "lease" and self.lease_usable():
                index = node.log.committed
            else:
                index = await self.requests.read_index()
            await self.requests.wait_applied(index)
        return query(self.state_machine), self.applied_index

    async def lease_keep_alive(self, lease_id: int) -> int | None:
        """`POST /v1/lease/{id}/keepalive`: renew the lease for its TTL from now, on the
        leader only, once a read barrier confirmed it still leads and it applied everything
        committed before (a grant acknowledged by an earlier leader is then known here). The
        lease's TTL, or None if there is no such lease."""
        if self.storage_failure is not None:
            raise RequestFailed(f"storage failed: {self.storage_failure}")
        node = self.node
        if node.role != "leader" or self.leases is None:
            raise NotLeader(node.leader_id)
        index = await self.requests.read_index()
        await self.requests.wait_applied(index)
        lessor = self.leases.lessor
        if node.role != "leader" or not lessor.active:
            raise NotLeader(node.leader_id)
        return lessor.keep_alive(lease_id)

    def lease_remaining(self, lease_id: int) -> float | None:
        """Seconds the leader's lessor gives the lease; None on a follower."""
        return None if self.leases is None else self.leases.lessor.remaining(lease_id)

    async def backup(self) -> bytes:
        """`GET /v1/snapshot`: a consistent backup file of the state machine (leader only)."""
        return await self.backups.make()

    # --- queries for the API ------------------------------------------------------------
    def leader_client_address(self, leader_id: int | None) -> str | None:
        if leader_id is None:
            return None
        if leader_id == self.id:
            return format_address(self.options.advertised_client_address)
        learned = self.transport.peer_client_address(leader_id) or self.client_addresses.get(
            leader_id
        )
        if learned:
            return learned
        peer = self.peers.addresses.get(leader_id)
        if peer is not None and peer[1] >= 9000:
            # The default layout: clients on 8000+N when peers are on 9000+N.
            return format_address((peer[0], peer[1] - 1000))
        return None

    @property
    def access(self) -> AccessPolicy:
        """Who may call what on the client port (its refusals are counted in metrics)."""
        return self.options.access

    def role_name(self) -> str:
        node = self.node
        if node.role == "follower" and not node.membership.is_voter(self.id):
            return "learner"
        return node.role.value


def _split_for_answers(ready: Ready) -> tuple[list[AnyMessage], list[AnyMessage]]:
    """The Ready's messages sent before it persists and applies, and those that wait until
    its commands are applied: the AppendEntries without entries (a commit index, a
    heartbeat), when nothing is to be persisted and no configuration is applied. Then the
    clients whose writes it commits are answered before the followers are told: each send
    wakes a peer (25-45 µs here, docs/ARCHITECTURE.md), and a message may always leave
    later. Messages with entries (a follower quorum-first replication left out, caught up at
    the tick that also tells the others the commit) still leave first: a follower's sync
    waits for them."""
    messages = ready.messages
    if ready.must_sync or not ready.committed_entries or not messages:
        return messages, []
    if not all(entry.kind == EntryKind.NORMAL for entry in ready.committed_entries):
        return messages, []
    first: list[AnyMessage] = []
    after: list[AnyMessage] = []
    for message in messages:
        if type(message) is AppendEntries and not message.entries:
            after.append(message)
        else:
            first.append(message)
    return first, after
