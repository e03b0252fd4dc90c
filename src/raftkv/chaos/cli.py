"""`raft-chaos`: start a real cluster, run recorded clients against it while a seeded
nemesis kills, pauses, partitions, transfers leadership and changes membership; heal; read
every key; check the history for linearizability and the replicas for agreement; write
history.jsonl, nemesis.jsonl, latency.png, throughput.png and report.html.

Exit status: 0 linearizable and the replicas agree, 1 an anomaly (explained), 2 a usage or
environment error, 130 interrupted. Every process started is killed by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from raftkv.chaos.cluster import ChaosCluster
from raftkv.chaos.links import LinksKind, choose_links
from raftkv.chaos.nemesis import (
    Fault,
    FaultKind,
    Nemesis,
    NemesisLog,
    load_events,
    parse_kinds,
    schedule,
)
from raftkv.chaos.report import Summary, outcome_counts, write_report
from raftkv.chaos.verdict import (
    Linearizability,
    ReplicaAgreement,
    check_linearizable,
    check_replicas,
)
from raftkv.chaos.workload import client_process, final_reads
from raftkv.check import History, HistoryRecorder, dump_history
from raftkv.cli.version import add_version_flag

EXIT_OK = 0
EXIT_ANOMALY = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
NODES_MAX = 7
# After the fault phase: heal, elect, let the clients finish, read every key.
SETTLE_TIMEOUT_SECONDS = 30.0


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="raft-chaos",
        description="A Jepsen-style run against real raft-node processes: recorded clients, "
        "a seeded nemesis, a linearizability check and an HTML report (docs/chaos.md).",
    )
    add_version_flag(parser)
    parser.add_argument("--seed", type=int, default=None, help="nemesis and client seed")
    parser.add_argument("--seconds", type=float, default=60.0, help="fault phase (default 60)")
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument(
        "--nemesis",
        default="all",
        help="comma-separated: kill,pause,partition,transfer,membership; or all; or none",
    )
    parser.add_argument("--out", type=Path, default=Path("chaos-out"), help="output dir")
    parser.add_argument(
        "--links",
        choices=("auto", "nftables", "proxy"),
        default="auto",
        help="how partitions cut peer links (default: nftables when root, else proxies)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        kinds = parse_kinds("" if args.nemesis == "none" else args.nemesis)
        if args.seconds <= 0 or args.clients < 1 or not 1 <= args.nodes <= NODES_MAX:
            raise UsageError(f"--seconds > 0, --clients >= 1, 1 <= --nodes <= {NODES_MAX}")
        if kinds and args.nodes < 3:
            raise UsageError("faults need --nodes 3 or more (a majority must survive one)")
        links = choose_links("" if args.links == "auto" else args.links)
    except (UsageError, ValueError, RuntimeError) as error:
        print(f"raft-chaos: {error}", file=sys.stderr)
        return EXIT_USAGE
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    # SIGTERM ends a run as Ctrl-C does: through the `finally` that kills every node.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(seed, args.seconds, args.nodes, args.clients, kinds, args.out, links)
    except KeyboardInterrupt:
        print("raft-chaos: interrupted; every node killed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, TimeoutError, subprocess.CalledProcessError) as error:
        # The machine would not run the cluster: ports, processes, nft rules.
        print(f"raft-chaos: {error}", file=sys.stderr)
        return EXIT_USAGE


def _interrupt(signal_number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(
    seed: int,
    seconds: float,
    node_count: int,
    client_count: int,
    kinds: Sequence[FaultKind],
    out: Path,
    links: LinksKind,
) -> int:
    began = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    faults = schedule(seed, seconds, kinds)
    print(
        f"raft-chaos: seed {seed}, {node_count} nodes, {client_count} clients, "
        f"{len(faults)} faults ({', '.join(kinds) or 'none'}), links cut with {links}"
    )
    root = Path(tempfile.mkdtemp(prefix="raft-chaos-"))
    cluster = ChaosCluster(root, links)
    recorder = HistoryRecorder()
    stop_clients = threading.Event()
    try:
        for node_id in range(1, node_count + 1):
            cluster.add(node_id)
        for node_id in cluster.nodes:
            cluster.start(node_id, peers=cluster.nodes)
        cluster.wait_leader()
        addresses = {n.id: n.client_address for n in cluster.nodes.values()}
        workers = threading.Thread(
            target=_run_clients,
            args=(addresses, recorder, seed, client_count, stop_clients),
            name="raft-chaos-clients",
            daemon=True,
        )
        workers.start()
        try:
            events, replicas = _faults_then_settle(
                cluster, faults, seconds, out, recorder, addresses, stop_clients, workers
            )
        except TimeoutError as error:
            # Healed, the cluster must serve again: not doing so within a bounded wait is
            # an anomaly (of liveness), not an environment error.
            events = _read_events(out)
            replicas = ReplicaAgreement(False, f"the cluster did not recover: {error}")
    finally:
        stop_clients.set()
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    history = recorder.history()
    dump_history(history, out / "history.jsonl")
    return conclude(
        out,
        history,
        events,
        replicas,
        seed=seed,
        nodes=node_count,
        clients=client_count,
        kinds=kinds,
        links=links,
        began=began,
    )


def _faults_then_settle(
    cluster: ChaosCluster,
    faults: Sequence[Fault],
    seconds: float,
    out: Path,
    recorder: HistoryRecorder,
    addresses: dict[int, tuple[str, int]],
    stop_clients: threading.Event,
    workers: threading.Thread,
) -> tuple[list[dict[str, object]], ReplicaAgreement]:
    """The fault phase, healing, the clients' end, the final reads, replica agreement."""
    with open(out / "nemesis.jsonl", "w") as nemesis_file:
        nemesis = Nemesis(cluster, NemesisLog(nemesis_file))
        try:
            phase_start = time.monotonic()
            nemesis.run(faults, phase_start, stopped=lambda: False)
            # The clients go on to the end of the phase after the last fault.
            remaining = phase_start + seconds - time.monotonic()
            if remaining > 0:
                stop_clients.wait(remaining)
        finally:
            nemesis.heal_all()
    cluster.wait_leader(SETTLE_TIMEOUT_SECONDS)
    stop_clients.set()
    workers.join(SETTLE_TIMEOUT_SECONDS)
    asyncio.run(final_reads(addresses, recorder))
    with cluster.client() as client:
        return nemesis.log.events, check_replicas(client)


def _read_events(out: Path) -> list[dict[str, object]]:
    path = out / "nemesis.jsonl"
    return load_events(path) if path.exists() else []


def _run_clients(
    addresses: dict[int, tuple[str, int]],
    recorder: HistoryRecorder,
    seed: int,
    count: int,
    stop: threading.Event,
) -> None:
    async def everyone() -> None:
        await asyncio.gather(
            *(
                client_process(
                    f"c{n}",
                    addresses,
                    recorder,
                    random.Random(f"{seed}-{n}"),
                    stop,
                    # Every other client reads from any member, so that the faults meet
                    # reads on followers (served with the leader's read index) too.
                    read_from="any" if n % 2 else "leader",
                )
                for n in range(count)
            )
        )

    asyncio.run(everyone())


def conclude(
    out: Path,
    history: History,
    events: Sequence[dict[str, object]],
    replicas: ReplicaAgreement,
    *,
    seed: int,
    nodes: int,
    clients: int,
    kinds: Sequence[str],
    links: str,
    began: float,
) -> int:
    """Check the history, write the report, print the verdict; the exit status."""
    linearizable: Linearizability = check_linearizable(history)
    ok = linearizable.ok is True and replicas.ok is True
    seconds_taken = time.monotonic() - began
    summary = Summary(
        seed=seed,
        nodes=nodes,
        clients=clients,
        nemesis=list(kinds),
        links=links,
        seconds_taken=seconds_taken,
        linearizable=linearizable.summary,
        explanation=linearizable.explanation,
        replicas=replicas.summary,
        ok=ok,
    )
    write_report(out, summary, history, events)
    counts = outcome_counts(history)
    print(
        f"operations: {len(history.operations)} (ok {counts['ok']}, failed {counts['fail']}, "
        f"indeterminate {counts['unknown']}); faults: "
        f"{sum(1 for e in events if e['event'] == 'start')}"
    )
    print(f"linearizability: {linearizable.summary}")
    if linearizable.explanation:
        print(linearizable.explanation)
    print(f"replicas: {replicas.summary}")
    print(f"{'PASS' if ok else 'ANOMALY'} in {seconds_taken:.1f} s; report: {out / 'report.html'}")
    return EXIT_OK if ok else EXIT_ANOMALY
