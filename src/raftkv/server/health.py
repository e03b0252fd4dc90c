"""Readiness (`GET /readyz`, SPEC §6): decided from the node's own state, without a Raft
round trip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHECK_PASSED = "ok"


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """What readiness is decided from (`NodeReport.health_facts`, server/node_report.py):
    the node's own state, read without a Raft round trip, so a probe costs no more than
    `/v1/status`."""

    # The leader this node heard from within an election timeout (itself when it leads).
    leader_id: int | None
    storage_failure: str | None
    # In the newest configuration this node holds (a learner counts).
    member: bool
    # It applied a configuration without itself, from its own join on: it is stopping.
    removed: bool
    # The highest commit index this node knows: its own, or one a leader sent it (a
    # follower still receiving entries commits only what it holds).
    commit_index: int
    # What the state machine reflects.
    applied_index: int


def readiness(node_id: int, facts: HealthFacts, lag_entries_max: int) -> dict[str, Any]:
    """The `/readyz` body: every check, "ok" or why it fails, and `ok` when all pass."""
    behind = max(0, facts.commit_index - facts.applied_index)
    if facts.removed:
        member = "removed from the cluster"
    elif not facts.member:
        member = "not a member of the cluster's configuration"
    else:
        member = CHECK_PASSED
    checks = {
        "leader": CHECK_PASSED if facts.leader_id is not None else "leader unknown",
        "storage": (
            CHECK_PASSED
            if facts.storage_failure is None
            else f"storage failed: {facts.storage_failure}"
        ),
        "caught_up": CHECK_PASSED if behind <= lag_entries_max else f"{behind} entries behind",
        "member": member,
    }
    return {
        "ok": all(outcome == CHECK_PASSED for outcome in checks.values()),
        "checks": checks,
        "id": node_id,
        "leader": facts.leader_id,
        "commit_index": facts.commit_index,
        "applied_index": facts.applied_index,
        "behind": behind,
        "behind_max": lag_entries_max,
    }
