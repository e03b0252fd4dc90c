"""The KV store's range pages (a frozen dataclass).

Kept apart from `store.py`, which mypyc compiles (setup.py): a compiled frozen dataclass
can no longer be copied or pickled. (The snapshot's msgspec Struct is in
`snapshot_format.py`, also interpreted: a Struct defined in a compiled module loses the
type parameters of its field annotations, so the decoder would hand back plain lists.)
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.kv.records import KeyRecord


@dataclass(frozen=True, slots=True)
class RangePage:
    """A page of a range: its keys in order, with the range's whole size."""

    items: list[tuple[str, KeyRecord]]
    count: int  # keys in the whole range, not only this page
    more: bool  # keys after this page
    chars: int  # characters of the page's keys (and values, unless keys only)
