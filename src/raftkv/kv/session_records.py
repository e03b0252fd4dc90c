"""The records of client sessions (kv/sessions.py): a session as tables and snapshots hold
it, and what a table answers instead of executing.

Apart from sessions.py, which mypyc compiles (setup.py): a msgspec Struct defined in a
compiled module loses the type parameters of its field annotations, and a compiled frozen
dataclass can no longer be copied or pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

R = TypeVar("R")


class SessionRecord(msgspec.Struct, Generic[R], array_like=True, frozen=True):
    """A session as the table and the owner's snapshots hold it (the KV store's snapshots
    have carried this layout since before this module: an array of the four fields)."""

    client_id: str
    seq: int
    result: R
    last_index: int  # the index of the session's latest request (its last activity)


@dataclass(frozen=True)
class Refusals(Generic[R]):
    """What the table answers, in the owner's result type, instead of executing."""

    stale: R  # an older seq than the session's latest: its answer is gone
    expired: R  # no session, and one may have existed and been forgotten
