"""Nodes on separate hosts, as far as one machine allows (the multi-host test).

As root with `ip` on PATH, each node gets its own network namespace with its own address
on a bridge (10.213.X.N/24; this process reaches them from the bridge's 10.213.X.254):
the nodes share no loopback, and a node's wildcard listen address is only its own. Without
root, each node gets its own loopback address (127.0.0.1N on Linux, where all of 127/8 is
loopback): separate addresses, one network stack. `Hosts.kind` says which; the test says
which in its output.

Names carry this process's id, so parallel test workers never share a namespace, a bridge
or a subnet; `close()` removes what was made even after a failure half-way through setup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable


def namespaces_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


class Hosts:
    """`address(n)`: node n's host address; `wrap(n, argv)`: argv run on node n's host."""

    def __init__(self, node_ids: Iterable[int]) -> None:
        self.node_ids = sorted(node_ids)
        self.kind = "netns" if namespaces_available() else "loopback"
        # A /24 per test process (10.213.0-249.0): parallel workers never collide.
        self._subnet = os.getpid() % 250
        self._tag = f"{os.getpid() % 100_000}"
        self._namespaces: list[str] = []
        self._bridge: str | None = None
        if self.kind == "netns":
            try:
                self._make_namespaces()
            except BaseException:
                self.close()
                raise

    def _ip(self, *arguments: str) -> None:
        subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=10)

    def _namespace(self, node_id: int) -> str:
        return f"raftkv{self._tag}-{node_id}"

    def _make_namespaces(self) -> None:
        # Interface names are at most 15 characters.
        bridge = f"rkb{self._tag}"
        self._ip("link", "add", bridge, "type", "bridge")
        self._bridge = bridge
        self._ip("addr", "add", f"10.213.{self._subnet}.254/24", "dev", bridge)
        self._ip("link", "set", bridge, "up")
        for node_id in self.node_ids:
            namespace = self._namespace(node_id)
            self._ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            outside, inside = f"rkh{self._tag}n{node_id}", f"rkn{self._tag}n{node_id}"
            self._ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._ip("link", "set", outside, "master", bridge, "up")
            self._ip("link", "set", inside, "netns", namespace)
            self._ip("-n", namespace, "addr", "add", f"{self.address(node_id)}/24", "dev", inside)
            self._ip("-n", namespace, "link", "set", inside, "up")
            self._ip("-n", namespace, "link", "set", "lo", "up")

    def address(self, node_id: int) -> str:
        if self.kind == "netns":
            return f"10.213.{self._subnet}.{node_id}"
        return f"127.0.0.{10 + node_id}"

    def wrap(self, node_id: int, argv: list[str]) -> list[str]:
        """`ip netns exec` execs the command: the process started is the node itself, so
        its pid is the one to kill."""
        if self.kind == "netns":
            return ["ip", "netns", "exec", self._namespace(node_id), *argv]
        return argv

    def close(self) -> None:
        """Deleting a namespace deletes its end of the veth pair, and so the pair."""
        for namespace in self._namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
        self._namespaces = []
        if self._bridge is not None:
            subprocess.run(["ip", "link", "del", self._bridge], capture_output=True, timeout=10)
            self._bridge = None
