"""raftkv: a Raft consensus implementation with a sans-IO core."""

import os as _os
import sys as _sys


def __getattr__(name: str) -> str:
    """`raftkv.__version__`, read when first asked for: importing importlib.metadata takes
    about 50 ms, a third of a command's start-up, and most runs never need it."""
    if name != "__version__":
        raise AttributeError(f"module 'raftkv' has no attribute {name!r}")
    from importlib import metadata

    # One place for the version: pyproject.toml, as installed.
    try:
        version = metadata.version("raftkv")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "0+unknown"
    globals()["__version__"] = version
    return version


# The package directory, and whether it is a source checkout (an editable install).
_ROOT = _os.path.dirname(_os.path.abspath(__file__))
_CHECKOUT = _os.path.exists(_os.path.join(_ROOT, "..", "..", "pyproject.toml"))


def _import_sources_only() -> None:
    """Import every raftkv module from its .py file, ignoring the extensions that mypyc
    compiled next to them (setup.py), so tests that patch internals, profilers and debuggers
    see interpreted code without a rebuild."""
    from importlib.abc import PathEntryFinder
    from importlib.machinery import SOURCE_SUFFIXES, FileFinder, SourceFileLoader

    sources_only = FileFinder.path_hook((SourceFileLoader, SOURCE_SUFFIXES))

    def hook(path: str) -> PathEntryFinder:
        if path == _ROOT or path.startswith(_ROOT + _os.sep):
            return sources_only(path)
        raise ImportError("not a raftkv directory")  # the next hook takes it

    _sys.path_hooks.insert(0, hook)
    for path in [path for path in _sys.path_importer_cache if path.startswith(_ROOT)]:
        del _sys.path_importer_cache[path]


def _stale_extension() -> str | None:
    """In a checkout, the first source file (a .py, or a .c) edited after its extension was
    built: that extension would run the old code. (An installed wheel is never edited, and
    its files' times are the install's, so it is not checked.)"""
    for directory, _subdirectories, files in _os.walk(_ROOT):
        for name in files:
            if not name.endswith(".so"):
                continue
            extension = _os.path.join(directory, name)
            for suffix in (".py", ".c"):  # mypyc's, or one written in C (kv/snapshot_native.c)
                source = _os.path.join(directory, name.split(".", 1)[0] + suffix)
                if _os.path.exists(source) and (
                    _os.path.getmtime(source) > _os.path.getmtime(extension)
                ):
                    return source
    return None


# Why every module runs from its .py file, when something decided so at import.
_interpreted_because: str | None = None

if _os.environ.get("RAFTKV_PURE", "") not in ("", "0"):
    _interpreted_because = "RAFTKV_PURE is set"
    _import_sources_only()
elif _CHECKOUT and (_stale := _stale_extension()) is not None:
    import warnings as _warnings

    _interpreted_because = f"{_os.path.relpath(_stale)} is newer than its compiled extension"
    _warnings.warn(
        f"raftkv: {_interpreted_because}; running every module as pure Python (`make"
        " install` rebuilds the extensions)",
        RuntimeWarning,
        stacklevel=1,
    )
    _import_sources_only()


def running_code() -> str:
    """`compiled`, or `interpreted (why)`: what the benchmarks print beside their numbers.
    The warning above goes to stderr once, where a benchmark's node processes hide it, and
    the interpreted code is several times slower (a stale checkout measured that way once)."""
    from raftkv.core import node

    if node.__file__ is not None and not node.__file__.endswith(".py"):
        return "compiled"
    return f"interpreted ({_interpreted_because or 'installed without compiling'})"
