"""`raft-bench` says what stalls the nodes logged during the run (cli/bench_stalls.py),
read from their log files: the count of each kind, those a warning said it left out
included, and the longest one logged."""

from __future__ import annotations

from pathlib import Path

from raftkv.cli.bench_stalls import stall_summary

SYNC = (
    "slow WAL sync: {} ms (the disk is slow or busy): what it holds counted as stored, and was"
    " acknowledged, only after it"
)
LOOP = (
    "the event loop stood still for {} ms (a blocking call, the process paused, or no CPU for"
    " it): no ticks, messages or requests were handled meanwhile"
)


def test_each_kind_is_counted_with_its_longest_and_those_left_out(tmp_path: Path) -> None:
    first, second = tmp_path / "node-1.log", tmp_path / "node-2.log"
    first.write_text(
        "\n".join(
            [
                "09:39:22.605 node1 INFO    snapshot taken at index 471558 term 2",
                "09:39:25.667 node1 WARNING " + SYNC.format(153),
                "09:39:27.001 node1 WARNING "
                + SYNC.format(121)
                + "; 4 more since the last such warning",
            ]
        )
    )
    second.write_text("09:39:25.668 node2 WARNING " + SYNC.format(208) + "\n" + "x\n")
    summary = stall_summary([first, second, tmp_path / "node-3.log"])  # node 3: no log
    assert summary == (
        "stalls of 100 ms or more the nodes logged: 7 slow WAL syncs (the longest logged"
        " 208 ms); no event-loop stalls"
    )


def test_no_warnings_say_so(tmp_path: Path) -> None:
    log = tmp_path / "node-1.log"
    log.write_text("09:00:00.000 node1 WARNING " + LOOP.format(250) + "\n")
    assert stall_summary([log]) == (
        "stalls of 100 ms or more the nodes logged: no slow WAL syncs; 1 event-loop stalls"
        " (the longest logged 250 ms)"
    )
    log.write_text("")
    assert stall_summary([log]) == (
        "stalls of 100 ms or more the nodes logged: no slow WAL syncs; no event-loop stalls"
    )
