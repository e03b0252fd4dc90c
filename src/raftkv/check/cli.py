"""`raft-check HISTORY.jsonl`: check a recorded history for linearizability.

Exit codes: 0 linearizable, 1 not linearizable (with the explanation), 2 unknown (a search
budget ran out), 3 bad input (unreadable or invalid history file, or bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from raftkv.check.checker import check_history
from raftkv.check.history import HistoryError, dump_history, load_history
from raftkv.check.limits import MINIMIZE_CHECKS_MAX, SEARCH_STATES_MAX
from raftkv.cli.version import add_version_flag

EXIT_OK = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_UNKNOWN = 2
EXIT_BAD_INPUT = 3


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 on bad usage, which would read as "unknown"; raise instead.
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="raft-check",
        description="Check a key-value history (JSON lines, docs/history-format.md) for "
        "linearizability. Exit 0 linearizable, 1 not, 2 unknown (budget), 3 bad input.",
    )
    add_version_flag(parser)
    parser.add_argument("history", help="history file, one operation per line ('-': stdin)")
    parser.add_argument(
        "--max-states",
        type=int,
        default=SEARCH_STATES_MAX,
        help=f"search budget per key, in configurations (default {SEARCH_STATES_MAX})",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop and answer unknown after this long (default: no time limit)",
    )
    parser.add_argument(
        "--minimize-checks",
        type=int,
        default=MINIMIZE_CHECKS_MAX,
        help=f"searches spent shrinking a failure (default {MINIMIZE_CHECKS_MAX}; 0: off)",
    )
    parser.add_argument(
        "--minimal-out",
        metavar="PATH",
        help="on failure, write the minimal failing sub-histories here as JSON lines",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        arguments = _parser().parse_args(argv)
    except _UsageError as error:
        print(f"raft-check: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if arguments.max_states < 1 or arguments.minimize_checks < 0:
        print("raft-check: --max-states must be >= 1, --minimize-checks >= 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if arguments.history == "-":
            history = load_history(sys.stdin.buffer)
        else:
            history = load_history(arguments.history)
    except HistoryError as error:
        print(f"raft-check: bad history: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = check_history(
        history,
        max_states=arguments.max_states,
        time_budget_seconds=arguments.time_budget,
        minimize=arguments.minimize_checks > 0,
        minimize_checks_max=arguments.minimize_checks,
    )
    if result.ok:
        print(result.summary())
        return EXIT_OK
    print(result.explain())
    if result.ok is False and arguments.minimal_out:
        minimal = [op.operation for key in result.failed_keys for op in result.keys[key].minimal]
        try:
            dump_history(minimal, arguments.minimal_out)
        except OSError as error:
            print(f"raft-check: cannot write {arguments.minimal_out}: {error}", file=sys.stderr)
    return EXIT_NOT_LINEARIZABLE if result.ok is False else EXIT_UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
