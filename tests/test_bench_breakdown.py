"""raft-bench --breakdown's arithmetic and probes (the numbers themselves come from
`make bench`, never from tests)."""

from pathlib import Path

from raftkv.cli.bench_breakdown import ProcessSample, raw_fdatasync_rate, report


def test_report_divides_each_node_s_counts_by_the_writes() -> None:
    before = ProcessSample(1.0, 100, 10, 5.0, 0.005)
    after = ProcessSample(1.5, 600, 110, 105.0, 0.105)
    table = report({"leader": after.minus(before)}, writes=1000, seconds=2.0)
    row = table.splitlines()[1].split()
    # 0.5 s of CPU over 1,000 writes; 500 I/O calls; 100 wake-ups; 100 syncs in 2 s of 1 ms
    assert row == ["leader", "500", "0.5", "0.1", "50", "1.000"]


def test_raw_fdatasync_rate_measures_and_cleans_up(tmp_path: Path) -> None:
    assert raw_fdatasync_rate(tmp_path, seconds=0.05) > 0
    assert list(tmp_path.iterdir()) == []
