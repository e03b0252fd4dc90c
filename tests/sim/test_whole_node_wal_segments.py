"""Small WAL segments in the whole-node simulator (`--wal-segment-bytes`): segments rotate and
obsolete ones are deleted, by the disk thread, all through a run with crashes, pauses and
failing disks. The first version of that deletion submitted to the real thread pool
directly; the simulator caught it (sweeps of 300 seeds: 6 runs where a crashed node's
thread deleted a segment its restarted self then could not), and replaying those seeds
alone passed. It now goes through the loop's run_in_executor, which the simulator runs."""

from __future__ import annotations

import threading

import pytest

from raftkv.cli.sim import main
from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node
from raftkv.storage.file_log import FileStorage

SEEDS = range(1, 13)
SEGMENT_BYTES = 1024


def test_segments_are_deleted_through_runs_that_stay_correct(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deleted: list[int] = []
    original = FileStorage._unlink_segments

    def counting(self: FileStorage, paths: list[str]) -> None:
        deleted.append(len(paths))
        original(self, paths)

    monkeypatch.setattr(FileStorage, "_unlink_segments", counting)
    threads = threading.active_count()
    for seed in SEEDS:
        result = run_whole_node(WholeNodeOptions(seed=seed, wal_segment_bytes=SEGMENT_BYTES))
        assert result.ok, "\n".join(result.report_lines())
    assert sum(deleted) > 20  # many deletions, not a few by chance
    # Every one ran on the simulated loop: a real thread would make runs irreproducible.
    assert threading.active_count() == threads


def test_a_run_with_deletions_replays_exactly() -> None:
    options = WholeNodeOptions(seed=10, wal_segment_bytes=SEGMENT_BYTES)
    first = run_whole_node(options).report_lines()
    assert run_whole_node(options).report_lines() == first
    assert options.replay_command().endswith(f"--wal-segment-bytes {SEGMENT_BYTES}")


def test_the_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--whole-node", "--seed", "1", "--wal-segment-bytes", "100"])
    assert "1024 bytes to 1 GiB" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--seed", "1", "--wal-segment-bytes", "4096"])
    assert "--whole-node only" in capsys.readouterr().err
