"""`raft-node`: run one Raft node (SPEC §1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Mapping

from raftkv.addresses import (
    WILDCARD_HOSTS,
    AddressError,
    default_client_address,
    default_peer_address,
    parse_address_list,
    parse_host_port,
)
from raftkv.cli import restore
from raftkv.cli.node_config import ConfigError, render
from raftkv.cli.node_config import parse as parse_configuration
from raftkv.cli.version import add_version_flag
from raftkv.errors import Corruption, DataDirMismatch, RaftError, StorageError
from raftkv.server import NodeOptions, RaftServer
from raftkv.server.auth import (
    PUBLIC_DEFAULT,
    PUBLIC_GROUPS,
    PUBLIC_NONE,
    AccessPolicy,
    TokenFileError,
    load_tokens,
    parse_public_groups,
)
from raftkv.server.idle_poll import IDLE_POLL_US_DEFAULT, IDLE_POLL_US_MAX
from raftkv.server.join import JoinFailed, join_cluster
from raftkv.server.logs import configure_logging
from raftkv.server.options import (
    READY_LAG_ENTRIES_DEFAULT,
    SNAPSHOT_ENTRIES_DEFAULT,
    SNAPSHOT_LOG_FRACTION_DEFAULT,
    SNAPSHOT_LOG_FRACTION_MAX,
    SYNC_THREAD_MIN_ENTRIES_DEFAULT,
)
from raftkv.server.watch_history import HISTORY_EVENTS_MAX_DEFAULT, HistoryLimits
from raftkv.server.watches import WATCHERS_MAX_DEFAULT, WatchLimits
from raftkv.tls import ClientPortTlsFiles, PeerTlsFiles, TlsError, TlsSettings, join_context
from raftkv.tls import check_settings as check_tls_settings
from raftkv.transport.base import ListenFailed

logger = logging.getLogger("raftkv.node")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CORRUPTION = 4


def _milliseconds_range(text: str) -> tuple[int, int]:
    low_text, separator, high_text = text.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if separator else 2 * low
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX milliseconds, got {text!r}") from None
    if not 0 < low < high:
        raise argparse.ArgumentTypeError("need 0 < MIN < MAX")
    return low, high


def _public_groups(text: str) -> str:
    """`--auth-public`, checked and written in one canonical form."""
    try:
        groups = parse_public_groups(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return ",".join(group for group in PUBLIC_GROUPS if group in groups) or PUBLIC_NONE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raft-node",
        description="Run one raftkv node.",
        epilog="Tools of their own, each with its --help: 'raft-node certs init DIR --nodes "
        "1,2,3 [--hosts ...]' writes a CA and TLS certificates; 'raft-node restore FILE --id N "
        "--peers ... --data-dir D' seeds a new cluster's data dir from a backup.",
    )
    add_version_flag(parser)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings, keyed by flag name (env RAFTKV_CONFIG); "
        "flags > RAFTKV_* environment variables > file > defaults",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML, each value's source, and exit",
    )
    parser.add_argument("--id", type=int, required=True, help="this node's id (1, 2, ...)")
    parser.add_argument("--peers", help="bootstrap a new cluster: '2,3' or '2=HOST:PORT,...'")
    parser.add_argument(
        "--single-node",
        action="store_true",
        help="bootstrap a new cluster of this node alone (others then --join it)",
    )
    parser.add_argument("--join", help="join a running cluster through a member's HOST:PORT")
    parser.add_argument("--data-dir", help="default ./data/node-N")
    parser.add_argument("--listen", help="peer address HOST:PORT (default 127.0.0.1:9000+N)")
    parser.add_argument("--client-listen", help="client address (default 127.0.0.1:8000+N)")
    parser.add_argument(
        "--advertise-peer",
        help="HOST:PORT peers are told to reach this node at (default: --listen; "
        "required when --listen is a wildcard address such as 0.0.0.0)",
    )
    parser.add_argument(
        "--advertise-client",
        help="HOST:PORT clients are told to reach this node at, in leader hints (default: "
        "--client-listen; required when that is a wildcard address such as 0.0.0.0)",
    )
    parser.add_argument(
        "--cluster-id",
        help="default: a random id, made by the founding member with the lowest id and "
        "learnt by the others",
    )
    parser.add_argument("--election-timeout-ms", type=_milliseconds_range, default=(150, 300))
    parser.add_argument("--heartbeat-ms", type=int, default=50)
    parser.add_argument("--tick-ms", type=int, default=10)
    parser.add_argument(
        "--snapshot-entries",
        type=int,
        default=SNAPSHOT_ENTRIES_DEFAULT,
        metavar="K",
        help="a snapshot is due once K entries were applied since the last one (or 64 MiB "
        "of commands, whichever comes first)",
    )
    parser.add_argument(
        "--snapshot-log-fraction",
        type=float,
        default=SNAPSHOT_LOG_FRACTION_DEFAULT,
        metavar="F",
        help="a snapshot of a state of 1 MiB or more also waits for commands adding up to F "
        "times its size since the last one, so that its cost per write stays the same "
        "however large the state grows (0: --snapshot-entries alone)",
    )
    parser.add_argument(
        "--sync-thread-min-entries",
        type=int,
        default=SYNC_THREAD_MIN_ENTRIES_DEFAULT,
        metavar="N",
        help="a Ready of at least N entries has its WAL fsync in a thread of its own while "
        "the node goes on serving; smaller ones are synced inline, but a leader's join its "
        "sync under way in that thread (0: always inline)",
    )
    parser.add_argument(
        "--idle-poll-us",
        type=int,
        default=IDLE_POLL_US_DEFAULT,
        metavar="US",
        help="after each Ready at low load that moves a client's request along, keep the "
        "CPU the event loop ran on out of halt for US microseconds with an idle-priority "
        "thread, so that the next message or request wakes the node without waking the "
        "CPU first (default 1000; 0: off)",
    )
    parser.add_argument("--seed", type=int, help="fix the election-timeout jitter")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=("human", "json"), default="human")
    parser.add_argument("--trace-rpc", action="store_true", help="print every RPC as JSON")
    parser.add_argument("--value-max-bytes", type=int, default=1 << 20)
    parser.add_argument(
        "--ready-lag-entries",
        type=int,
        default=READY_LAG_ENTRIES_DEFAULT,
        help="/readyz fails while this node has applied more than this many entries fewer "
        "than the commit index it knows",
    )
    parser.add_argument(
        "--watchers-max",
        type=int,
        default=WATCHERS_MAX_DEFAULT,
        help="watchers (GET /v1/watch) this node serves at once; more get 503 overloaded",
    )
    parser.add_argument(
        "--watch-history-events",
        type=int,
        default=HISTORY_EVENTS_MAX_DEFAULT,
        help="key changes kept for watchers to resume from (oldest dropped first; an older "
        "from_index is 410 compacted)",
    )
    parser.add_argument("--no-pre-vote", action="store_true")
    parser.add_argument("--no-check-quorum", action="store_true")
    parser.add_argument(
        "--no-follower-reads",
        action="store_true",
        help="a follower answers linearizable and lease reads 421 not_leader instead of "
        "asking the leader for a read index and reading its own state",
    )
    parser.add_argument(
        "--prompt-commit-notices",
        action="store_true",
        help="a leader tells the followers of every commit at once, in an AppendEntries of "
        "its own, instead of with the next entries or at its next tick (followers then "
        "apply sooner when writes pause, at the cost of a message and an answer per "
        "follower per write at low load)",
    )
    parser.add_argument(
        "--no-quorum-first",
        action="store_true",
        help="a leader sends every write to every follower at once, instead of a lone "
        "write to just enough voters to commit it and the rest with its next tick (the "
        "other followers then hold it a tick sooner, at the cost of a message and a sync "
        "per follower per write at low load)",
    )
    parser.add_argument(
        "--no-follower-batch-scheduling",
        action="store_true",
        help="keep the event loop's thread SCHED_OTHER while this node follows (by default "
        "it runs SCHED_BATCH then, so that a follower woken by the leader's messages does "
        "not preempt the leader where members share CPUs)",
    )
    parser.add_argument(
        "--auth-tokens",
        metavar="FILE",
        help="require 'Authorization: Bearer TOKEN' on the client port; FILE lists the "
        "tokens and their roles (TOML [[token]] tables: name, role, token or sha256)",
    )
    parser.add_argument(
        "--auth-public",
        type=_public_groups,
        default=PUBLIC_DEFAULT,
        metavar="LIST",
        help=f"with --auth-tokens, what needs no token: {', '.join(PUBLIC_GROUPS)} "
        f"(/livez and /readyz, /metrics), comma-separated, or {PUBLIC_NONE} "
        f"(default {PUBLIC_DEFAULT})",
    )
    parser.add_argument(
        "--join-token",
        metavar="TOKEN",
        help="the admin token --join presents to the cluster (better given as the "
        "environment variable RAFTKV_JOIN_TOKEN: a flag shows in the process list)",
    )
    _add_tls_flags(parser)
    return parser


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group(
        "TLS", "certificates (PEM files; `raft-node certs init` makes a set): SPEC §6"
    )
    tls.add_argument(
        "--peer-cert",
        metavar="FILE",
        help="mutual TLS between nodes: this node's certificate, naming node-N.raftkv "
        "(with --peer-key and --peer-ca)",
    )
    tls.add_argument("--peer-key", metavar="FILE", help="the private key of --peer-cert")
    tls.add_argument(
        "--peer-ca", metavar="FILE", help="the CA every peer's certificate must be signed by"
    )
    tls.add_argument(
        "--client-cert",
        metavar="FILE",
        help="serve HTTPS on the client port with this certificate (with --client-key)",
    )
    tls.add_argument("--client-key", metavar="FILE", help="the private key of --client-cert")
    tls.add_argument(
        "--client-ca",
        metavar="FILE",
        help="require client certificates signed by this CA on the HTTPS client port",
    )


def tls_settings_from(arguments: argparse.Namespace) -> TlsSettings:
    """The TLS files named by the flags; AddressError (a usage error) for an incomplete set."""
    peer_files = (arguments.peer_cert, arguments.peer_key, arguments.peer_ca)
    peer = None
    if any(peer_files):
        if not all(peer_files):
            raise AddressError("--peer-cert, --peer-key and --peer-ca go together: all or none")
        peer = PeerTlsFiles(*peer_files)
    client_port = None
    if arguments.client_cert or arguments.client_key:
        if not (arguments.client_cert and arguments.client_key):
            raise AddressError("--client-cert and --client-key go together")
        client_port = ClientPortTlsFiles(
            arguments.client_cert, arguments.client_key, arguments.client_ca
        )
    elif arguments.client_ca:
        raise AddressError("--client-ca needs --client-cert and --client-key (HTTPS)")
    return TlsSettings(peer=peer, client_port=client_port)


def _advertised(text: str | None) -> tuple[str, int] | None:
    """An advertised address: HOST:PORT, like every other address (an `http://` or
    `https://` prefix, as in a leader URL, is accepted and dropped); never a wildcard host."""
    if text is None:
        return None
    text = text.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
    address = parse_host_port(text)
    if address[0] in WILDCARD_HOSTS:
        raise AddressError(f"an advertised address must be dialable, not {text!r}")
    if address[1] == 0:
        raise AddressError(f"an advertised address needs a port, not 0: {text!r}")
    return address


def options_from(arguments: argparse.Namespace) -> NodeOptions:
    node_id = arguments.id
    if node_id <= 0:
        raise AddressError("--id must be a positive integer")
    if arguments.ready_lag_entries < 0:
        raise AddressError("--ready-lag-entries must be 0 or more")
    if arguments.sync_thread_min_entries < 0:
        raise AddressError("--sync-thread-min-entries must be 0 or more")
    if not 0 <= arguments.idle_poll_us <= IDLE_POLL_US_MAX:
        raise AddressError(f"--idle-poll-us must be from 0 to {IDLE_POLL_US_MAX}")
    if not 0 <= arguments.snapshot_log_fraction <= SNAPSHOT_LOG_FRACTION_MAX:
        raise AddressError(
            f"--snapshot-log-fraction must be from 0 to {SNAPSHOT_LOG_FRACTION_MAX:g}"
        )
    if arguments.watchers_max < 0 or arguments.watch_history_events < 1:
        raise AddressError("--watchers-max must be 0 or more, --watch-history-events 1 or more")
    peers = parse_address_list(arguments.peers, client_ports=False) if arguments.peers else {}
    peers.pop(node_id, None)
    if arguments.single_node and (peers or arguments.join):
        raise AddressError("--single-node founds a cluster alone: no --peers or --join with it")
    return NodeOptions(
        node_id=node_id,
        data_dir=arguments.data_dir or os.path.join("data", f"node-{node_id}"),
        listen=parse_host_port(arguments.listen)
        if arguments.listen
        else default_peer_address(node_id),
        client_listen=parse_host_port(arguments.client_listen)
        if arguments.client_listen
        else default_client_address(node_id),
        advertise_peer=_advertised(arguments.advertise_peer),
        advertise_client=_advertised(arguments.advertise_client),
        peers=peers,
        single_node=arguments.single_node,
        join=parse_host_port(arguments.join) if arguments.join else None,
        cluster_id=arguments.cluster_id,
        tick_ms=arguments.tick_ms,
        election_timeout_ms=arguments.election_timeout_ms,
        heartbeat_ms=arguments.heartbeat_ms,
        snapshot_entries=arguments.snapshot_entries,
        snapshot_log_fraction=arguments.snapshot_log_fraction,
        sync_thread_min_entries=arguments.sync_thread_min_entries,
        seed=arguments.seed,
        trace_rpc=arguments.trace_rpc,
        value_bytes_max=arguments.value_max_bytes,
        ready_lag_entries_max=arguments.ready_lag_entries,
        pre_vote=not arguments.no_pre_vote,
        check_quorum=not arguments.no_check_quorum,
        follower_reads=not arguments.no_follower_reads,
        defer_commit_notices=not arguments.prompt_commit_notices,
        quorum_first=not arguments.no_quorum_first,
        follower_batch_scheduling=not arguments.no_follower_batch_scheduling,
        idle_poll_us=arguments.idle_poll_us,
        join_token=arguments.join_token or None,
        tls=tls_settings_from(arguments),
        watch=WatchLimits(
            watchers_max=arguments.watchers_max,
            history=HistoryLimits(events_max=arguments.watch_history_events),
        ),
    )


def access_policy(arguments: argparse.Namespace) -> AccessPolicy:
    """Who may call what on the client port: the token file loaded and checked (raises
    TokenFileError), or everyone everything without `--auth-tokens`."""
    public = parse_public_groups(arguments.auth_public)
    if arguments.auth_tokens is None:
        return AccessPolicy(None, public)
    return AccessPolicy(load_tokens(arguments.auth_tokens), public)


def _has_state(data_dir: str) -> bool:
    return os.path.isdir(os.path.join(data_dir, "wal"))


# Python starts a full collection (the oldest generation) after every 10 of the middle one;
# raft-node, after every FULL_COLLECTIONS_AFTER. A full collection walks every tracked
# container, and a large state had big ones: the sorted keys' lists (4 ms a collection at
# 300,000 keys, alone). A loaded leader of such a state ran five in 20 s at C=64, of up to
# 12 ms each, all requests waiting; with 100, one. (Since session 51 those lists are not
# tracked at all, kv/untracked_strings.c: a full collection of a loaded leader with 1,000,000
# keys takes 0.5 ms; the spacing stays for whatever else a library user's state tracks.)
# Only garbage in reference cycles waits longer: everything else is freed when its last
# reference goes, as ever.
FULL_COLLECTIONS_AFTER = 100


def space_full_collections() -> None:
    """Full collections ten times further apart than Python's default (see above)."""
    youngest, middle, _ = gc.get_threshold()
    gc.set_threshold(youngest, middle, FULL_COLLECTIONS_AFTER)


def _freeze_startup_objects() -> None:
    """Move what is alive after start-up (modules, classes, functions: some 36,000 objects)
    out of the cyclic GC's reach, so full collections walk only what the node made since
    (each took 15-30 ms on the 2-core VM). The process is ours, so this is done here, not
    in RaftServer, which a library user may run inside their own program."""
    gc.collect()
    gc.freeze()


async def serve(options: NodeOptions) -> int:
    if options.join is not None and not _has_state(options.data_dir):
        info = await join_cluster(
            options.join,
            options.node_id,
            options.advertised_peer_address,
            options.join_token,
            ssl_context=join_context(options.tls),
        )
        options.cluster_id = options.cluster_id or info.cluster_id
        options.peers = {}
        server = RaftServer(options)
        server.peers.joined(info.peers, info.joined_index)
    else:
        if options.join is not None:
            logger.info("data dir already holds this node's state; ignoring --join")
            options.join = None
        server = RaftServer(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await server.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await server.stop()
        raise
    _freeze_startup_objects()
    space_full_collections()
    stopped = asyncio.create_task(stop.wait())
    removed = asyncio.create_task(server.peers.removed.wait())
    await asyncio.wait({stopped, removed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    removed.cancel()
    logger.info("shutting down")
    await server.shutdown_gracefully()
    return EXIT_OK


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["restore"]:
        # A subcommand with its own flags, before the node's parser (which it would fail).
        return restore.main(argv[1:])
    if argv[:1] == ["certs"]:
        # `raft-node certs init DIR ...`: a tool of its own, not a node's flags.
        from raftkv.cli import certs

        return certs.main(argv[1:])
    try:
        configuration = parse_configuration(
            build_parser, argv, os.environ if environ is None else environ
        )
    except ConfigError as error:
        print(f"raft-node: refusing to start: {error}", file=sys.stderr)
        return EXIT_ERROR
    arguments = configuration.arguments
    try:
        options = options_from(arguments)
    except AddressError as error:
        build_parser().error(str(error))
    if arguments.print_config:
        sys.stdout.write(render(configuration))
        return EXIT_OK
    configure_logging(arguments.id, arguments.log_level, arguments.log_format == "json")
    refusal = options.wildcard_refusal()
    if refusal is not None:
        logger.critical("refusing to start: %s", refusal)
        return EXIT_ERROR
    try:
        options.access = access_policy(arguments)
        check_tls_settings(options.tls, options.node_id)
    except (TokenFileError, TlsError) as error:
        logger.critical("refusing to start: %s", error)
        return EXIT_ERROR
    try:
        import uvloop

        return uvloop.run(serve(options))
    except Corruption as error:
        logger.critical("refusing to start: corrupt data: %s", error)
        return EXIT_CORRUPTION
    except (DataDirMismatch, ListenFailed, JoinFailed) as error:
        logger.critical("refusing to start: %s", error)
        return EXIT_ERROR
    except StorageError as error:
        logger.critical("storage error: %s", error)
        return EXIT_ERROR
    except (RaftError, OSError) as error:
        logger.critical("failed: %s", error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
