"""What the store tells an observer as it applies: every key it changes, and when its whole
state is replaced. Watches are built on it (SPEC §6, "Watches"); the store itself keeps no
history, so what it remembers stays what a snapshot carries."""

from __future__ import annotations

from typing import Protocol

import msgspec

from raftkv.kv.records import KeyRecord


class KeyChange(msgspec.Struct, frozen=True, gc=False):
    """One key written or deleted by the entry applied at `index`. One entry may change many
    keys (a transaction, a range delete, a lease's expiry): they share its index, in the order
    the entry changed them.

    Not tracked by the cyclic GC (it refers to no container): a node's watch history holds
    the last 100,000 of them, and a full collection walking those took 100-150 ms."""

    index: int
    key: str
    record: KeyRecord | None  # the key's record after the change; None: deleted
    prev: KeyRecord | None  # its record before; None: it did not exist


class ChangeObserver(Protocol):
    def changed(self, change: KeyChange) -> None:
        """Called synchronously by `apply`, in apply order; must not touch the store."""

    def restored(self, index: int) -> None:
        """The store's state was replaced by a snapshot's at `index`: changes up to there
        were never seen by this observer, or no longer follow on from what it saw."""
