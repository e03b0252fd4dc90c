"""`raft-sim` arguments, output and exit codes (SPEC §2)."""

from __future__ import annotations

import pytest

from raftkv.cli.sim import main
from raftkv.core.replication import Replication
from raftkv.sim.options import SimulationOptions
from raftkv.sim.whole_node import WholeNodeOptions
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


@pytest.mark.interpreted
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


@pytest.mark.interpreted
def test_sweep_with_jobs_prints_what_one_process_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Failing seeds too: the broken commit rule (patched before the workers fork) fails the
    # last seed of FIGURE_8_SEEDS, and the listing must come out in seed order either way.
    monkeypatch.setattr(Replication, "_maybe_commit", commit_by_counting_any_term)
    seeds = f"1-{FIGURE_8_SEEDS[-1] + 1}"
    outputs = []
    for jobs in ("1", "2", "auto"):
        code = main(["--sweep", seeds, "--nodes", "3", "--jobs", jobs])
        outputs.append((code, capsys.readouterr().out))
    assert outputs[0][0] == 1
    assert f"seed {FIGURE_8_SEEDS[-1]} (3 nodes):" in outputs[0][1]
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


@pytest.mark.parametrize(
    "argv", [["--seed", "1", "--jobs", "2"], ["--sweep", "1-2", "--jobs", "-1"]]
)
def test_jobs_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def _sent_messages(out: str) -> int:
    line = next(line for line in out.splitlines() if line.startswith("messages: sent="))
    return int(line.split("sent=")[1].split()[0])


def test_replication_is_fixed_by_the_flag_and_said_in_the_tuning_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--seed", "3", "--ticks", "600", "--faults", "none"]
    assert main([*argv, "--replication", "quorum-first"]) == 0
    quorum_first = capsys.readouterr().out
    assert main([*argv, "--replication", "all"]) == 0
    everyone = capsys.readouterr().out
    tuning = [line for line in quorum_first.splitlines() if line.startswith("core tuning:")]
    assert tuning and tuning[0].endswith(" quorum-first")
    assert " quorum-first" not in everyone
    # The leader's lone writes went to one follower of two, the other caught up per tick.
    assert _sent_messages(quorum_first) < _sent_messages(everyone)


def test_the_replication_flag_is_in_the_replay_and_sweep_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "--replication" not in SimulationOptions(seed=1).replay_command()
    replay = SimulationOptions(seed=1, replication="all").replay_command()
    assert replay.endswith(" --replication all")
    argv = ["--sweep", "1-2", "--ticks", "300", "--workload", "none", "--replication", "all"]
    assert main(argv) == 0
    assert "workload=none replication=all: 2 ok" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--seed", "1", "--replication", "some"])
    with pytest.raises(ValueError, match="replication"):
        SimulationOptions(seed=1, replication="some")


def test_the_whole_node_simulator_takes_replication_from_the_seed_unless_told(
    capsys: pytest.CaptureFixture[str],
) -> None:
    by_seed = [WholeNodeOptions(seed=seed).nodes_quorum_first for seed in range(8)]
    assert by_seed == [True, False, False, True, True, False, False, True]
    assert not WholeNodeOptions(seed=4, replication="all").nodes_quorum_first
    assert WholeNodeOptions(seed=5, replication="quorum-first").nodes_quorum_first
    replay = WholeNodeOptions(seed=4, replication="all").replay_command()
    assert replay.endswith(" --replication all")
    assert "--replication" not in WholeNodeOptions(seed=4).replay_command()
    assert main(["--whole-node", "--seed", "4", "--seconds", "1", "--workload", "kv"]) == 0
    cluster = [line for line in capsys.readouterr().out.splitlines() if "cluster:" in line]
    assert cluster and "quorum-first" in cluster[0]
