"""`check`: do all reachable nodes agree on their applied state at one common index?

Every node keeps a running hash over the commands it applied (SPEC §3 `applied_hash`), so
two nodes that applied the same commands up to an index agree on the hash there. The common
index is the lowest `last_applied` among the reachable nodes: every one of them has applied
it. A node remembers the hash of a recent window of indexes only (and none before a snapshot
it restored), so when one no longer knows the common index, fresh statuses are fetched and
the comparison is tried again, a few times.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from raftkv.client.errors import (
    CheckIncomplete,
    CorruptLog,
    Inconsistent,
    NotFound,
    Timeout,
    Unreachable,
    refusal_among,
)
from raftkv.client.limits import CHECK_ATTEMPTS_MAX, CHECK_RETRY_PAUSE_SECONDS
from raftkv.client.results import StatusReport
from raftkv.client.sync import RaftClient

# Status fields with which a node may say its log is damaged.
_CORRUPTION_FLAGS = ("corrupt", "log_corrupt")


@dataclass(frozen=True)
class CheckReport:
    index: int
    hashes: dict[int, str]  # node id -> its applied hash at `index`
    unreachable: list[int]

    @property
    def consistent(self) -> bool:
        return len(set(self.hashes.values())) <= 1

    @property
    def majority_hash(self) -> str:
        """The hash most nodes hold (on a tie, the one the lowest node id holds)."""
        counts = Counter(self.hashes.values())
        best = max(counts.values())
        return next(h for _, h in sorted(self.hashes.items()) if counts[h] == best)

    def differing_nodes(self) -> list[int]:
        majority = self.majority_hash
        return sorted(node_id for node_id, h in self.hashes.items() if h != majority)

    def to_error(self) -> Inconsistent:
        differing = self.differing_nodes()
        agreeing = sorted(set(self.hashes) - set(differing))
        message = (
            f"at index {self.index} node(s) {_ids(differing)} differ from node(s) {_ids(agreeing)}"
        )
        payload = {
            "index": self.index,
            "differing": differing,
            "hashes": {str(node_id): h for node_id, h in sorted(self.hashes.items())},
            "message": message,
        }
        return Inconsistent(message, payload)


def _ids(node_ids: list[int]) -> str:
    return ",".join(str(node_id) for node_id in node_ids)


def corruption_in(reports: list[StatusReport]) -> CorruptLog | None:
    """The error of the first node that reports a damaged log, if any does."""
    for report in reports:
        if isinstance(report.error, CorruptLog):
            return report.error
        if report.status is not None and any(report.status.raw.get(f) for f in _CORRUPTION_FLAGS):
            message = f"node {report.node_id} reports a corrupt log"
            return CorruptLog(message, {"node": report.node_id, "message": message})
    return None


def check_cluster(
    client: RaftClient,
    *,
    attempts_max: int = CHECK_ATTEMPTS_MAX,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckReport:
    """Compare the reachable nodes' applied hashes at their common index.

    Raises Timeout when no node answers, CorruptLog when one reports a damaged log, and
    CheckIncomplete when some node never had the hash at the common index.
    """
    missing: list[int] = []
    index = 0
    for attempt in range(attempts_max):
        if attempt:
            sleep(CHECK_RETRY_PAUSE_SECONDS * 2**attempt)
        reports = client.statuses()
        corruption = corruption_in(reports)
        if corruption is not None:
            raise corruption
        refusal = refusal_among(report.error for report in reports)
        if refusal is not None:
            raise refusal
        reachable = {r.node_id: r.status for r in reports if r.status is not None}
        unreachable = [r.node_id for r in reports if r.status is None]
        if not reachable:
            message = f"no node answered within {client.timeout:g} s"
            raise Timeout(message, {"message": message})
        index = min(status.last_applied for status in reachable.values())
        answers = client.hashes_at(index, sorted(reachable))
        hashes: dict[int, str] = {}
        missing = []
        for node_id, answer in answers.items():
            if isinstance(answer, str):
                hashes[node_id] = answer
            elif isinstance(answer, NotFound):
                missing.append(node_id)
            elif isinstance(answer, Unreachable):
                # Gone between its status and its hash: compared no more, like any other
                # unreachable node.
                unreachable.append(node_id)
            else:
                raise answer
        if not missing and hashes:
            return CheckReport(index, hashes, sorted(unreachable))
    if not missing:
        message = f"no node answered for its hash within {client.timeout:g} s"
        raise Timeout(message, {"message": message})
    message = f"node(s) {_ids(missing)} no longer remember the hash at index {index}"
    raise CheckIncomplete(message, {"index": index, "missing": missing, "message": message})
