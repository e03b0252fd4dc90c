"""What the nodes of a `raft-bench` run said of their stalls (server/stalls.py's warnings),
printed under the run's table, so that a long tail or a leader change comes with its cause:
a WAL sync of 200 ms on every node at once is the disk's doing, not the request path's.
`--compare etcd` also says in which rows raftkv's stalls came (`StallLogs`): a run's p99 at
C=64 is read quite differently if its stalls fell in the 1 MB row."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from raftkv.server.limited_log import LEFT_OUT_SUFFIX
from raftkv.server.stalls import LOOP_STALL_OPENING, SLOW_SYNC_OPENING

_KINDS = {SLOW_SYNC_OPENING: "slow WAL syncs", LOOP_STALL_OPENING: "event-loop stalls"}
_LEFT_OUT = re.compile(re.escape(LEFT_OUT_SUFFIX).replace(re.escape("{}"), r"(\d+)"))


class Stalls:
    """Per kind of stall: how many (those a warning said it left out included), and the
    longest one logged, in ms."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_KINDS.values(), 0)
        self.longest = dict.fromkeys(_KINDS.values(), 0.0)

    def add_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            for opening, kind in _KINDS.items():
                at = line.find(opening)
                if at < 0:
                    continue
                milliseconds = float(line[at + len(opening) :].split()[0])
                self.longest[kind] = max(self.longest[kind], milliseconds)
                left_out = _LEFT_OUT.search(line)
                self.counts[kind] += 1 + (int(left_out.group(1)) if left_out else 0)

    def add(self, other: Stalls) -> None:
        for kind in _KINDS.values():
            self.counts[kind] += other.counts[kind]
            self.longest[kind] = max(self.longest[kind], other.longest[kind])

    def any(self) -> bool:
        return any(self.counts.values())

    def describe(self) -> str:
        """`7 slow WAL syncs (the longest logged 208 ms); no event-loop stalls`."""
        return "; ".join(
            f"{self.counts[kind]} {kind} (the longest logged {self.longest[kind]:.0f} ms)"
            if self.counts[kind]
            else f"no {kind}"
            for kind in _KINDS.values()
        )


def stall_summary(logs: Iterable[Path]) -> str:
    """One line: how many of each kind the nodes' logs hold and the longest one logged."""
    stalls = Stalls()
    for path in logs:
        try:
            stalls.add_lines(path.read_text(errors="replace").splitlines())
        except FileNotFoundError:
            continue
    return "stalls of 100 ms or more the nodes logged: " + stalls.describe()


class StallLogs:
    """The nodes' logs read as they grow: `take(label)` counts the warnings logged since
    the last `take` or `skip` under `label` (a row's name), `skip()` passes over those
    logged meanwhile (while the other system ran), `by_label()` says what each label got.
    A line still being written is left for the next read."""

    def __init__(self, logs: Callable[[], Iterable[Path]]) -> None:
        self._logs = logs
        self._read: dict[Path, int] = {}  # bytes of each log already counted
        self._labels: dict[str, Stalls] = {}
        self._skipped = Stalls()

    def _new(self) -> Stalls:
        stalls = Stalls()
        for path in self._logs():
            try:
                with path.open("rb") as log:
                    log.seek(self._read.get(path, 0))
                    text = log.read()
            except FileNotFoundError:
                continue
            whole = text[: text.rfind(b"\n") + 1]
            self._read[path] = self._read.get(path, 0) + len(whole)
            stalls.add_lines(whole.decode(errors="replace").splitlines())
        return stalls

    def skip(self) -> None:
        self._skipped.add(self._new())

    def take(self, label: str) -> None:
        self._labels.setdefault(label, Stalls()).add(self._new())

    def by_label(self) -> str:
        """`write C=64: 2 slow WAL syncs (...); no event-loop stalls · ...`, naming only the
        labels that got some, then those logged between measurements."""
        parts = [
            f"{label}: {stalls.describe()}"
            for label, stalls in self._labels.items()
            if stalls.any()
        ]
        if self._skipped.any():
            parts.append(f"between its measurements: {self._skipped.describe()}")
        return " · ".join(parts) if parts else "none in any row"
