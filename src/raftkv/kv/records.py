"""What the store keeps per key: its value and revisions (SPEC §6, "Revisions")."""

from __future__ import annotations

import msgspec


class KeyRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A key's value and revisions. Small on purpose: one per key, 200,000 keys cost
    megabytes (an array in snapshots; no GC tracking, it refers to no container). Frozen: a
    write replaces the record, so a snapshot being encoded off the loop keeps the old one."""

    value: str
    create_index: int  # the index of the write that created the key (since its last delete)
    mod_index: int  # the index of its last write
    version: int  # writes since its creation, 1 on create
    # The lease the key is attached to, 0 for none (SPEC §6, "Leases"). Last, with a
    # default: a snapshot written before leases (four fields) still decodes.
    lease: int = 0

    def to_json(self, key: str, keys_only: bool = False) -> dict[str, object]:
        """How the API answers a key (SPEC §3, §6)."""
        answer: dict[str, object] = {"key": key}
        if not keys_only:
            answer["value"] = self.value
        answer["create_index"] = self.create_index
        answer["mod_index"] = self.mod_index
        answer["version"] = self.version
        if self.lease:
            answer["lease"] = self.lease
        return answer
