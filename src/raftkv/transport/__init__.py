"""Peer transport: how a node's messages reach its peers (ARCHITECTURE.md, SPEC §4).

`TcpTransport` carries length-prefixed MessagePack frames over TCP; `MemoryTransport` is its
in-memory twin for tests, connected through a `MemoryHub`. Both implement `Transport`.
"""

from raftkv.transport.base import (
    ListenFailed,
    MessageHandler,
    PeerCounters,
    PeerStateHandler,
    RemovedByHandler,
    TraceDirection,
    TraceHandler,
    Transport,
    TransportCounters,
)
from raftkv.transport.handshake import PROTOCOL_VERSION, LeaseSettings
from raftkv.transport.limits import TransportLimits
from raftkv.transport.memory import MemoryHub, MemoryTransport
from raftkv.transport.tcp import TcpTransport

__all__ = [
    "PROTOCOL_VERSION",
    "LeaseSettings",
    "ListenFailed",
    "MemoryHub",
    "MemoryTransport",
    "MessageHandler",
    "PeerCounters",
    "PeerStateHandler",
    "RemovedByHandler",
    "TcpTransport",
    "TraceDirection",
    "TraceHandler",
    "Transport",
    "TransportCounters",
    "TransportLimits",
]
