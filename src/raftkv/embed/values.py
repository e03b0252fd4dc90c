"""The values a replicated object's calls, results and state may hold, and their safe
encoding: MessagePack through msgspec, never pickle, so bytes that came from a peer or a
snapshot can only ever become plain data, not code.

Supported: None, bool, int (-2**63 .. 2**64-1), float, str, bytes, list, tuple, dict (keys
of any supported hashable type), set and frozenset, nested freely. A set is encoded in one
canonical order (its members' encodings sorted), so the same set encodes alike on every
replica; it comes back equal, but its iteration order may differ between processes
(Python's string hashing is seeded per process): a replicated method must not let an
order of a set decide anything. Tuples, sets, frozensets and dicts whose keys are not all
strings travel tagged, so they come back as the same types. Anything else is a
`TypeError` naming the type (an object can say how to store itself instead: see
`__raft_state__` in docs/embedding.md).
"""

from __future__ import annotations

from typing import Any

import msgspec

# A mapping with this one key is a tagged value; a user's own dict with it travels tagged.
TAG = "__raftkv__"
SUPPORTED = "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset"
# MessagePack's integers.
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_SCALARS = (str, int, float, bool, bytes, type(None))


def to_plain(value: Any) -> Any:
    """`value` as MessagePack's types only (a deep copy: nothing is shared with it)."""
    if isinstance(value, _SCALARS):
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            raise TypeError(f"cannot replicate the int {value}: ints are {INT_MIN}..{INT_MAX}")
        return value
    kind = type(value)
    if kind is list:
        return [to_plain(item) for item in value]
    if kind is dict:
        if TAG not in value and all(type(key) is str for key in value):
            return {key: to_plain(item) for key, item in value.items()}
        return {TAG: "dict", "items": [[to_plain(k), to_plain(v)] for k, v in value.items()]}
    if kind is tuple:
        return {TAG: "tuple", "items": [to_plain(item) for item in value]}
    if kind is set or kind is frozenset:
        # In the order of their encodings: a set's own order depends on its history and on
        # the process's string hashing, and the same set must encode alike on every replica.
        items = sorted((to_plain(item) for item in value), key=_encoder.encode)
        return {TAG: kind.__name__, "items": items}
    raise TypeError(f"cannot replicate a {kind.__qualname__}: supported are {SUPPORTED}")


def from_plain(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [from_plain(item) for item in value]
    if kind is not dict:
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: from_plain(item) for key, item in value.items()}
    items = value.get("items")
    if not isinstance(items, list):
        raise ValueError(f"a tagged {tag!r} value without its items")
    if tag == "dict":
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in items):
            raise ValueError("a tagged dict's items are not [key, value] pairs")
        return {_key(pair[0]): from_plain(pair[1]) for pair in items}
    if tag == "tuple":
        return tuple(from_plain(item) for item in items)
    if tag == "set":
        return {_key(item) for item in items}
    if tag == "frozenset":
        return frozenset(_key(item) for item in items)
    raise ValueError(f"unknown tagged value {tag!r}")


def _key(value: Any) -> Any:
    key = from_plain(value)
    try:
        hash(key)  # a tuple holding a list is no more a key than the list
    except TypeError:
        raise ValueError(f"a {type(key).__name__} cannot be a dict key or a set member") from None
    return key


def encode(value: Any) -> bytes:
    return _encoder.encode(to_plain(value))


def decode(data: bytes) -> Any:
    """Raises ValueError (msgspec.DecodeError is one) on bytes that are not such a value."""
    try:
        return from_plain(_decoder.decode(data))
    except RecursionError:  # msgspec's, or from_plain's on values nested within msgspec's
        raise ValueError("a value nested deeper than the recursion limit") from None
