"""Picking a way to cut peer links: nftables where the machine allows it (root, and `nft`
on PATH), user-space proxies (`link_proxy.LinkProxies`) everywhere else. Both offer
`cut(group, others)`, `heal()` and `close()`; the process tests use the same choice
(tests/process/links.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from raftkv.chaos.firewall import nft_available

LinksKind = Literal["nftables", "proxy"]


class LinkCutter(Protocol):
    def cut(self, group: Iterable[int], others: Iterable[int]) -> None:
        """Drop all peer traffic between `group` and `others`, both ways, until `heal()`."""

    def heal(self) -> None:
        """Let all peer traffic through again."""

    def close(self) -> None:
        """Remove every trace (rules, proxies); safe after a failure."""


def choose_links(forced: str = "") -> LinksKind:
    """nftables where it works, proxies otherwise, unless `forced` names one. A forced choice
    the machine cannot honour is an error, never a quiet fallback."""
    if forced == "":
        return "nftables" if nft_available() else "proxy"
    if forced == "proxy":
        return "proxy"
    if forced == "nftables":
        if not nft_available():
            raise RuntimeError("nftables links need root and `nft` on PATH")
        return "nftables"
    raise ValueError(f"links are 'nftables' or 'proxy', not {forced!r}")
