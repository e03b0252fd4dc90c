"""Real network partitions on loopback with nftables: each node sends and receives peer
traffic on its own loopback address (127.0.0.1N), and a table of drop rules cuts chosen
pairs apart. Client traffic (on 127.0.0.1) is never touched.

Clusters of tests running in parallel use the same addresses, so a rule names a node by its
address *and* its peer port (unique on the machine while it listens): a connection from A
to B is A's address to B's listening port, and B's answers come from that port. Rules by
address alone once cut a parallel test's cluster apart too.

One of two link cutters with the same `cut`/`heal`/`close` (`links.py` picks one); the other,
`link_proxy.py`, needs neither root nor nftables. Used by the process tests
(tests/process/links.py) and by `raft-chaos`."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping

_tables = itertools.count()


def peer_host(node_id: int) -> str:
    return f"127.0.0.{10 + node_id}"


def nft_available() -> bool:
    """Root, and `nft` on PATH: what adding a table takes."""
    return shutil.which("nft") is not None and os.geteuid() == 0


class Firewall:
    def __init__(self, peer_ports: Mapping[int, int]) -> None:
        """`peer_ports`: node id -> peer port, for the nodes of one cluster (read at each
        cut, so nodes added later are included)."""
        self.peer_ports = peer_ports
        self.table = f"raftkv_chaos_{os.getpid()}_{next(_tables)}"
        self._nft(f"add table inet {self.table}")
        self._nft(
            f"add chain inet {self.table} output "
            "{ type filter hook output priority 0 ; policy accept ; }"
        )

    def _nft(self, command: str) -> None:
        subprocess.run(["nft", command], check=True, capture_output=True, timeout=10)

    def cut(self, group: Iterable[int], others: Iterable[int]) -> None:
        """Drop all peer traffic between `group` and `others`, both ways."""
        for side, other_side in ((list(group), list(others)), (list(others), list(group))):
            senders = ", ".join(peer_host(n) for n in side)
            listeners = ", ".join(peer_host(n) for n in other_side)
            ports = ", ".join(str(self.peer_ports[n]) for n in other_side)
            # `side` connecting to `other_side`'s listeners, and those listeners answering.
            self._rule(
                f"ip saddr {{ {senders} }} ip daddr {{ {listeners} }} tcp dport {{ {ports} }}"
            )
            self._rule(
                f"ip saddr {{ {listeners} }} ip daddr {{ {senders} }} tcp sport {{ {ports} }}"
            )

    def _rule(self, match: str) -> None:
        self._nft(f"add rule inet {self.table} output {match} drop")

    def heal(self) -> None:
        self._nft(f"flush chain inet {self.table} output")

    def close(self) -> None:
        subprocess.run(["nft", f"delete table inet {self.table}"], capture_output=True, timeout=10)
