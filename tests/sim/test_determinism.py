"""Same arguments, same bytes: in one process, across processes, and across hash seeds."""

from __future__ import annotations

import os
import subprocess
import sys

from raftkv.sim import SimulationOptions, run_simulation


def raft_sim(*arguments: str, hash_seed: str = "0") -> subprocess.CompletedProcess[bytes]:
    environment = dict(os.environ, PYTHONHASHSEED=hash_seed)
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli.sim", *arguments],
        capture_output=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_seed_7_five_nodes_is_byte_identical_across_processes() -> None:
    first = raft_sim("--seed", "7", "--nodes", "5", hash_seed="1")
    second = raft_sim("--seed", "7", "--nodes", "5", hash_seed="2")
    assert first.returncode == second.returncode == 0, first.stdout.decode()
    assert first.stdout == second.stdout
    assert b"result: OK" in first.stdout


def test_verbose_transcript_is_byte_identical() -> None:
    arguments = ("--seed", "11", "--nodes", "3", "--ticks", "500", "--verbose")
    first = raft_sim(*arguments, hash_seed="3")
    second = raft_sim(*arguments, hash_seed="4")
    assert first.stdout == second.stdout
    assert first.stdout.count(b"\n") > 500  # a real transcript, not just the summary


def test_in_process_runs_agree() -> None:
    options = SimulationOptions(seed=3, nodes=5, ticks=800)
    assert run_simulation(options).report_lines() == run_simulation(options).report_lines()


def test_different_seeds_differ() -> None:
    first = run_simulation(SimulationOptions(seed=1, ticks=500)).report_lines()
    second = run_simulation(SimulationOptions(seed=2, ticks=500)).report_lines()
    assert first != second
