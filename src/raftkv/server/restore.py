"""Seeding a new cluster's data dir from a backup (`raft-node restore`, docs/operations.md
"Backup and restore").

The data dir is written with the stores a node runs on (the data dir's meta.json, the
snapshot store, the WAL, peers.json), so start-up recovery (storage/recovery.py) reads it
like any node's: the backup's state as a snapshot at the backup's index and term, an empty
log after it, and a hard state of that term, no vote, committed through that index.

What is the new cluster's, not the backup's:
- the configuration: the voters named by the restore (this node and its peers), with their
  peer addresses; the backup's members were another cluster's machines.
- the cluster id: left unset unless one is given, so the node takes one at its first start
  as a bootstrapping founder does. Copying the origin's id would let the new nodes talk to
  any surviving node of the old cluster, and mix two logs.

It is built in `<data dir>.restoring` and renamed into place once complete and durable: a
restore cut short leaves no data dir a node would start from.
"""

from __future__ import annotations

import os

from raftkv.addresses import format_address
from raftkv.core import Membership, SnapshotMeta
from raftkv.core.messages import HardState
from raftkv.kv import StateMachine
from raftkv.server.backup import state_machine_kind
from raftkv.server.peers_file import save_peer_addresses
from raftkv.storage import open_data_dir
from raftkv.storage.backup_file import Backup
from raftkv.storage.file_io import ensure_directory
from raftkv.storage.filesystem import OS_FILE_SYSTEM

RESTORING_SUFFIX = ".restoring"


class RestoreRefused(Exception):
    """The restore was not done; the message says why. The data dir was not touched."""


def restore_data_dir(
    backup: Backup,
    data_dir: str | os.PathLike[str],
    node_id: int,
    peer_addresses: dict[int, tuple[str, int]],
    *,
    state_machine: StateMachine,
    cluster_id: str | None = None,
) -> SnapshotMeta:
    """Seed `data_dir` (absent or empty) for node `node_id` of a new cluster whose voters are
    the keys of `peer_addresses` (this node's own peer address included) from `backup`.
    `state_machine` is what the node will run: the backup must be of its kind and restore
    into it. Returns the snapshot installed."""
    path = os.path.abspath(os.fspath(data_dir))
    header = backup.header
    if node_id <= 0:
        raise RestoreRefused(f"the node id must be a positive integer, not {node_id}")
    if node_id not in peer_addresses:
        raise RestoreRefused(f"node {node_id} needs its own peer address")
    kind = state_machine_kind(state_machine)
    if header.state_machine != kind:
        raise RestoreRefused(
            f"the backup holds a {header.state_machine!r} state machine; this node runs {kind!r}"
        )
    try:
        state_machine.restore(backup.payload)
    except Exception as error:
        raise RestoreRefused(f"the backup's state does not load: {error!r}") from None
    _check_unused(path)
    building = path + RESTORING_SUFFIX
    if os.path.lexists(building):
        raise RestoreRefused(
            f"{building} exists (left by an earlier restore cut short?); remove it first"
        )
    membership = Membership(
        voters=frozenset(peer_addresses),
        addresses={member: format_address(address) for member, address in peer_addresses.items()},
    )
    meta = SnapshotMeta(header.index, header.term, membership)
    with open_data_dir(building, node_id, cluster_id) as seeded:
        save_peer_addresses(seeded.path, dict(peer_addresses), seeded.filesystem)
        seeded.open_snapshots().save(meta, backup.payload)
        wal = seeded.open_storage()
        try:
            wal.reset(meta.index, meta.term)
            wal.set_hard_state(HardState(term=meta.term, voted_for=None, commit=meta.index))
            wal.sync()
        finally:
            wal.close()
    parent = os.path.dirname(path)
    ensure_directory(parent, OS_FILE_SYSTEM)
    # Over an empty directory too (POSIX rename replaces one); then make the rename durable.
    os.rename(building, path)
    descriptor = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return meta


def _check_unused(path: str) -> None:
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise RestoreRefused(f"{path} exists and is not a directory")
    entries = os.listdir(path)
    if entries:
        raise RestoreRefused(
            f"data dir {path} already holds state ({', '.join(sorted(entries)[:5])}); "
            "a restore seeds a new, empty data dir only"
        )
