"""`--version` for every command: the release this installation is (raftkv.__version__)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


class _VersionAction(argparse.Action):
    """argparse's "version" action, but asking for the version only when --version is
    given: reading it imports importlib.metadata, a third of every command's start-up."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest=dest,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        from raftkv import __version__

        print(f"{parser.prog} (raftkv) {__version__}", file=sys.stdout)
        parser.exit()


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_VersionAction)
