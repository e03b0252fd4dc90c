"""Counters of one run and the summary `raft-sim` prints (sorted: byte-identical on replay)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stats:
    ticks: int = 0
    ticks_to_converge: int = 0
    elections: int = 0  # leaders elected
    max_term: int = 0
    leaders: list[tuple[int, int]] = field(default_factory=list)  # (term, node), in order
    commit_index: int = 0  # the highest commit index any node reached
    entries_applied: int = 0  # summed over nodes, re-applies after a restart included
    messages_sent: int = 0
    messages_delivered: int = 0
    messages_dropped: int = 0
    messages_duplicated: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    crashes_mid_ready: int = 0
    restarts: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    transfers: int = 0  # leadership transfers asked for
    membership_changes: int = 0  # membership changes proposed
    client_ok: int = 0
    client_failed: int = 0
    client_unknown: int = 0
    reads_ok: int = 0
    stale_reads: int = 0  # consistency=stale reads checked against the cluster's state
    linearizability: str = "not checked"

    def count_fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def summary_lines(self) -> list[str]:
        faults = " ".join(f"{kind}={self.faults[kind]}" for kind in sorted(self.faults))
        leaders = " ".join(f"t{term}:n{node}" for term, node in self.leaders)
        return [
            f"ticks: {self.ticks} (faults healed, converged after {self.ticks_to_converge})",
            f"elections: {self.elections}  max term: {self.max_term}",
            f"leaders: {leaders or '-'}",
            f"commit index: {self.commit_index}  entries applied: {self.entries_applied}",
            f"messages: sent={self.messages_sent} delivered={self.messages_delivered}"
            f" dropped={self.messages_dropped} duplicated={self.messages_duplicated}",
            f"faults: {faults or '-'}",
            f"crashes: {self.crashes} (mid-ready {self.crashes_mid_ready})"
            f"  restarts: {self.restarts}",
            f"snapshots: taken={self.snapshots_taken} installed={self.snapshots_installed}",
            f"leadership transfers: {self.transfers}  membership changes:"
            f" {self.membership_changes}",
            f"client ops: ok={self.client_ok} failed={self.client_failed}"
            f" unknown={self.client_unknown} (reads ok={self.reads_ok})"
            f"  stale reads checked: {self.stale_reads}",
            f"linearizability: {self.linearizability}",
        ]
