"""The embedding API's peer links over mutual TLS: `NodeOptions.tls` given through
`options`, the certificates from `raft-node certs init`'s code (SPEC §6, "TLS")."""

from __future__ import annotations

import asyncio
from pathlib import Path

from raftkv.embed import AsyncNode, ReplCounter
from raftkv.tls import TlsSettings
from tests.certificates import CertificateSet
from tests.process.cluster import free_port

TIMING = {"tick_ms": 10, "election_timeout_ms": (150, 300), "heartbeat_ms": 30}
DEADLINE_SECONDS = 15.0


def test_three_nodes_replicate_over_mutual_tls(tmp_path: Path) -> None:
    certificates = CertificateSet(tmp_path / "certs", [1, 2, 3])
    ports = {node_id: free_port() for node_id in (1, 2, 3)}
    counters = {node_id: ReplCounter() for node_id in ports}

    async def scenario() -> None:
        nodes = [
            AsyncNode(
                node_id,
                listen=("127.0.0.1", port),
                data_dir=str(tmp_path / f"node{node_id}"),
                objects={"hits": counters[node_id]},
                peers={peer: ("127.0.0.1", p) for peer, p in ports.items() if peer != node_id},
                options={**TIMING, "tls": TlsSettings(peer=certificates.peer_files(node_id))},
            )
            for node_id, port in ports.items()
        ]
        try:
            for node in nodes:
                await node.start()
            await nodes[0].wait_for_leader(DEADLINE_SECONDS)
            async with asyncio.timeout(DEADLINE_SECONDS):
                assert await counters[2].inc() == 1
                assert await counters[3].inc() == 2
        finally:
            for node in nodes:
                await node.stop()

    asyncio.run(scenario())
