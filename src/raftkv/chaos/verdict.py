"""The end of a run: is the history linearizable, and do the replicas agree? Each answer
with the words to print."""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.check import History, check_history
from raftkv.client import RaftClient
from raftkv.client.check import check_cluster
from raftkv.client.errors import CorruptLog
from raftkv.errors import ClientError

# The checker's search is exponential in the worst case; a run of a minute checks in seconds.
CHECK_TIME_BUDGET_SECONDS = 120.0


@dataclass(frozen=True)
class Linearizability:
    ok: bool | None  # None: the search budget ran out
    summary: str
    explanation: str


@dataclass(frozen=True)
class ReplicaAgreement:
    ok: bool | None  # None: not asked (no cluster), or no node answered
    summary: str


def check_linearizable(history: History) -> Linearizability:
    result = check_history(list(history.operations), time_budget_seconds=CHECK_TIME_BUDGET_SECONDS)
    explanation = "" if result.ok is True else result.explain()
    return Linearizability(result.ok, result.summary(), explanation)


def check_replicas(client: RaftClient) -> ReplicaAgreement:
    """`raft-client check`: the nodes' applied hashes at a common index."""
    try:
        report = check_cluster(client)
    except CorruptLog as error:
        return ReplicaAgreement(False, f"a node reports a corrupt log: {error}")
    except ClientError as error:
        return ReplicaAgreement(None, f"could not compare: {error}")
    hashes = " ".join(f"{n}={h[:12]}" for n, h in sorted(report.hashes.items()))
    if report.consistent:
        return ReplicaAgreement(
            True,
            f"agree at index {report.index} ({len(report.hashes)} "
            f"nodes, hash {report.majority_hash})",
        )
    return ReplicaAgreement(False, f"DIFFER at index {report.index}: {hashes}")
