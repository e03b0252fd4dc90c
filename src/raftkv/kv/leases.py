"""Leases as the replicated state holds them (SPEC §6, "Leases"): each lease's id, its TTL
and the keys attached to it. Only what every replica agrees on lives here; when a lease
expires is the leader's business (server/lessor.py), and reaches the log as a command."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from raftkv.kv.records import KeyRecord
from raftkv.kv.untracking import untrack_string_containers

# Bounds decided by the state machine, so alike on every replica (the API checks them too,
# to answer 400 before proposing).
LEASE_TTL_MAX_SECONDS = 365 * 24 * 3600
LEASES_MAX = 10_000


class LeaseRecord(msgspec.Struct, array_like=True, frozen=True):
    """A lease as a snapshot keeps it; its keys are the records naming it."""

    id: int
    ttl: int


@dataclass(slots=True)
class Lease:
    ttl: int  # seconds
    # Strings alone: out of the garbage collector's walk (kv/untracking.py), so that a
    # lease of many keys does not lengthen every full collection.
    keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        untrack_string_containers([self.keys])


class LeaseTable:
    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        # Leases granted or removed since the lessor last took them (`take_changes`), so that
        # it times a grant without re-reading every lease; None: re-read them all (after a
        # restore, or when nobody took them for long: the set stays bounded).
        self._changed: set[int] | None = set()

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def __len__(self) -> int:
        return len(self.leases)

    def grant(self, index: int, ttl: int, wanted: int) -> int | None:
        """Grant a lease at log index `index`: id `wanted` if given (None if taken), else
        the index itself, or the first free id above it when a client took that one. Both
        derive from the log alone, so every replica picks the same id."""
        leases = self.leases
        if wanted:
            if wanted in leases:
                return None
            lease_id = wanted
        else:
            lease_id = index
            while lease_id in leases:
                lease_id += 1
        leases[lease_id] = Lease(ttl)
        self._note(lease_id)
        return lease_id

    def remove(self, lease_id: int) -> Lease | None:
        lease = self.leases.pop(lease_id, None)
        if lease is not None:
            self._note(lease_id)
        return lease

    def _note(self, lease_id: int) -> None:
        changed = self._changed
        if changed is not None:
            changed.add(lease_id)
            if len(changed) > LEASES_MAX:
                self._changed = None

    def take_changes(self) -> set[int] | None:
        """The leases granted or removed since the last call; None: any may have been."""
        changed, self._changed = self._changed, set()
        return changed

    def move(self, key: str, old: int, new: int) -> None:
        """`key` was attached to lease `old` (0: none) and is now attached to `new`."""
        if old == new:
            return
        if old:
            self.detach(key, old)
        if new:
            self.leases[new].keys.add(key)

    def detach(self, key: str, lease_id: int) -> None:
        lease = self.leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def ttls(self) -> dict[int, int]:
        return {lease_id: lease.ttl for lease_id, lease in self.leases.items()}

    def records(self) -> list[LeaseRecord]:
        """Every lease, in id order: what a snapshot keeps."""
        return [
            LeaseRecord(lease_id, self.leases[lease_id].ttl) for lease_id in sorted(self.leases)
        ]

    def restore(self, records: Iterable[LeaseRecord], keys: Mapping[str, KeyRecord]) -> None:
        """The leases of a snapshot, their keys rebuilt from the records that name them."""
        self.leases = {record.id: Lease(record.ttl) for record in records}
        for key, record in keys.items():
            if record.lease:
                lease = self.leases.get(record.lease)
                if lease is not None:
                    lease.keys.add(key)
        self._changed = None
