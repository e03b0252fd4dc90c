"""Cluster membership, joint consensus included (paper §6, etcd's ConfChangeV2).

A configuration takes effect as soon as its entry is appended to a log, not when it commits.
During the joint phase (`voters_outgoing` non-empty) elections and commitment need a
majority of both the old and the new voter sets.
"""

from __future__ import annotations

import msgspec


class Membership(msgspec.Struct, frozen=True):
    voters: frozenset[int]
    voters_outgoing: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()
    # Peer addresses travel with the configuration so that a new node learns them from the
    # log; the core itself never looks at them.
    addresses: dict[int, str] = msgspec.field(default_factory=dict)

    @property
    def is_joint(self) -> bool:
        return bool(self.voters_outgoing)

    @property
    def all_voters(self) -> frozenset[int]:
        return self.voters | self.voters_outgoing

    @property
    def members(self) -> frozenset[int]:
        return self.voters | self.voters_outgoing | self.learners

    def is_voter(self, node_id: int) -> bool:
        return node_id in self.voters or node_id in self.voters_outgoing

    def encode(self) -> bytes:
        return _encoder.encode(self)

    @staticmethod
    def decode(data: bytes) -> Membership:
        return _decoder.decode(data)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Membership)

EMPTY = Membership(voters=frozenset())
