"""`raft-sim`: run the deterministic simulator (SPEC §2, docs/simulator.md).

    raft-sim --seed S [--nodes N] [--ticks T] [--faults LIST] [--workload W] [--verbose]
             [--html FILE [--html-steps N]]
    raft-sim --golden
    raft-sim --sweep FIRST-LAST [--nodes N] [--ticks T] [--faults LIST] [--workload W]
             [--jobs N]

Exit status: 0 when every check passed, 1 on a violation (the seed and the command that
replays it are printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftkv.cli.version import add_version_flag
from raftkv.sim.golden import golden_lines
from raftkv.sim.options import (
    FAULT_KINDS,
    NODES_DEFAULT,
    REPLICATION_CHOICES,
    TICKS_DEFAULT,
    WORKLOADS,
    SimulationOptions,
    format_faults,
    parse_faults,
)
from raftkv.sim.replay import STEPS_DEFAULT, ReplayRecorder
from raftkv.sim.runner import SimulationResult, run_simulation
from raftkv.sim.sweep import describe_failures, resolve_jobs, run_seeds


def _faults(text: str) -> frozenset[str]:
    try:
        return parse_faults(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _seed_range(text: str) -> range:
    first, separator, last = text.partition("-")
    try:
        low = int(first)
        high = int(last) if separator else low
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, got {text!r}") from error
    if high < low:
        raise argparse.ArgumentTypeError(f"empty seed range {text!r}")
    return range(low, high + 1)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _jobs(text: str) -> int:
    """A worker count; 0 or `auto`: one per CPU."""
    if text == "auto":
        return 0
    try:
        jobs = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from error
    if jobs < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {jobs}")
    return jobs


# Virtual seconds of faults in a whole-node run (sim.whole_node.WholeNodeOptions.seconds).
WHOLE_NODE_SECONDS_DEFAULT = 6.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raft-sim",
        description="Run a Raft cluster on virtual time with injected faults; check safety"
        " after every step, liveness after healing, and linearizability at the end.",
    )
    add_version_flag(parser)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--seed", type=int, help="the seed that decides every random choice")
    mode.add_argument(
        "--golden", action="store_true", help="print the scripted golden-path transcript"
    )
    mode.add_argument(
        "--sweep", type=_seed_range, metavar="FIRST-LAST", help="run every seed in a range"
    )
    parser.add_argument("--nodes", type=int, default=NODES_DEFAULT, help="cluster size")
    parser.add_argument(
        "--ticks", type=int, default=TICKS_DEFAULT, help="ticks of faults before healing"
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default=frozenset(FAULT_KINDS),
        help=f"comma list of {', '.join(FAULT_KINDS)}; or all (default), none",
    )
    parser.add_argument(
        "--workload",
        choices=WORKLOADS,
        default=None,
        help="client mix (default kv; --whole-node: membership, i.e. kv plus joins,"
        " removals and leadership transfers)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print a transcript of events and RPCs"
    )
    parser.add_argument(
        "--no-leases",
        action="store_true",
        help="--whole-node: leave out the lease client (and its early-expiry check)",
    )
    parser.add_argument(
        "--no-follower-reads",
        action="store_true",
        help="--whole-node: followers answer linearizable reads 421 (raft-node"
        " --no-follower-reads), as before session 30, which the pinned seed ranges were"
        " found with",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="--seed: also write a self-contained HTML replay of the run to FILE",
    )
    parser.add_argument(
        "--html-steps",
        type=_positive,
        default=None,
        metavar="N",
        help=f"--html: keep at most N ticks, the last ones (default {STEPS_DEFAULT})",
    )
    parser.add_argument(
        "--whole-node",
        action="store_true",
        help="run real RaftServers (server runtime, storage, recovery) on a deterministic"
        " event loop, simulated disks and a faulty network; --seconds of faults",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=WHOLE_NODE_SECONDS_DEFAULT,
        help="--whole-node: virtual seconds of faults before healing",
    )
    parser.add_argument(
        "--watchers",
        type=_watchers,
        default=None,
        metavar="N",
        help="--whole-node: watchers of the clients' keys, checked at the end (default 2)",
    )
    parser.add_argument(
        "--wal-segment-bytes",
        type=_segment_bytes,
        default=None,
        metavar="N",
        help="--whole-node: the nodes' WAL segment size (default raft-node's 16 MiB); a few"
        " KiB makes segments rotate and get deleted behind snapshots all through a run",
    )
    parser.add_argument(
        "--sync-thread-min-entries",
        type=_not_negative,
        default=None,
        metavar="N",
        help="--whole-node: the nodes' --sync-thread-min-entries (default: 1 for odd seeds,"
        " 0 for even ones, so that a sweep runs both ways of syncing the WAL)",
    )
    parser.add_argument(
        "--read-rounds-inflight-max",
        type=_not_negative,
        default=None,
        metavar="N",
        help="--whole-node: ReadIndex rounds a leader keeps in flight (default raft-node's"
        " 1; 0: a round per Ready, as before, which the pinned seed ranges were found with)",
    )
    parser.add_argument(
        "--commit-notices",
        choices=("prompt", "lazy"),
        default=None,
        help="--whole-node: leaders tell followers of each commit at once (prompt, as before"
        " session 38, which the pinned seed ranges were found with) or with the next entries"
        " or tick (lazy, raft-node's default); default: by the seed, a quarter at once",
    )
    parser.add_argument(
        "--replication",
        choices=REPLICATION_CHOICES,
        default=None,
        help="how leaders replicate a lone write: to every follower at once (all, as before"
        " session 45, which the pinned seed ranges were found with) or to just enough voters"
        " to commit it, the others at the next tick (quorum-first, raft-node's default);"
        " default: by the seed, about half each",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="--sweep: seeds in N worker processes (default 1; 0 or auto: one per CPU);"
        " the output is the same for any N",
    )
    return parser


def _watchers(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 64:
        raise argparse.ArgumentTypeError(f"watchers are 0 to 64: {text!r}")
    return int(text)


def _not_negative(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return int(text)


def _segment_bytes(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1024 <= int(text) <= 1 << 30:
        raise argparse.ArgumentTypeError(f"a WAL segment is 1024 bytes to 1 GiB: {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader of a pipe (`raft-sim --verbose | head`) went away: stop quietly.
        sys.stderr.close()
        return 1


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.html is not None and (arguments.seed is None or arguments.whole_node):
        parser.error("--html applies to one core-mode run (--seed without --whole-node)")
    if arguments.html_steps is not None and arguments.html is None:
        parser.error("--html-steps applies to --html only")
    write = sys.stdout.write
    if arguments.golden:
        write("".join(line + "\n" for line in golden_lines()))
        return 0
    if arguments.jobs is not None and arguments.sweep is None:
        parser.error("--jobs applies to --sweep only")
    if arguments.watchers is not None and not arguments.whole_node:
        parser.error("--watchers applies to --whole-node only")
    if arguments.wal_segment_bytes is not None and not arguments.whole_node:
        parser.error("--wal-segment-bytes applies to --whole-node only")
    if arguments.sync_thread_min_entries is not None and not arguments.whole_node:
        parser.error("--sync-thread-min-entries applies to --whole-node only")
    if arguments.read_rounds_inflight_max is not None and not arguments.whole_node:
        parser.error("--read-rounds-inflight-max applies to --whole-node only")
    if arguments.no_follower_reads and not arguments.whole_node:
        parser.error("--no-follower-reads applies to --whole-node only")
    if arguments.commit_notices is not None and not arguments.whole_node:
        parser.error("--commit-notices applies to --whole-node only")
    if arguments.whole_node:
        return _whole_node(arguments)
    arguments.workload = arguments.workload or "kv"
    try:
        if arguments.sweep is not None:
            return _sweep(arguments)
        options = SimulationOptions(
            seed=arguments.seed,
            nodes=arguments.nodes,
            ticks=arguments.ticks,
            faults=arguments.faults,
            workload=arguments.workload,
            verbose=arguments.verbose,
            replication=arguments.replication,
        )
    except ValueError as error:
        parser.error(str(error))

    def sink(line: str) -> None:
        write(line + "\n")

    recorder = None
    if arguments.html is not None:
        recorder = ReplayRecorder(steps_max=arguments.html_steps or STEPS_DEFAULT)
    result = run_simulation(options, sink=sink, observer=recorder)
    write("".join(line + "\n" for line in result.report_lines()))
    if recorder is not None:
        _write_replay(arguments.html, recorder, result)
    return 0 if result.ok else 1


def _write_replay(path: Path, recorder: ReplayRecorder, result: SimulationResult) -> None:
    from raftkv.sim.replay_html import write_replay

    try:
        size = write_replay(path, recorder, result)
    except OSError as error:
        sys.stderr.write(f"raft-sim: cannot write {path}: {error.strerror or error}\n")
        raise SystemExit(2) from error
    # On stderr: stdout stays the same bytes with or without --html.
    sys.stderr.write(f"replay: {path} ({size} bytes)\n")


def _whole_node(arguments: argparse.Namespace) -> int:
    # Imported here: the server's modules cost every core-only run a quarter second.
    from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node, sweep_whole_node

    faults = bool(arguments.faults)
    membership = arguments.workload in (None, "membership")
    # Options given only when asked for: the defaults stay WholeNodeOptions' own.
    given: dict[str, Any] = {}
    if arguments.watchers is not None:
        given["watchers"] = arguments.watchers
    if arguments.wal_segment_bytes is not None:
        given["wal_segment_bytes"] = arguments.wal_segment_bytes
    if arguments.sync_thread_min_entries is not None:
        given["sync_thread_min_entries"] = arguments.sync_thread_min_entries
    if arguments.read_rounds_inflight_max is not None:
        given["read_rounds_inflight_max"] = arguments.read_rounds_inflight_max
    if arguments.commit_notices is not None:
        given["commit_notices"] = arguments.commit_notices
    if arguments.replication is not None:
        given["replication"] = arguments.replication
    write = sys.stdout.write
    if arguments.sweep is None:
        options = WholeNodeOptions(
            seed=arguments.seed,
            nodes=arguments.nodes,
            seconds=arguments.seconds,
            faults=faults,
            membership=membership,
            leases=not arguments.no_leases,
            follower_reads=not arguments.no_follower_reads,
            **given,
        )
        result = run_whole_node(options)
        write("".join(line + "\n" for line in result.report_lines()))
        return 0 if result.ok else 1
    seeds: range = arguments.sweep
    failures = 0
    runs = [
        WholeNodeOptions(
            seed=seed,
            nodes=arguments.nodes,
            seconds=arguments.seconds,
            faults=faults,
            membership=membership,
            leases=not arguments.no_leases,
            follower_reads=not arguments.no_follower_reads,
            **given,
        )
        for seed in seeds
    ]
    jobs = resolve_jobs(1 if arguments.jobs is None else arguments.jobs)
    for lines in sweep_whole_node(runs, jobs):
        if lines[-1] != "result: OK":
            failures += 1
            write("".join(line + "\n" for line in lines[-3:]))
    write(
        f"whole-node seeds {seeds.start}-{seeds.stop - 1} nodes={arguments.nodes}"
        f" seconds={arguments.seconds:g}: {len(seeds) - failures} ok, {failures} violations\n"
    )
    return 0 if failures == 0 else 1


def _sweep(arguments: argparse.Namespace) -> int:
    seeds: range = arguments.sweep
    outcomes = run_seeds(
        seeds,
        arguments.nodes,
        ticks=arguments.ticks,
        faults=arguments.faults,
        workload=arguments.workload,
        replication=arguments.replication,
        jobs=1 if arguments.jobs is None else arguments.jobs,
    )
    failures = [outcome for outcome in outcomes if not outcome.ok]
    out = sys.stdout
    if failures:
        out.write(describe_failures(failures) + "\n")
    out.write(
        f"seeds {seeds.start}-{seeds.stop - 1} nodes={arguments.nodes} ticks={arguments.ticks}"
        f" faults={format_faults(arguments.faults)} workload={arguments.workload}"
        + ("" if arguments.replication is None else f" replication={arguments.replication}")
        + f": {len(outcomes) - len(failures)} ok, {len(failures)} violations\n"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
