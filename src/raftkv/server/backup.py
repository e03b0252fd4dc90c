"""Making a backup on the leader (`GET /v1/snapshot`, an admin operation): a consistent copy
of the state machine, in the backup file format (storage/backup_file.py).

Consistent means it holds every write acknowledged before the request: the leader first
confirms with a ReadIndex round that it still leads (as a linearizable read does, thesis
§6.4), waits until its state machine has applied that index, and only then copies the
state. The copy is labelled with the index the state machine holds at that moment (at or
after the barrier), its term and the configuration in force there, as a snapshot would be.
The state is taken on the loop (`prepare_snapshot`: the KV store freezes its key map,
copying nothing then, kv/key_map.py); encoding, hashing and framing run in the disk
thread, as for snapshots (server/snapshots.py), so a large state does not stall the node.
"""

from __future__ import annotations

import asyncio
import datetime
from concurrent.futures import Executor
from typing import Protocol

from raftkv.core import RaftNode, SnapshotMeta
from raftkv.errors import ClientError, NotLeader
from raftkv.kv import StateMachine
from raftkv.server.requests import RequestFailed
from raftkv.server.snapshots import snapshot_encoder
from raftkv.storage.backup_file import encode_backup


class ReadBarrier(Protocol):
    """The linearizable-read machinery a backup waits on (`RequestTracker`)."""

    async def read_index(self) -> int: ...

    async def wait_applied(self, index: int) -> None: ...


class BackupHost(Protocol):
    """What making a backup needs of the node (`RaftServer`)."""

    @property
    def node(self) -> RaftNode: ...

    @property
    def requests(self) -> ReadBarrier: ...

    @property
    def state_machine(self) -> StateMachine: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def storage_failure(self) -> str | None: ...

    @property
    def disk_executor(self) -> Executor: ...


def state_machine_kind(state_machine: object) -> str:
    """What a state machine's snapshots are snapshots of: its `snapshot_kind` ("kv" for the
    key-value store, "objects" for the embedding API's), else its class's full name."""
    kind = getattr(state_machine, "snapshot_kind", None)
    if isinstance(kind, str) and kind:
        return kind
    cls = type(state_machine)
    return f"{cls.__module__}.{cls.__qualname__}"


class BackupBusy(ClientError):
    """Another backup is being made on this node: retry (503 `overloaded`)."""

    code = "overloaded"


class BackupMaker:
    """Makes one backup at a time: each holds a whole encoded copy of the state until it is
    sent, so concurrent requests could otherwise hold as many copies."""

    def __init__(self, host: BackupHost) -> None:
        self._host = host
        self._busy = False

    async def make(self) -> bytes:
        """The backup file's bytes. `NotLeader` on a follower (the client follows the
        hint); `Timeout` when leadership is not confirmed in time; `BackupBusy`."""
        if self._busy:
            raise BackupBusy("a backup is being made on this node; retry when it is done")
        self._busy = True
        try:
            return await _make_backup(self._host)
        finally:
            self._busy = False


async def _make_backup(host: BackupHost) -> bytes:
    if host.storage_failure is not None:
        raise RequestFailed(f"storage failed: {host.storage_failure}")
    node = host.node
    if node.role != "leader":
        raise NotLeader(node.leader_id)
    barrier = await host.requests.read_index()
    await host.requests.wait_applied(barrier)
    # From here to `snapshot_encoder` nothing awaits: the index, the term, the configuration
    # and the copy of the state are of one moment.
    index = host.applied_index
    term = node.log.term(index)
    if term is None:
        # The log no longer knows the entry the state machine stands at (a snapshot from
        # another leader being installed): this node is not leading any more.
        raise RequestFailed("the log moved on while the backup was prepared; retry")
    meta = SnapshotMeta(index, term, node.membership_at(index))
    encode = snapshot_encoder(host.state_machine)
    kind = state_machine_kind(host.state_machine)
    cluster_id = host.cluster_id
    created_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def build() -> bytes:
        return encode_backup(cluster_id, meta, kind, encode(), created_at)

    return await asyncio.get_running_loop().run_in_executor(host.disk_executor, build)
