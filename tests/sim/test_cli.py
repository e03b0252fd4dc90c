"""`raft-sim` arguments, output and exit codes (SPEC §2)."""

from __future__ import annotations

import pytest

from raftkv.cli.sim import main
from raftkv.core.replication import Replication
from tests.sim.test_checks_fail import FIGURE_8_SEEDS, commit_by_counting_any_term


def test_clean_run_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "5", "--nodes", "3", "--ticks", "400"]) == 0
    out = capsys.readouterr().out
    for label in (
        "ticks:",
        "elections:",
        "leaders:",
        "commit index:",
        "messages: sent=",
        "faults:",
        "crashes:",
        "snapshots:",
        "client ops: ok=",
        "linearizability: OK",
        "result: OK",
    ):
        assert label in out


def test_faults_none_and_workload_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "1", "--ticks", "300", "--faults", "none", "--workload", "none"]) == 0
    out = capsys.readouterr().out
    assert "faults: -" in out and "client ops: ok=0" in out and "crashes: 0" in out


def test_fault_list_selects_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "2", "--ticks", "600", "--faults", "crash,partition"]) == 0
    out = capsys.readouterr().out
    assert "faults=partition,crash" in out and "drop=" not in out.split("faults:")[1]


def test_bad_fault_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--seed", "1", "--faults", "drop,meteor"])
    assert exit_info.value.code == 2
    assert "meteor" in capsys.readouterr().err


def test_seed_or_golden_is_required() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_verbose_prints_rpcs_and_role_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "1", "--ticks", "100", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "became leader" in out and " -> " in out and "AppendEntries term=" in out


def test_violation_prints_seed_and_replay_and_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Replication, "_maybe_commit", commit_by_counting_any_term)
    seed = FIGURE_8_SEEDS[-1]  # the seed that catches it (tests/sim/test_checks_fail.py)
    assert main(["--seed", str(seed), "--nodes", "3"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION: " in out
    assert f"seed: {seed}" in out
    assert (
        f"replay: raft-sim --seed {seed} --nodes 3 --ticks 3000 --faults all --workload kv" in out
    )


def test_sweep_mode(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--sweep", "1-3", "--nodes", "3", "--ticks", "300", "--workload", "none"])
    out = capsys.readouterr().out
    assert "seeds 1-3" in out and ("3 ok, 0 violations" in out or code == 1)
