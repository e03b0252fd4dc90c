"""`raft-bench --compare etcd`'s bookkeeping (cli/bench_etcd.py): each row measured on both
systems, alternating which goes first, the medians reported with their ratio. The real run
needs etcd and wrk (`raft-bench --compare etcd`); here the measuring is a stand-in."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from raftkv.cli import bench, bench_etcd
from raftkv.cli.bench_stalls import StallLogs


def test_rows_alternate_which_system_goes_first_and_report_medians(tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []
    rates = {"raftkv": iter([100.0, 300.0, 200.0]), "etcd": iter([50.0, 10.0, 40.0])}

    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]:
        system = "raftkv" if url.startswith("http://r") else "etcd"
        calls.append((system, script.read_text() if script is not None else ""))
        return {"rate": next(rates[system]), "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0.0}

    rows = bench_etcd.workloads("http://raftkv", "http://etcd")[:1]  # write C=1
    results = bench_etcd.compare(rows, measure, tmp_path, seconds=1, repetitions=3)
    assert [system for system, _ in calls] == ["raftkv", "etcd", "etcd", "raftkv", "raftkv", "etcd"]
    ((row, ours, theirs),) = results
    assert (row.name, ours["rate"], theirs["rate"]) == ("write C=1", 200.0, 40.0)
    assert "5.00x" in bench_etcd.report(results)
    # Every run writes keys of its own: no script repeats another's starting number.
    scripts = [script for _, script in calls]
    assert len(set(scripts)) == len(scripts)
    assert all("START" not in script and "VALUE" not in script for script in scripts)


def test_rows_can_be_chosen_by_name_and_an_unknown_name_lists_the_rows() -> None:
    rows = bench_etcd.workloads("http://raftkv", "http://etcd")
    assert bench_etcd.select_rows(rows, None) == rows
    chosen = bench_etcd.select_rows(rows, "write C=64, write C=16")
    assert [row.name for row in chosen] == ["write C=16", "write C=64"]
    with pytest.raises(SystemExit, match=r"no row 'write C=32'.*'write C=64'"):
        bench_etcd.select_rows(rows, "write C=16,write C=32")
    with pytest.raises(SystemExit, match="rows:"):
        bench_etcd.select_rows(rows, " , ")


def test_both_systems_get_the_same_request_shapes() -> None:
    rows = bench_etcd.workloads("http://raftkv", "http://etcd")
    assert [row.name for row in rows] == [
        "write C=1",
        "write C=16",
        "write C=64",
        "write 1 MB C=4",
        "read linearizable C=1",
        "read linearizable C=64",
    ]
    for row in rows[:3]:
        (_, ours), (_, theirs) = row.raftkv, row.etcd
        assert ours is not None and theirs is not None
        assert bench_etcd.VALUE in ours and 'b64("' + bench_etcd.VALUE in theirs
    large = rows[3]
    assert large.raftkv[1] is not None and large.etcd[1] is not None
    assert "v" * bench_etcd.LARGE_VALUE_BYTES in large.raftkv[1]
    assert "START" in large.etcd[1] and "ENCODED" not in large.etcd[1]
    reads = rows[4]
    assert reads.raftkv[0].endswith(f"/v1/kv/{bench_etcd.READ_KEY}")
    assert reads.etcd[0].endswith("/v3/kv/range")


def test_preload_rounds_continue_where_the_last_one_ended(tmp_path: Path) -> None:
    """Each wrk round starts at the key after the previous round's completed requests, so
    `--preload-keys N` writes N distinct keys on both systems (a counter from 0 in every
    round wrote the same first keys again and again)."""
    done = iter([400.0, 350.0, 300.0])
    starts: list[str] = []

    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]:
        assert script is not None
        text = script.read_text()
        starts.append(text.split("counter = ", 1)[1].split(" ", 1)[0])
        assert "KEYS" not in text and "VALUE" not in text and "START" not in text
        return {"rate": 0.0, "requests": next(done)}

    bench_etcd.preload_etcd("http://etcd", 1000, 64, measure, tmp_path)
    assert starts == ["0", "400", "750"]
    starts.clear()
    done = iter([600.0, 500.0])
    raftkv_script = bench.PRELOAD_SCRIPT.replace("KEYS", "1000").replace("VALUE", "v")
    bench.preload_in_rounds("http://raftkv", 1000, raftkv_script, tmp_path / "p.lua", measure)
    assert starts == ["0", "600"]


def test_preload_that_makes_no_progress_stops_with_a_message(tmp_path: Path) -> None:
    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]:
        return {"rate": 0.0, "requests": 0.0}

    with pytest.raises(SystemExit, match="made no progress"):
        bench_etcd.preload_etcd("http://etcd", 10, 64, measure, tmp_path)


FAKE_WRK = """#!/bin/sh
# A stand-in for wrk: keeps the script it was given, prints what wrk prints.
while [ $# -gt 0 ]; do
  if [ "$1" = "-s" ]; then cp "$2" "$(dirname "$0")/script-seen.lua"; fi
  shift
done
cat <<'OUTPUT'
Running 1s test @ http://127.0.0.1:1
  1 threads and 64 connections
  Latency Distribution
     50%    1.50ms
     75%    2.00ms
     90%    3.00ms
     99%    9.25ms
  12345 requests in 1.00s, 1.00MB read
Requests/sec:  12345.00
Transfer/sec:      1.00MB
p99.9 latency: 23456 us
OUTPUT
"""


def test_every_run_reports_its_p99_9_from_wrk_s_done_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wrk's --latency stops at p99; the comparison's p99.9 target needs its done() hook,
    added to every run's script (a run without one gets the hook alone)."""
    fake = tmp_path / "wrk"
    fake.write_text(FAKE_WRK)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    script = tmp_path / "put.lua"
    script.write_text("request = function() return wrk.format('PUT', '/v1/kv/k') end\n")
    result = bench.run_wrk("http://127.0.0.1:1", 64, 1, script)
    assert (result["rate"], result["p50_ms"], result["p99_ms"]) == (12345.0, 1.5, 9.25)
    assert result["p999_ms"] == 23.456
    seen = (tmp_path / "script-seen.lua").read_text()
    assert seen.startswith(script.read_text()) and "latency:percentile(99.9)" in seen
    assert bench.run_wrk("http://127.0.0.1:1", 1, 1, None)["p999_ms"] == 23.456
    assert (tmp_path / "script-seen.lua").read_text() == bench.P999_HOOK


def test_the_comparison_reports_p99_9_last() -> None:
    row = bench_etcd.workloads("http://raftkv", "http://etcd")[2]  # write C=64
    ours = {"rate": 300.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0.0, "p999_ms": 7.5}
    theirs = {"rate": 100.0, "p50_ms": 3.0, "p99_ms": 4.0, "errors": 1.0, "p999_ms": 30.25}
    header, line = bench_etcd.report([(row, ours, theirs)]).splitlines()
    assert header.endswith("errors    p99.9 ms raftkv/etcd")
    assert line.endswith("7.50 / 30.25") and "3.00x" in line and "0/1" in line


def test_each_run_counts_the_cpu_of_the_measured_system_s_members_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both clusters run at once: a row's CPU is what *its* system's processes used while it
    ran (read from their counters before and after), per request, beside wrk's own."""
    used = {1: 0.0, 2: 0.0, 3: 0.0, 7: 0.0, 8: 0.0}  # CPU seconds so far, per pid
    monkeypatch.setattr(bench_etcd, "cpu_seconds", lambda pid: used[pid])

    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]:
        if url.startswith("http://r"):  # raftkv: 0.3 s over its three members
            used[1] += 0.2
            used[2] += 0.05
            used[3] += 0.05
            wrk = 0.1
        else:  # etcd: 0.9 s; raftkv's members keep (a little) background work going
            used[7] += 0.8
            used[8] += 0.1
            used[1] += 0.01
            wrk = 0.2
        return {"rate": 1000.0, "requests": 1000.0, "wrk_cpu_seconds": wrk, "seconds": 1.0}

    rows = bench_etcd.workloads("http://raftkv", "http://etcd")[:1]
    processes = {"raftkv": lambda: [1, 2, 3], "etcd": lambda: [7, 8]}
    ((_, ours, theirs),) = bench_etcd.compare(
        rows, measure, tmp_path, seconds=1, repetitions=3, processes=processes
    )
    assert ours["members_cpu_us"] == pytest.approx(300.0)  # 0.3 s / 1,000 requests
    assert ours["wrk_cpu_us"] == pytest.approx(100.0)
    assert ours["cores"] == pytest.approx(0.4)
    assert theirs["members_cpu_us"] == pytest.approx(900.0)
    assert theirs["cores"] == pytest.approx(1.1)
    table = bench_etcd.cpu_report([(rows[0], ours, theirs)]).splitlines()
    assert table[1].split()[:3] == ["operation", "µs/req", "raftkv/etcd"]
    assert table[2].startswith("write C=1") and "400 / 1100" in table[2]
    assert "2.75x" in table[2] and "0.40 / 1.10" in table[2]


def test_a_member_gone_mid_row_leaves_its_cpu_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(pid: int) -> float:
        raise FileNotFoundError(f"/proc/{pid}/stat")

    monkeypatch.setattr(bench_etcd, "cpu_seconds", gone)
    assert math.isnan(bench_etcd.members_cpu_seconds([1, 2]))
    assert math.isnan(bench_etcd.members_cpu_seconds([]))
    result = bench_etcd.with_cpu({"requests": 10.0, "wrk_cpu_seconds": 0.1, "seconds": 1.0}, 0.5)
    assert result["members_cpu_us"] == pytest.approx(50_000.0)
    assert math.isnan(bench_etcd.with_cpu({"requests": 0.0}, 0.5)["members_cpu_us"])


def test_reads_spread_over_every_member_run_a_wrk_thread_per_member(tmp_path: Path) -> None:
    rows = bench_etcd.workloads(
        "http://raftkv", "http://etcd", [5001, 5002, 5003], [2379, 2381, 2383]
    )
    spread = rows[-1]
    assert (spread.name, spread.connections, spread.threads) == (
        "read linearizable C=64 all members",
        64,
        3,
    )
    raftkv_url, raftkv_script = spread.raftkv
    etcd_url, etcd_script = spread.etcd
    assert raftkv_url == "http://raftkv/v1/kv/bench-key" and etcd_url == "http://etcd/v3/kv/range"
    assert raftkv_script is not None and "{5001, 5002, 5003}" in raftkv_script
    assert etcd_script is not None and "{2379, 2381, 2383}" in etcd_script
    assert all("thread.addr" in script for script in (raftkv_script, etcd_script))
    assert etcd_script.endswith(bench_etcd.ETCD_READ_SCRIPT.replace("KEY", "YmVuY2gta2V5"))
    # Without the ports (a caller that has none), no such row; the others are the same.
    assert [row.name for row in bench_etcd.workloads("http://raftkv", "http://etcd")] == [
        row.name for row in rows[:-1]
    ]
    threads: list[int] = []

    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads_: int = 1
    ) -> dict[str, float]:
        threads.append(threads_)
        return {"rate": 1.0, "p50_ms": 1.0, "p99_ms": 1.0, "errors": 0.0}

    bench_etcd.compare([rows[0], spread], measure, tmp_path, seconds=1, repetitions=1)
    assert threads == [1, 1, 3, 3]


def test_wrk_is_given_the_threads_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "wrk"
    fake.write_text(FAKE_WRK.replace("while", 'echo "$@" > "$(dirname "$0")/args-seen"\nwhile', 1))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    bench.run_wrk("http://127.0.0.1:1", 64, 1, None, 3)
    assert (tmp_path / "args-seen").read_text().startswith("-t 3 -c 64 ")
    bench.run_wrk("http://127.0.0.1:1", 64, 1, None)
    assert (tmp_path / "args-seen").read_text().startswith("-t 1 -c 64 ")


def test_a_long_row_name_widens_the_first_column_of_both_tables() -> None:
    rows = bench_etcd.workloads("http://raftkv", "http://etcd", [1, 2, 3], [4, 5, 6])
    figures = {"rate": 1234.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0.0, "p999_ms": 3.0}
    figures.update(members_cpu_us=90.0, wrk_cpu_us=10.0, cores=1.5)
    results = [(row, figures, figures) for row in (rows[0], rows[-1])]
    for table, column, value in (
        (bench_etcd.report(results), "raftkv/s", "1234"),
        (bench_etcd.cpu_report(results), "µs/req raftkv/etcd", "100 / 100"),
    ):
        header, *lines = table.splitlines()[-3:]
        end = header.index(column) + len(column)
        for line in lines:
            assert line[:end].endswith(" " + value), (line, header)


def test_raftkv_s_stalls_are_taken_by_the_row_being_measured(tmp_path: Path) -> None:
    """A stall logged while raftkv's measurement of a row ran goes to that row; one logged
    while etcd's ran does not (raft-bench prints both: cli/bench_stalls.py)."""
    log = tmp_path / "node-1.log"
    log.write_text("")
    loop_stall = "WARNING the event loop stood still for {} ms (...)\n"

    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]:
        with log.open("a") as file:
            if url.startswith("http://raftkv") and connections == 64:
                file.write(loop_stall.format(140))
            elif url.startswith("http://etcd") and connections == 16:
                file.write(loop_stall.format(400))
        return {"rate": 1.0, "requests": 1.0, "wrk_cpu_seconds": 0.0, "seconds": 1.0}

    stalls = StallLogs(lambda: [log])
    rows = bench_etcd.workloads("http://raftkv", "http://etcd")[:3]  # writes at C=1, 16, 64
    bench_etcd.compare(rows, measure, tmp_path, seconds=1, repetitions=2, raftkv_stalls=stalls)
    assert stalls.by_label().split(" · ") == [
        "write C=64: no slow WAL syncs; 2 event-loop stalls (the longest logged 140 ms)",
        "between its measurements: no slow WAL syncs; 2 event-loop stalls (the longest"
        " logged 400 ms)",
    ]
