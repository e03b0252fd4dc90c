"""A stored snapshot that passes its checksum but does not load into the node's state
machine (another machine's, or a newer format's) stops the start with Corruption (exit 4):
it used to escape as a bare ValueError, a traceback, and a systemd unit would have
restarted the node over and over."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.core import Membership, SnapshotMeta
from raftkv.errors import Corruption
from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer
from raftkv.storage import open_data_dir


def test_a_snapshot_the_state_machine_cannot_load_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "node-1"
    with open_data_dir(path, 1, "cluster-a") as data_dir:
        snapshots = data_dir.open_snapshots()
        meta = SnapshotMeta(5, 1, Membership(voters=frozenset({1})))
        snapshots.save(meta, b"\x81\xa3not a KV snapshot")  # a msgpack map, the wrong one
    options = NodeOptions(
        node_id=1,
        data_dir=str(path),
        listen=("127.0.0.1", 0),
        client_listen=("127.0.0.1", 0),
        cluster_id="cluster-a",
    )

    async def start() -> None:
        server = RaftServer(options, listen_for_clients=False)
        try:
            await server.start()
        finally:
            await server.stop()

    with pytest.raises(Corruption, match="the snapshot at index 5 does not load"):
        asyncio.run(start())
