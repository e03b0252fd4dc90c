"""`--version` for every command: the release this installation is (raftkv.__version__)."""

from __future__ import annotations

import argparse

from raftkv import __version__


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"{parser.prog} (raftkv) {__version__}"
    )
