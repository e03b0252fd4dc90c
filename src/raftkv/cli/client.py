"""`raft-client`: the command line of SPEC §1 over `raftkv.client.RaftClient`.

Success goes to stdout in the SPEC's text forms (or the server's JSON with `--json`); every
error goes to stderr as one JSON line `{"error": CODE, ...}` and sets the exit code below.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from raftkv import errors
from raftkv.addresses import (
    AddressError,
    format_address,
    parse_address_list,
    parse_node_id,
)
from raftkv.cli.client_lease import add_lease_command, lease_command, lease_id
from raftkv.cli.client_lock import add_lock_command, lock_command, split_command
from raftkv.cli.client_snapshot import add_snapshot_command, snapshot_command
from raftkv.cli.client_watch import WatchUsageError, add_watch_command, watch_command
from raftkv.cli.version import add_version_flag
from raftkv.client import (
    CONSISTENCY_LEVELS,
    DEFAULT_TIMEOUT_SECONDS,
    CorruptLog,
    Forbidden,
    Inconsistent,
    NotLeader,
    RaftClient,
    RequestError,
    StatusReport,
    Unauthenticated,
    Unreachable,
    WriteResult,
    check_cluster,
)
from raftkv.client.check import corruption_in
from raftkv.client.endpoints import NodeAddress, split_url
from raftkv.client.errors import describe, refusal_among
from raftkv.client.limits import RANGE_PAGE_KEYS_MAX
from raftkv.client.protocol import KeyRangeQuery, NodeHealth, checked_token
from raftkv.client.text import format_table

EXIT_OK = 0
EXIT_ERROR = 1  # bad usage, not_found, cas_failed, bad input, anything else
# No answer within --timeout, or no leader reachable; or a write's outcome is unknown
# (`outcome_unknown`: an attempt got no answer and it may have been applied).
EXIT_TIMEOUT = 2
EXIT_NOT_LEADER = 3  # only with --target
EXIT_INCONSISTENT = 4  # check found differing applied state, or a node reports a corrupt log
EXIT_REFUSED = 5  # unauthenticated (no token, or one the node does not know) or forbidden
# 6: `watch` only, the cluster no longer holds the changes after the index asked for (410;
# client_watch.EXIT_COMPACTED).
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

CLUSTER_ENVIRONMENT_VARIABLE = "RAFT_CLUSTER"
TOKEN_ENVIRONMENT_VARIABLE = "RAFT_TOKEN"
# HTTPS (SPEC §6, "TLS"): the flags --cacert, --cert and --key, when not given.
CACERT_VARIABLE = "RAFT_CACERT"
CERT_VARIABLE = "RAFT_CERT"
KEY_VARIABLE = "RAFT_KEY"
DEFAULT_CLUSTER = "1,2,3"


class UsageError(Exception):
    """Bad arguments: reported as a JSON error line with exit 1, not argparse's exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _node_id(text: str) -> int:
    try:
        return parse_node_id(text)
    except AddressError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _node_url(text: str) -> str:
    """`--node`: a node's client address, `http(s)://HOST:PORT` or `HOST:PORT`."""
    try:
        split_url(text)
    except AddressError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def _cluster_nodes(text: str) -> dict[int, NodeAddress]:
    """`--cluster`: `parse_address_list`'s forms, where an address may also be an
    `http(s)://HOST:PORT` URL (kept as the URL, so its scheme counts)."""
    urls: dict[int, str] = {}
    items = []
    for item in text.split(","):
        node_text, separator, address_text = item.partition("=")
        if separator and "://" in address_text:
            node_id = parse_node_id(node_text)
            split_url(address_text)
            urls[node_id] = address_text.strip()
            items.append(str(node_id))  # a placeholder address, replaced below
        else:
            items.append(item)
    nodes: dict[int, NodeAddress] = dict(parse_address_list(",".join(items), client_ports=True))
    nodes.update(urls)
    return nodes


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"the timeout must be positive, got {text!r}")
    return seconds


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: the options are accepted before and after the command (`put x 2 --target 2`,
    # as SPEC §1 writes it), and a default on the subcommand must not hide a value given
    # before it; defaults are applied after parsing.
    parser.add_argument(
        "--cluster",
        metavar="LIST",
        default=argparse.SUPPRESS,
        help=f"nodes: 1,2,3 or 1=host:port,...  (default: ${CLUSTER_ENVIRONMENT_VARIABLE}, "
        f"else {DEFAULT_CLUSTER} on the default ports)",
    )
    parser.add_argument(
        "--target", type=_node_id, metavar="N", default=argparse.SUPPRESS, help="ask node N only"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="S",
        default=argparse.SUPPRESS,
        help=f"seconds per command, retries included (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON answers"
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        default=argparse.SUPPRESS,
        help=f"bearer token for nodes with --auth-tokens (default: ${TOKEN_ENVIRONMENT_VARIABLE},"
        " which, unlike a flag, does not show in the process list)",
    )
    parser.add_argument(
        "--cacert",
        dest="ca_file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"use HTTPS, trusting this CA (default: ${CACERT_VARIABLE}; https:// node URLs "
        "alone trust the system's CAs)",
    )
    parser.add_argument(
        "--cert",
        dest="cert_file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"present this client certificate over HTTPS (default: ${CERT_VARIABLE})",
    )
    parser.add_argument(
        "--key",
        dest="key_file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"the private key of --cert (default: ${KEY_VARIABLE})",
    )


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(text)


def _add_range_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--prefix", metavar="P", help="the keys starting with P, instead of KEY")
    command.add_argument("--start", metavar="A", help="the keys from A (inclusive), instead of KEY")
    command.add_argument("--end", metavar="B", help="the keys before B (exclusive), instead of KEY")


def _key_range(args: argparse.Namespace) -> KeyRangeQuery | None:
    """The range `get`/`del` name, or None for the single KEY; exactly one of them."""
    keys = KeyRangeQuery(args.prefix, args.start, args.end)
    named = keys != KeyRangeQuery()
    if named == (args.key is not None):
        raise UsageError("give KEY or a range (--prefix, or --start and/or --end), one of them")
    return keys if named else None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raft-client", description="Talk to a raftkv cluster.")
    add_version_flag(parser)
    _add_common_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        _add_common_options(subparser)
        return subparser

    put = command("put", "set KEY to VALUE")
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE")
    put.add_argument("--lease", type=lease_id, metavar="ID", help="attach KEY to lease ID")
    get = command("get", "print the value of KEY, or KEY=VALUE lines of a range")
    get.add_argument("key", metavar="KEY", nargs="?")
    get.add_argument("--consistency", choices=CONSISTENCY_LEVELS, default="linearizable")
    _add_range_options(get)
    get.add_argument("--keys-only", action="store_true", help="print a range's keys only")
    get.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="print at most N keys of a range (default: all, fetched page by page)",
    )
    delete = command("del", "delete KEY, or a range of keys as one write")
    delete.add_argument("key", metavar="KEY", nargs="?")
    _add_range_options(delete)
    txn = command("txn", "apply a transaction: its JSON object from FILE, or stdin")
    txn.add_argument("file", metavar="FILE", nargs="?", default="-", help="default: stdin")
    cas = command("cas", "set KEY to NEW if its value is EXPECTED")
    cas.add_argument("key", metavar="KEY")
    cas.add_argument("expected", metavar="EXPECTED")
    cas.add_argument("new", metavar="NEW")
    command("status", "a table of every node's state")
    command("check", "compare the nodes' applied state at a common index")
    members = command("members", "list, add or remove members")
    actions = members.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    add = actions.add_parser("add", help="add node ID at peer address ADDR")
    _add_common_options(add)
    add.add_argument("id", type=_node_id, metavar="ID")
    add.add_argument("address", metavar="ADDR")
    remove = actions.add_parser("remove", help="remove node ID")
    _add_common_options(remove)
    remove.add_argument("id", type=_node_id, metavar="ID")
    transfer = command("transfer-leader", "make node ID the leader")
    transfer.add_argument("id", type=_node_id, metavar="ID")
    health = command(
        "health", "whether each node is live and ready (GET /livez, /readyz); exit 0 if all ready"
    )
    health.add_argument(
        "--node",
        action="append",
        type=_node_url,
        metavar="URL",
        help="ask this node (http(s)://HOST:PORT or HOST:PORT; repeatable) instead of the cluster",
    )
    snapshot = command("snapshot", "save a backup of the cluster, or check a backup file")
    add_snapshot_command(snapshot, _Parser, _add_common_options)
    watch = command("watch", "print each change of keys starting with P as a JSON line")
    add_watch_command(watch)
    lease = command("lease", "grant, keep alive, revoke, list or inspect leases")
    add_lease_command(lease, _Parser, _add_common_options)
    lock = command(
        "lock",
        "run CMD (after `--`) holding the lock NAME, a key with a lease, as etcdctl lock does;"
        " without CMD hold it until interrupted",
    )
    add_lock_command(lock)
    return parser


# --- output ------------------------------------------------------------------------------
def _json_line(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _print_error(payload: dict[str, Any]) -> None:
    print(_json_line(payload), file=sys.stderr, flush=True)


def _print_write(result: WriteResult, as_json: bool) -> None:
    if as_json:
        print(_json_line(result.raw))
    else:
        print(f"OK leader={result.leader} index={result.index}")


def exit_code_for(error: errors.ClientError) -> int:
    if isinstance(error, errors.NotLeader):
        return EXIT_NOT_LEADER
    if isinstance(error, errors.Timeout | errors.NoLeader):
        return EXIT_TIMEOUT
    if isinstance(error, CorruptLog | Inconsistent):
        return EXIT_INCONSISTENT
    if isinstance(error, Unauthenticated | Forbidden):
        return EXIT_REFUSED
    return EXIT_ERROR


def _error_payload(error: errors.ClientError) -> dict[str, Any]:
    if isinstance(error, NotLeader):
        # Exactly SPEC §1's line: `{"error":"not_leader","leader":"node1"}`.
        return {"error": "not_leader", "leader": error.leader_name}
    return describe(error)


# --- commands ----------------------------------------------------------------------------
def _put(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    _print_write(client.put(args.key, args.value, args.lease), as_json)
    return EXIT_OK


def _get(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    keys = _key_range(args)
    if keys is not None:
        return _get_range(client, keys, args, as_json)
    if args.keys_only or args.limit is not None:
        raise UsageError("--keys-only and --limit belong to a range (--prefix, --start, --end)")
    result = client.get(args.key, args.consistency)
    print(_json_line(result.raw) if as_json else result.value)
    return EXIT_OK


def _get_range(
    client: RaftClient, keys: KeyRangeQuery, args: argparse.Namespace, as_json: bool
) -> int:
    """Print the range page by page (`--json`: each page's answer on a line), up to
    `--limit` keys."""
    left = args.limit
    pages = client.range_pages(
        keys.prefix,
        start=keys.start,
        end=keys.end,
        limit=None if left is None else min(left, RANGE_PAGE_KEYS_MAX),
        keys_only=args.keys_only,
        consistency=args.consistency,
    )
    for page in pages:
        kvs = page.kvs if left is None else page.kvs[:left]
        if as_json:
            print(_json_line(page.raw))
        else:
            for kv in kvs:
                print(kv.key if args.keys_only else f"{kv.key}={kv.value}")
        if left is not None:
            left -= len(kvs)
            if left <= 0:
                break
    return EXIT_OK


def _delete(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    keys = _key_range(args)
    if keys is None:
        _print_write(client.delete(args.key), as_json)
        return EXIT_OK
    result = client.delete_range(keys.prefix, start=keys.start, end=keys.end)
    if as_json:
        print(_json_line(result.raw))
    else:
        print(f"OK leader={result.leader} index={result.index} deleted={result.deleted}")
    return EXIT_OK


def _read_transaction(source: str) -> dict[str, Any]:
    """The transaction object of `raft-client txn`: compare, success and failure lists (a
    client_id or seq in it is left out: the client numbers its own writes)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        parsed = msgspec.json.decode(text)
    except (OSError, UnicodeDecodeError, msgspec.DecodeError) as error:
        raise UsageError(f"transaction {source}: {error}") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(parsed.get(part, []), list) for part in ("compare", "success", "failure")
    ):
        raise UsageError(
            f"transaction {source}: a JSON object of 'compare', 'success', 'failure' lists"
        )
    return parsed


def _txn(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    parts = _read_transaction(args.file)
    result = client.txn(
        parts.get("compare", []), parts.get("success", []), parts.get("failure", [])
    )
    if as_json:
        print(_json_line(result.raw))
        return EXIT_OK
    succeeded = "true" if result.succeeded else "false"
    print(f"OK succeeded={succeeded} leader={result.leader} index={result.index}")
    for answer in result.results:
        print(_json_line(answer))
    return EXIT_OK


def _cas(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    _print_write(client.cas(args.key, args.expected, args.new), as_json)
    return EXIT_OK


def _status_row(report: StatusReport) -> list[str]:
    status = report.status
    address = format_address(report.address)
    if status is None:
        role = "unreachable" if isinstance(report.error, Unreachable) else "error"
        return [str(report.node_id), role, *["-"] * 7, address]
    cells: list[object] = [
        status.id,
        status.role,
        status.term,
        status.leader,
        status.commit_index,
        status.last_applied,
        status.last_log_index,
        status.snapshot_index,
        status.log_entries,
    ]
    return ["-" if cell is None else str(cell) for cell in cells] + [address]


_STATUS_HEADER = [
    "ID",
    "ROLE",
    "TERM",
    "LEADER",
    "COMMIT",
    "APPLIED",
    "LAST_INDEX",
    "SNAPSHOT",
    "ENTRIES",
    "ADDRESS",
]
_STATUS_NUMERIC_COLUMNS = frozenset({0, *range(2, 9)})


def _status(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    reports = client.statuses()
    if client.target is not None:
        reports = [report for report in reports if report.node_id == client.target]
    if as_json:
        objects: list[dict[str, Any]] = []
        for report in reports:
            if report.status is not None:
                objects.append(report.status.raw)
            else:
                assert report.error is not None
                where = {"id": report.node_id, "address": format_address(report.address)}
                objects.append({**where, **describe(report.error)})
        print(_json_line(objects))
    else:
        rows = [_status_row(report) for report in reports]
        print(format_table(_STATUS_HEADER, rows, _STATUS_NUMERIC_COLUMNS))
    corruption = corruption_in(reports)
    if corruption is not None:
        raise corruption
    refusal = refusal_among(report.error for report in reports)
    if refusal is not None:
        raise refusal
    if not any(report.reachable for report in reports):
        message = f"no node answered within {client.timeout:g} s"
        raise Unreachable(message, {"message": message})
    return EXIT_OK


def _check(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    report = check_cluster(client)
    if report.consistent:
        if as_json:
            summary: dict[str, Any] = {"ok": True, "n": len(report.hashes)}
            summary |= {"index": report.index, "hash": report.majority_hash}
            summary["unreachable"] = report.unreachable
            print(_json_line(summary))
        else:
            print(f"OK n={len(report.hashes)} index={report.index} hash={report.majority_hash}")
        return EXIT_OK
    if not as_json:
        differing = set(report.differing_nodes())
        print(f"DIFFER index={report.index}")
        for node_id, applied_hash in sorted(report.hashes.items()):
            mark = " differs" if node_id in differing else ""
            print(f"node={node_id} hash={applied_hash}{mark}")
    raise report.to_error()


def _members(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    if args.action is not None:
        if args.action == "add":
            result = client.add_member(args.id, args.address)
        else:
            result = client.remove_member(args.id)
        if as_json:
            print(_json_line(result.raw))
        else:
            parts = ["OK"]
            if result.leader is not None:
                parts.append(f"leader={result.leader}")
            if result.index is not None:
                parts.append(f"index={result.index}")
            print(" ".join(parts))
        return EXIT_OK
    membership = client.members()
    if as_json:
        print(_json_line(membership.raw))
        return EXIT_OK
    header = ["ID", "ROLE", "ADDRESS", "CLIENT_ADDRESS", "LEADER"]
    rows = [
        [
            str(member.id),
            member.role,
            member.address,
            member.client_address or "-",
            "*" if member.id == membership.leader else "",
        ]
        for member in membership.members
    ]
    print(format_table(header, rows, frozenset({0})))
    return EXIT_OK


def _transfer_leader(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    result = client.transfer_leader(args.id)
    if as_json:
        print(_json_line(result.raw))
    else:
        print(f"OK leader={result.leader if result.leader is not None else args.id}")
    return EXIT_OK


def _url(client: RaftClient, address: tuple[str, int]) -> str:
    scheme = "https" if client.ssl_context is not None else "http"
    return f"{scheme}://{format_address(address)}"


def _node_line_name(client: RaftClient, health: NodeHealth, by_url: bool) -> str:
    url = _url(client, health.address)
    return url if by_url else f"{health.node_id} {url}"


def _health(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    """Exit 0 when every node asked is ready; 1 when one is not (its line says why, and a
    `not_ready` error line names it); 2 when none answered at all, as for `status`."""
    by_url = bool(getattr(args, "node", None))
    target = client.target
    reports = [client.health(target)] if target is not None else client.healths()
    if as_json:
        objects: list[dict[str, Any]] = []
        for report in reports:
            entry: dict[str, Any] = {
                "id": None if by_url else report.node_id,
                "url": _url(client, report.address),
                "live": report.live,
                "ready": report.ready,
                "checks": report.checks,
            }
            if report.readiness is not None:
                entry["readyz"] = report.readiness
            if report.error is not None:
                entry["error"] = describe(report.error)
            objects.append(entry)
        print(_json_line(objects))
    else:
        for report in reports:
            print(f"node {_node_line_name(client, report, by_url)}: {report.summary()}")
    refusal = refusal_among(report.error for report in reports)
    if refusal is not None:  # health routes not public (--auth-public) and no good token
        raise refusal
    if not any(report.live for report in reports):
        message = f"no node answered /livez within {client.timeout:g} s"
        raise Unreachable(message, {"message": message})
    failing = [report for report in reports if not report.ready]
    if failing:
        names = ", ".join(f"node {_node_line_name(client, report, by_url)}" for report in failing)
        message = f"{len(failing)} of {len(reports)} nodes not ready: {names}"
        payload = {
            "message": message,
            "nodes": [_url(client, report.address) for report in failing],
        }
        raise _NotReady(message, payload)
    return EXIT_OK


class _NotReady(RequestError):
    """`health`: a node is not live or not ready (exit 1)."""

    code = "not_ready"


_Command = Callable[[RaftClient, argparse.Namespace, bool], int]
_COMMANDS: dict[str, _Command] = {
    "put": _put,
    "get": _get,
    "del": _delete,
    "txn": _txn,
    "cas": _cas,
    "status": _status,
    "check": _check,
    "members": _members,
    "transfer-leader": _transfer_leader,
    "health": _health,
    "snapshot": snapshot_command,
    "watch": watch_command,
    "lease": lease_command,
    "lock": lock_command,
}


def _token(args: argparse.Namespace) -> str | None:
    token: str | None = getattr(args, "token", None)
    source = "--token"
    if token is None:
        token = os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None
        source = TOKEN_ENVIRONMENT_VARIABLE
    try:
        return checked_token(token)
    except ValueError as error:
        raise UsageError(f"{source}: {error}") from None


def _client(
    nodes: Mapping[int, NodeAddress],
    args: argparse.Namespace,
    *,
    timeout: float,
    target: int | None = None,
) -> RaftClient:
    """The client for `nodes`; HTTPS with --cacert, --cert and --key (each from its flag,
    else its environment variable) or with https:// URLs."""

    def setting(flag: str, variable: str) -> str | None:
        return getattr(args, flag, None) or os.environ.get(variable) or None

    try:
        return RaftClient(
            nodes,
            timeout=timeout,
            target=target,
            ca_file=setting("ca_file", CACERT_VARIABLE),
            cert_file=setting("cert_file", CERT_VARIABLE),
            key_file=setting("key_file", KEY_VARIABLE),
            token=_token(args),
        )
    except ValueError as error:  # TLS settings that do not fit (TlsError is one)
        raise UsageError(str(error)) from None


def _make_client(args: argparse.Namespace) -> RaftClient:
    target: int | None = getattr(args, "target", None)
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT_SECONDS)
    nodes: list[str] | None = getattr(args, "node", None)
    if nodes:
        # `health --node URL ...`: these nodes in place of the cluster (numbered in order;
        # their lines name them by URL).
        if target is not None:
            raise UsageError("--target and --node cannot be combined")
        return _client(dict(enumerate(nodes, start=1)), args, timeout=timeout)
    cluster_text = getattr(args, "cluster", None)
    source = "--cluster"
    if cluster_text is None:
        cluster_text = os.environ.get(CLUSTER_ENVIRONMENT_VARIABLE) or DEFAULT_CLUSTER
        source = CLUSTER_ENVIRONMENT_VARIABLE
    try:
        addresses = _cluster_nodes(cluster_text)
    except AddressError as error:
        raise UsageError(f"{source}: {error}") from None
    if target is not None and target not in addresses:
        names = ",".join(str(node_id) for node_id in addresses)
        raise UsageError(f"--target {target} is not in the cluster ({names})")
    return _client(addresses, args, timeout=timeout, target=target)


def _parse(argv: list[str]) -> argparse.Namespace:
    """The arguments; for `lock`, CMD is what follows the first `--`."""
    parser = build_parser()
    head, command = split_command(argv)
    if command is not None and "lock" in head:
        try:
            args = parser.parse_args(head)
        except UsageError:
            args = None  # not `lock NAME ... -- CMD`: another command's `--`
        if args is not None and args.command == "lock":
            args.cmd = command
            return args
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        client = _make_client(args)
    except UsageError as error:
        _print_error({"error": "bad_usage", "message": str(error)})
        return EXIT_ERROR
    except SystemExit as exit_request:  # --help
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_OK
    as_json = bool(getattr(args, "json", False))
    with client:
        try:
            return _COMMANDS[args.command](client, args, as_json)
        except errors.ClientError as error:
            _print_error(_error_payload(error))
            return exit_code_for(error)
        except (UsageError, WatchUsageError) as error:
            _print_error({"error": "bad_usage", "message": str(error)})
            return EXIT_ERROR
        except KeyboardInterrupt:
            _print_error({"error": "interrupted"})
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
