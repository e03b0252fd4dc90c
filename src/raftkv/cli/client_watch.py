"""`raft-client watch [P] [--exact] [--start A] [--end B] [--from-index N] [--prev]`: print the
changes of a range as they are applied, one JSON line per event (SPEC §6, "Watches").

It runs until interrupted (Ctrl-C ends it with exit 0: that is how a watch is stopped). A
stream lost to a node's crash resumes on another node with no event missed or repeated. When
the cluster no longer holds the changes after the index asked for (410 `compacted`), it says
so and exits with its own code, 6, so a script can tell "start over from a fresh read" from
other failures.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from raftkv.client import RaftClient, WatchCompacted, WatchEvent
from raftkv.client.protocol import KeyRangeQuery

EXIT_COMPACTED = 6


class WatchUsageError(ValueError):
    """The watch's range is malformed (reported as `bad_usage`)."""


def add_watch_command(watch: argparse.ArgumentParser) -> None:
    watch.add_argument(
        "prefix", metavar="P", nargs="?", help="watch the keys starting with P (default: all)"
    )
    # Not `--key`: that is the common option naming the TLS client key file.
    watch.add_argument("--exact", action="store_true", help="P is one key, not a prefix")
    watch.add_argument("--start", metavar="A", help="the keys from A (inclusive), instead of P")
    watch.add_argument("--end", metavar="B", help="the keys before B (exclusive), instead of P")
    watch.add_argument(
        "--from-index",
        type=_index,
        metavar="N",
        help="the changes at log indexes after N (default: from now)",
    )
    watch.add_argument("--prev", action="store_true", help="events carry the value before")


def _index(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise argparse.ArgumentTypeError(f"not a log index: {text!r}")
    return int(text)


def event_json(event: WatchEvent) -> dict[str, Any]:
    """An event as its line is printed: the node's fields, those it did not send left out."""
    line: dict[str, Any] = {"type": event.type, "key": event.key}
    if event.value is not None:
        line["value"] = event.value
    line["mod_index"] = event.mod_index
    for name in ("create_index", "version", "prev_value"):
        value = getattr(event, name)
        if value is not None:
            line[name] = value
    return line


def watch_command(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    ranged = args.start is not None or args.end is not None
    if args.exact and (args.prefix is None or ranged):
        raise WatchUsageError("--exact needs P (the key) and no --start/--end")
    if args.prefix is not None and ranged:
        raise WatchUsageError("give P or --start/--end, not both")
    key = args.prefix if args.exact else None
    keys = KeyRangeQuery(None if args.exact else args.prefix, args.start, args.end)
    encode = msgspec.json.encode
    try:
        for event in client.watch(
            keys.prefix, key=key, start=keys.start, end=keys.end,
            from_index=args.from_index, prev=args.prev,
        ):  # fmt: skip
            sys.stdout.write(encode(event_json(event)).decode() + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0  # how a watch is ended
    except BrokenPipeError:
        return 0  # the reader (`| head`) has what it wanted
    except WatchCompacted as error:
        oldest = error.oldest_index
        message = (
            "the cluster no longer holds the changes after the index this watch asked for"
            f" (the oldest a watch may start from is {oldest}); read the keys afresh and"
            " watch from the index of that read"
        )
        payload = {"error": "compacted", "oldest_index": oldest, "message": message}
        print(encode(payload).decode(), file=sys.stderr, flush=True)
        return EXIT_COMPACTED
    raise AssertionError("unreachable: a watch has no end")
