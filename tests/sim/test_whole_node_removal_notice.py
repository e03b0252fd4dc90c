"""Session 29's whole-node finding: a removed node that dials no member runs on forever
unless a member dials it (removal notices, SPEC §4). At seed 25101 node 2 joins through
node 1, the founder, and holds nothing since (term 0, an empty log: its snapshot install
never became durable); nodes 1 and 2 are removed, node 1 stops, and node 3 leads alone.
Node 2 knows only node 1's address, so no member can refuse it as removed, and node 3, a
leader, never talks to a node outside its configuration. With the notices undone
(`whole_node_defects.removed_node_never_dialed`) the run fails its liveness check; with them,
node 3 (which applied node 2's removal from an installed snapshot, and kept the notice
across two restarts) tells node 2 once it is back, and it stops."""

from __future__ import annotations

from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node

from . import whole_node_defects as defects

# As found (session 28), before the clients sent reads to any node: `--no-follower-reads`.
FOUND_AT = WholeNodeOptions(
    seed=25101,
    nodes=3,
    seconds=6,
    watchers=0,
    leases=False,
    sync_thread_min_entries=0,
    follower_reads=False,
)


def test_without_notices_the_removed_node_that_dials_nobody_runs_on() -> None:
    with defects.removed_node_never_dialed():
        result = run_whole_node(FOUND_AT)
    assert not result.ok
    assert "node 2 was removed but still runs" in "\n".join(result.report_lines())


def test_with_notices_the_same_run_converges() -> None:
    result = run_whole_node(FOUND_AT)
    assert result.ok, "\n".join(result.report_lines())
