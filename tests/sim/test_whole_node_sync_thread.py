"""The whole-node simulator runs both ways the Ready loop syncs the WAL: odd seeds with
`sync_thread_min_entries` 1 (every Ready with entries is synced through `run_in_executor`,
which the simulated loop runs later, frames and tasks stepping meanwhile), even seeds with 0
(always on the loop, as every seed before the sync thread: their runs, and the proofs of
reach pinned on them, are unchanged). `--sync-thread-min-entries` chooses for every seed."""

from __future__ import annotations

import threading

import pytest

from raftkv.cli.sim import main
from raftkv.core.ready import Ready
from raftkv.server.options import SYNC_THREAD_MIN_ENTRIES_DEFAULT
from raftkv.server.ready_durability import ReadyDurability
from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node


def count_thread_syncs(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    decisions: list[bool] = []
    original = ReadyDurability._sync_in_thread

    def recording(self: ReadyDurability, ready: Ready) -> bool:
        decision = original(self, ready)
        decisions.append(decision)
        return decision

    monkeypatch.setattr(ReadyDurability, "_sync_in_thread", recording)
    return decisions


@pytest.mark.interpreted  # records ReadyDurability._sync_in_thread, which compiled callers skip
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_odd_seeds_sync_in_the_thread_and_even_seeds_never(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions = count_thread_syncs(monkeypatch)
    threads = threading.active_count()
    result = run_whole_node(WholeNodeOptions(seed=seed))
    assert result.ok, "\n".join(result.report_lines())
    in_thread = sum(decisions)
    if seed % 2:
        assert in_thread > 10, in_thread
    else:
        assert in_thread == 0
    assert len(decisions) > in_thread  # a Ready without entries is synced on the loop
    # The "thread" is the simulated loop's: a real one would make runs irreproducible.
    assert threading.active_count() == threads


@pytest.mark.interpreted
def test_the_option_overrides_the_seed_and_replays_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decisions = count_thread_syncs(monkeypatch)
    # raft-node's default: batches in the thread, single entries on the loop.
    options = WholeNodeOptions(seed=2, sync_thread_min_entries=SYNC_THREAD_MIN_ENTRIES_DEFAULT)
    first = run_whole_node(options)
    assert first.ok, "\n".join(first.report_lines())
    assert any(decisions)
    assert run_whole_node(options).report_lines() == first.report_lines()
    assert options.replay_command().endswith(
        f" --sync-thread-min-entries {SYNC_THREAD_MIN_ENTRIES_DEFAULT}"
    )
    assert WholeNodeOptions(seed=3).replay_command().endswith("--seconds 6")


def test_the_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--whole-node", "--seed", "1", "--sync-thread-min-entries", "-1"])
    assert "expected 0 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--seed", "1", "--sync-thread-min-entries", "2"])
    assert "--whole-node only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must not be negative"):
        WholeNodeOptions(seed=1, sync_thread_min_entries=-1)
