"""Real raft-node processes for a chaos run: free ports, a temporary data dir per node, peer
links that can be cut, and every process killed by pid at the end (`close`), whatever
happened before."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.chaos.firewall import Firewall, peer_host
from raftkv.chaos.link_proxy import LinkProxies
from raftkv.chaos.links import LinkCutter, LinksKind
from raftkv.client import RaftClient
from raftkv.errors import ClientError

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# A node's own client port answers at once; the timeout only bounds a paused node.
STATUS_TIMEOUT_SECONDS = 1.0


def free_port(taken: set[int]) -> int:
    """A port the kernel calls free and this run has not handed out yet (the kernel may
    give a just-released port twice)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port


@dataclass
class Node:
    id: int
    peer_host: str
    peer_port: int
    client_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def client_address(self) -> tuple[str, int]:
        return HOST, self.client_port


@dataclass
class ChaosCluster:
    root: Path
    links_kind: LinksKind
    nodes: dict[int, Node] = field(default_factory=dict)
    _ports: set[int] = field(default_factory=set)
    _links: LinkCutter | None = None
    _proxies: LinkProxies | None = None

    def __post_init__(self) -> None:
        if self.links_kind == "nftables":
            # Rules tell nodes apart by their own loopback address and peer port.
            self._links = Firewall(_PeerPorts(self))
        else:
            self._proxies = LinkProxies()
            self._links = self._proxies

    # --- membership of the run ------------------------------------------------------------
    def add(self, node_id: int) -> Node:
        host = peer_host(node_id) if self.links_kind == "nftables" else HOST
        node = Node(
            node_id,
            host,
            free_port(self._ports),
            free_port(self._ports),
            self.root / f"node-{node_id}",
            self.root / f"node-{node_id}.log",
        )
        self.nodes[node_id] = node
        return node

    def peer_route(self, sender: int, receiver: Node) -> str:
        if self._proxies is None:
            return f"{receiver.peer_host}:{receiver.peer_port}"
        host, port = self._proxies.route(
            sender, receiver.id, (receiver.peer_host, receiver.peer_port), avoid_ports=self._ports
        )
        return f"{host}:{port}"

    # --- processes ------------------------------------------------------------------------
    def start(self, node_id: int, *, peers: Iterable[int] = (), join: int | None = None) -> None:
        """Start node `node_id`: bootstrapping with `peers`, joining through member `join`'s
        client address, or (neither) restarting from its data dir."""
        node = self.nodes[node_id]
        command = [
            str(BIN / "raft-node"),
            *("--id", str(node_id), "--data-dir", str(node.data_dir)),
            *("--listen", f"{node.peer_host}:{node.peer_port}"),
            *("--client-listen", f"{HOST}:{node.client_port}", "--seed", str(node_id)),
        ]
        others = [self.nodes[n] for n in peers if n != node_id]
        if others:
            routes = ",".join(f"{o.id}={self.peer_route(node_id, o)}" for o in others)
            command += ["--peers", routes]
        if join is not None:
            command += ["--join", f"{HOST}:{self.nodes[join].client_port}"]
        with open(node.log_path, "ab") as log:
            node.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        node.paused = False

    def signal(self, node_id: int, signal_number: int) -> None:
        node = self.nodes[node_id]
        if node.alive and node.process is not None:
            node.process.send_signal(signal_number)
            node.paused = signal_number == signal.SIGSTOP

    def kill(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=30)
        node.paused = False

    def wipe(self, node_id: int) -> None:
        """A fresh, empty data dir: the node comes back as a brand-new member."""
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    def close(self) -> None:
        """Kill every process by pid and remove the link cutter; safe to call twice."""
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                if node.paused:
                    node.process.send_signal(signal.SIGCONT)
                node.process.kill()
                node.process.wait(timeout=30)
        if self._links is not None:
            self._links.close()
            self._links = None

    # --- links ----------------------------------------------------------------------------
    def cut(self, group: Iterable[int], others: Iterable[int]) -> None:
        assert self._links is not None
        self._links.cut(group, others)

    def heal(self) -> None:
        assert self._links is not None
        self._links.heal()

    # --- asking the nodes -----------------------------------------------------------------
    def client(self, timeout: float = 5.0) -> RaftClient:
        return RaftClient({n.id: n.client_address for n in self.nodes.values()}, timeout=timeout)

    def status(self, node_id: int) -> dict[str, object] | None:
        """`GET /v1/status` of one node, or None when it does not answer."""
        node = self.nodes[node_id]
        if not node.alive or node.paused:
            return None
        with RaftClient({node_id: node.client_address}, timeout=STATUS_TIMEOUT_SECONDS) as one:
            try:
                return dict(one.status(node_id).raw)
            except (ClientError, OSError):
                return None

    def leader(self) -> int | None:
        for node_id in self.nodes:
            status = self.status(node_id)
            if status is not None and status.get("role") == "leader":
                return node_id
        return None

    def wait(self, what: str, condition: Callable[[], object], timeout: float) -> None:
        """Poll `condition()` until truthy, or raise TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.05)  # a poll interval, not a synchronisation

    def wait_leader(self, timeout: float = 20.0) -> int:
        found: list[int] = []

        def elected() -> bool:
            leader = self.leader()
            if leader is not None:
                found.append(leader)
            return leader is not None

        self.wait("a leader", elected, timeout)
        return found[-1]


class _PeerPorts(dict[int, int]):
    """The cluster's peer ports as they are now, for the firewall's rules."""

    def __init__(self, cluster: ChaosCluster) -> None:
        super().__init__()
        self.cluster = cluster

    def __getitem__(self, node_id: int) -> int:
        return self.cluster.nodes[node_id].peer_port
