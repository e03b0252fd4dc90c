"""`raft-client lease grant|keep-alive|revoke|list|info` (SPEC §6, "Leases")."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import msgspec

from raftkv import errors
from raftkv.client import LeaseNotFound, RaftClient
from raftkv.client.leases import KEEPALIVES_PER_TTL
from raftkv.client.text import format_table


def lease_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0 or len(text) > 19:
        raise argparse.ArgumentTypeError(f"not a lease id (a positive integer): {text!r}")
    return int(text)


def _seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"a TTL is a positive whole number of seconds: {text!r}")
    return int(text)


def add_lease_command(
    lease: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
    add_common_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    actions = lease.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    actions.required = True

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        add_common_options(parser)
        return parser

    grant = action("grant", "grant a lease of TTL seconds; prints its id")
    grant.add_argument("ttl", type=_seconds, metavar="TTL")
    grant.add_argument("--id", type=lease_id, metavar="ID", help="this id instead of the index")
    keep = action("keep-alive", "keep lease ID alive until interrupted (or once, --once)")
    keep.add_argument("id", type=lease_id, metavar="ID")
    keep.add_argument("--once", action="store_true", help="one keepalive, then exit")
    revoke = action("revoke", "revoke lease ID, deleting its keys")
    revoke.add_argument("id", type=lease_id, metavar="ID")
    action("list", "every lease's id and TTL")
    info = action("info", "lease ID's TTL, remaining time and keys")
    info.add_argument("id", type=lease_id, metavar="ID")
    for parser in (info, actions.choices["list"]):
        parser.add_argument(
            "--consistency", choices=("linearizable", "lease", "stale"), default="linearizable"
        )


def _json_line(value: object) -> str:
    return msgspec.json.encode(value).decode()


def lease_command(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    action = args.action
    if action == "grant":
        granted = client.lease_grant(args.ttl, args.id)
        where = f"leader={granted.leader} index={granted.index}"
        print(
            _json_line(granted.raw) if as_json else f"OK id={granted.id} ttl={granted.ttl} {where}"
        )
    elif action == "keep-alive":
        return _keep_alive(client, args.id, args.once, as_json)
    elif action == "revoke":
        result = client.lease_revoke(args.id)
        print(
            _json_line(result.raw)
            if as_json
            else f"OK leader={result.leader} index={result.index} deleted={result.deleted}"
        )
    elif action == "list":
        listing = client.leases(args.consistency)
        if as_json:
            print(_json_line(listing.raw))
        else:
            rows = [[str(lease.id), str(lease.ttl)] for lease in listing.leases]
            print(format_table(["ID", "TTL"], rows, frozenset({0, 1})))
    else:
        info = client.lease_info(args.id, args.consistency)
        if as_json:
            print(_json_line(info.raw))
        else:
            remaining = "-" if info.remaining is None else f"{info.remaining:g}"
            print(f"id={info.id} ttl={info.ttl} remaining={remaining} keys={info.key_count}")
            for key in info.keys:
                print(key)
    return 0


def _keep_alive(client: RaftClient, lease: int, once: bool, as_json: bool) -> int:
    """Renew every TTL/3 until interrupted; a lease that is gone (`lease_not_found`) or not
    renewed for a whole TTL ends it with that error."""
    stop = threading.Event()  # waited on between keepalives; only Ctrl-C ends the wait
    safe_until: float | None = None
    while True:
        sent_at = time.monotonic()
        try:
            answer = client.lease_keep_alive(lease)
        except LeaseNotFound:
            raise
        except errors.ClientError:
            if once or safe_until is None or time.monotonic() >= safe_until:
                raise
            stop.wait(1.0)
            continue
        safe_until = sent_at + answer.ttl
        print(
            _json_line(answer.raw) if as_json else f"OK id={answer.id} ttl={answer.ttl}", flush=True
        )
        if once:
            return 0
        stop.wait(answer.ttl / KEEPALIVES_PER_TTL)
