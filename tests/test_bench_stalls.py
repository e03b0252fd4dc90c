"""`raft-bench` says what stalls the nodes logged during the run (cli/bench_stalls.py),
read from their log files: the count of each kind, those a warning said it left out
included, and the longest one logged."""

from __future__ import annotations

from pathlib import Path

from raftkv.cli.bench_stalls import StallLogs, stall_summary

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


def test_stalls_go_to_the_row_whose_measurement_they_came_in(tmp_path: Path) -> None:
    """`--compare etcd` says in which rows raftkv's stalls came: each raftkv measurement
    takes what the logs gained while it ran; what came while etcd ran is set apart."""
    first, second = tmp_path / "node-1.log", tmp_path / "node-2.log"
    logs = StallLogs(lambda: [first, second, tmp_path / "node-3.log"])  # node 3: no log

    def log(path: Path, text: str) -> None:
        with path.open("a") as file:
            file.write(text)

    log(first, "09:00:00.000 node1 INFO    started\n")
    logs.skip()
    log(first, "09:00:01.000 node1 WARNING " + LOOP.format(120) + "\n")
    log(
        second,
        "09:00:01.100 node2 WARNING " + SYNC.format(150) + "; 2 more since the last such warning\n",
    )
    logs.take("write C=64")
    log(second, "09:00:02.000 node2 WARNING " + LOOP.format(300) + "\n")
    logs.skip()  # etcd's turn
    log(first, "09:00:03.000 node1 WARNING " + LOOP.format(180) + "\n")
    log(first, "09:00:03.500 node1 WARNING " + LOOP.format(999))  # still being written
    logs.take("write C=64")
    logs.take("read linearizable C=64")
    log(first, " ms (a blocking call): ...\n")  # the line ends: the next row takes it
    logs.take("write 1 MB C=4")
    assert logs.by_label().split(" · ") == [
        "write C=64: 3 slow WAL syncs (the longest logged 150 ms); 2 event-loop stalls"
        " (the longest logged 180 ms)",
        "write 1 MB C=4: no slow WAL syncs; 1 event-loop stalls (the longest logged 999 ms)",
        "between its measurements: no slow WAL syncs; 1 event-loop stalls (the longest"
        " logged 300 ms)",
    ]


def test_rows_without_stalls_say_so(tmp_path: Path) -> None:
    log = tmp_path / "node-1.log"
    log.write_text("09:00:00.000 node1 INFO    started\n")
    logs = StallLogs(lambda: [log])
    logs.take("write C=1")
    assert logs.by_label() == "none in any row"
