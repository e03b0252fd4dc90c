"""raftkv: a Raft consensus implementation with a sans-IO core."""

__version__ = "0.1.0"
