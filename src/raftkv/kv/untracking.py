"""Containers of keys the cyclic garbage collector need not walk (kv/untracked_strings.c says
why): the C module's `untrack_string_containers`, or, in a pure Python install, a stand-in
that leaves them tracked (correct, and full collections walk every key, as before)."""

from __future__ import annotations

try:
    from raftkv.kv.untracked_strings import untrack_string_containers
except ImportError:  # a pure Python install: no C module

    def untrack_string_containers(containers: list[list[str] | set[str]], /) -> int:
        return 0


__all__ = ["untrack_string_containers"]
