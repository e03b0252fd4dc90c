"""Cutting a process cluster's peer links: with nftables where the machine allows it (root,
and `nft` on PATH), with user-space proxies (`raftkv.chaos.link_proxy`) everywhere else. Both
offer `cut(group, others)`, `heal()` and `close()`, so the partition tests make the same
assertions over either. RAFTKV_TEST_LINKS=nftables or RAFTKV_TEST_LINKS=proxy forces one."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from raftkv.chaos.firewall import Firewall, peer_host
from raftkv.chaos.link_proxy import LinkProxies
from raftkv.chaos.links import LinkCutter, LinksKind, choose_links
from tests.process.cluster import NodeProcess, ProcessCluster

LINKS_VARIABLE = "RAFTKV_TEST_LINKS"
__all__ = ["LinkCutter", "chosen_links", "partitionable_cluster"]


def chosen_links() -> LinksKind:
    """nftables where it works, proxies otherwise, unless RAFTKV_TEST_LINKS says which. A
    forced choice the machine cannot honour is an error, never a quiet fallback or a skip."""
    try:
        return choose_links(os.environ.get(LINKS_VARIABLE, ""))
    except (RuntimeError, ValueError) as error:
        raise type(error)(f"{LINKS_VARIABLE}: {error}") from None


class PeerPorts(Mapping[int, int]):
    """The cluster's peer ports, as they are now."""

    def __init__(self, cluster: ProcessCluster) -> None:
        self.cluster = cluster

    def __getitem__(self, node_id: int) -> int:
        return self.cluster.nodes[node_id].peer_port

    def __iter__(self) -> Iterator[int]:
        return iter(self.cluster.nodes)

    def __len__(self) -> int:
        return len(self.cluster.nodes)


def partitionable_cluster(root: Path, kind: LinksKind) -> tuple[ProcessCluster, LinkCutter]:
    """A cluster, not started yet, and what cuts its peer links. Close the cutter after
    stopping the cluster."""
    if kind == "nftables":
        # Rules tell the nodes apart by their own loopback address each.
        cluster = ProcessCluster(root, peer_hosts=peer_host)
        return cluster, Firewall(PeerPorts(cluster))
    proxies = LinkProxies()

    def route(sender: int, receiver: NodeProcess) -> tuple[str, int]:
        # The cluster's ports are chosen when its nodes are made but bound only when each
        # starts: a proxy must not take one in between.
        chosen = {p for node in cluster.nodes.values() for p in (node.peer_port, node.client_port)}
        return proxies.route(sender, receiver.id, receiver.peer_address, avoid_ports=chosen)

    try:
        cluster = ProcessCluster(root, peer_route=route)
    except BaseException:
        proxies.close()
        raise
    return cluster, proxies
