"""The whole-node simulator: real RaftServers on the deterministic loop, the in-memory
network and simulated disks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node

SEEDS = range(1, 7)


@pytest.mark.parametrize("seed", SEEDS)
def test_whole_node_seeds_hold_every_invariant(seed: int) -> None:
    result = run_whole_node(WholeNodeOptions(seed=seed, nodes=3, seconds=4))
    assert result.ok, "\n".join(result.report_lines())
    assert result.stats.client_ok > 0


def test_without_faults_the_cluster_serves_and_snapshots() -> None:
    result = run_whole_node(WholeNodeOptions(seed=1, nodes=3, seconds=4, faults=False))
    assert result.ok, "\n".join(result.report_lines())
    assert result.stats.client_ok > 100
    assert result.stats.snapshots_taken > 0
    assert result.stats.linearizability.startswith("OK")


def report(seed: int, hash_seed: str) -> str:
    code = (
        "from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node;"
        f"print('\\n'.join(run_whole_node(WholeNodeOptions(seed={seed}, seconds=3))"
        ".report_lines()))"
    )
    environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    ).stdout


def test_same_seed_same_output_whatever_the_hash_seed() -> None:
    first = report(3, "1")
    assert first == report(3, "2")
    assert "callbacks: " in first
