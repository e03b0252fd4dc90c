"""Key ranges (SPEC §6, "Ranges"): which keys a range names, the sorted index the store
answers them from, and the opaque token a page continues after."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from sortedcontainers import SortedList

from raftkv.kv.untracking import untrack_string_containers

# The largest code point: a prefix of only these has no key after all its extensions.
_LAST_CHARACTER = chr(0x10FFFF)


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys from `start` (inclusive) to `end` (exclusive; None: no end), in code point
    order (Python's `str` order; for UTF-8 keys the same as byte order)."""

    start: str = ""
    end: str | None = None

    @classmethod
    def prefix(cls, prefix: str) -> KeyRange:
        """Every key starting with `prefix`: up to the first string after all of them."""
        stem = prefix.rstrip(_LAST_CHARACTER)
        if not stem:
            return cls(prefix, None)
        return cls(prefix, stem[:-1] + chr(ord(stem[-1]) + 1))

    def __contains__(self, key: str) -> bool:
        return self.start <= key and (self.end is None or key < self.end)


class SortedKeys:
    """The store's keys in order, kept beside its dict so that a range costs a binary
    search plus the keys it returns, and a single-key write O(log n) only when it creates
    or deletes a key (sortedcontainers: about 2 µs an insert at 200,000 keys).

    The SortedList keeps the keys in lists of about a thousand strings each (its `_lists`),
    which the cyclic garbage collector would visit key by key at every full collection
    (11.7 ms at 1,000,000 keys alone, 19-33 ms on a loaded node, every request waiting).
    Holding only strings, they can be in no reference cycle, so each is untracked as it
    appears (kv/untracked_strings.c): when the list is built, when an insert splits a list
    in two, and after a range is removed (which may rebuild them)."""

    def __init__(self, keys: list[str] | None = None) -> None:
        self._keys: SortedList[str] = SortedList(keys or ())
        self._sublists = 0
        self._untrack_sublists()

    def _untrack_sublists(self) -> None:
        lists: list[list[str] | set[str]] = self._keys._lists  # type: ignore[attr-defined]
        untrack_string_containers(lists)
        self._sublists = len(lists)

    def add(self, key: str) -> None:
        keys = self._keys
        keys.add(key)
        # A new list appears only when an insert splits one (the count grows).
        if len(keys._lists) != self._sublists:  # type: ignore[attr-defined]
            self._untrack_sublists()

    def remove(self, key: str) -> None:
        keys = self._keys
        keys.remove(key)
        if len(keys._lists) != self._sublists:  # type: ignore[attr-defined]
            self._sublists = len(keys._lists)  # type: ignore[attr-defined]

    def bounds(self, key_range: KeyRange) -> tuple[int, int]:
        """The positions of the range's first key and of the first key after it."""
        keys = self._keys
        low = keys.bisect_left(key_range.start)
        high = len(keys) if key_range.end is None else keys.bisect_left(key_range.end)
        return low, max(low, high)

    def after(self, key: str) -> int:
        """The position of the first key greater than `key`."""
        return self._keys.bisect_right(key)

    def between(self, low: int, high: int) -> list[str]:
        return list(self._keys.islice(low, high))

    def pop_between(self, low: int, high: int) -> list[str]:
        """Remove the keys from position `low` to `high` (exclusive); returns them."""
        doomed = self.between(low, high)
        del self._keys[low:high]
        self._untrack_sublists()
        return doomed


def page_token(last_key: str) -> str:
    """The opaque `next` token: the page's last key, UTF-8, base64url without padding."""
    return base64.urlsafe_b64encode(last_key.encode("utf-8")).rstrip(b"=").decode("ascii")


def key_after_token(token: str) -> str | None:
    """The key a `next` token names, or None when `token` is not one."""
    if not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return key if key and page_token(key) == token else None
