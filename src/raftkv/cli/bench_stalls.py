"""What the nodes of a `raft-bench` run said of their stalls (server/stalls.py's warnings),
printed under the run's table, so that a long tail or a leader change comes with its cause:
a WAL sync of 200 ms on every node at once is the disk's doing, not the request path's."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from raftkv.server.limited_log import LEFT_OUT_SUFFIX
from raftkv.server.stalls import LOOP_STALL_OPENING, SLOW_SYNC_OPENING

_KINDS = {SLOW_SYNC_OPENING: "slow WAL syncs", LOOP_STALL_OPENING: "event-loop stalls"}
_LEFT_OUT = re.compile(re.escape(LEFT_OUT_SUFFIX).replace(re.escape("{}"), r"(\d+)"))


def stall_summary(logs: Iterable[Path]) -> str:
    """One line: how many of each kind the nodes' logs hold (those a line said it left out
    included) and the longest one logged."""
    counts = dict.fromkeys(_KINDS.values(), 0)
    longest = dict.fromkeys(_KINDS.values(), 0.0)
    for path in logs:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            for opening, kind in _KINDS.items():
                at = line.find(opening)
                if at < 0:
                    continue
                milliseconds = float(line[at + len(opening) :].split()[0])
                longest[kind] = max(longest[kind], milliseconds)
                left_out = _LEFT_OUT.search(line)
                counts[kind] += 1 + (int(left_out.group(1)) if left_out else 0)
    parts = [
        f"{counts[kind]} {kind} (the longest logged {longest[kind]:.0f} ms)"
        if counts[kind]
        else f"no {kind}"
        for kind in _KINDS.values()
    ]
    return "stalls of 100 ms or more the nodes logged: " + "; ".join(parts)
