"""The deterministic key-value state machine and the StateMachine seam."""

from raftkv.kv.base import StateMachine
from raftkv.kv.commands import Command, Result, decode_command, encode_command
from raftkv.kv.store import KVStore

__all__ = ["Command", "KVStore", "Result", "StateMachine", "decode_command", "encode_command"]
