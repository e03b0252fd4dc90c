"""The embedding API (issue #14): replicate your own Python objects through Raft.

Mark the methods that change an object with `@replicated`, register the object with a
`Node` (blocking, its own thread) or an `AsyncNode` (your asyncio loop), and its calls are
applied on every replica in log order. Ready-made replicated structures: `ReplCounter`,
`ReplDict`, `ReplList`, `ReplSet`, `ReplQueue`, and `ReplLock` (named locks with a time to
live).
"""

from raftkv.embed.batteries import (
    ReplCounter,
    ReplDict,
    ReplList,
    ReplLock,
    ReplQueue,
    ReplSet,
)
from raftkv.embed.machine import ReplicatedCallError, SessionExpired
from raftkv.embed.node import AsyncNode, Node
from raftkv.embed.replicated import replicated

__all__ = [
    "AsyncNode",
    "Node",
    "ReplCounter",
    "ReplDict",
    "ReplList",
    "ReplLock",
    "ReplQueue",
    "ReplSet",
    "ReplicatedCallError",
    "SessionExpired",
    "replicated",
]
