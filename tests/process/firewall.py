"""Real network partitions on loopback with nftables: each node sends and receives peer
traffic on its own loopback address (127.0.0.1N), and a table of drop rules cuts chosen
pairs apart. Client traffic (on 127.0.0.1) is never touched."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterable

_tables = itertools.count()


def peer_host(node_id: int) -> str:
    return f"127.0.0.{10 + node_id}"


def nft_available() -> bool:
    return shutil.which("nft") is not None and os.geteuid() == 0


class Firewall:
    def __init__(self) -> None:
        self.table = f"raftkv_test_{os.getpid()}_{next(_tables)}"
        self._nft(f"add table inet {self.table}")
        self._nft(
            f"add chain inet {self.table} output "
            "{ type filter hook output priority 0 ; policy accept ; }"
        )

    def _nft(self, command: str) -> None:
        subprocess.run(["nft", command], check=True, capture_output=True, timeout=10)

    def cut(self, group: Iterable[int], others: Iterable[int]) -> None:
        """Drop all peer traffic between `group` and `others`, both ways."""
        left = ", ".join(peer_host(n) for n in group)
        right = ", ".join(peer_host(n) for n in others)
        self._nft(
            f"add rule inet {self.table} output ip saddr {{ {left} }} ip daddr {{ {right} }} drop"
        )
        self._nft(
            f"add rule inet {self.table} output ip saddr {{ {right} }} ip daddr {{ {left} }} drop"
        )

    def heal(self) -> None:
        self._nft(f"flush chain inet {self.table} output")

    def close(self) -> None:
        subprocess.run(["nft", f"delete table inet {self.table}"], capture_output=True, timeout=10)
