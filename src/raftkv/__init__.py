"""raftkv: a Raft consensus implementation with a sans-IO core."""

from importlib import metadata

# One place for the version: pyproject.toml, as installed.
try:
    __version__ = metadata.version("raftkv")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
