"""The asyncio runtime: one event loop per node driving the sans-IO core."""

from raftkv.server.options import NodeOptions
from raftkv.server.runtime import RaftServer

__all__ = ["NodeOptions", "RaftServer"]
