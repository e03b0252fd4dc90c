"""KV commands as they travel in log entries, and their results: encoding and decoding
(the records themselves are in command_records.py)."""

from __future__ import annotations

import msgspec

# The records live apart (mypyc compiles this module, setup.py; a msgspec Struct defined in
# a compiled module loses the type parameters of its fields); imported from here too.
from raftkv.kv.command_records import Command as Command
from raftkv.kv.command_records import Result as Result

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Command)


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(data: bytes) -> Command:
    """Raises `msgspec.DecodeError` for bytes that are not a command: also for a string
    that is not UTF-8 or nesting past the recursion limit, which msgspec raises as
    UnicodeDecodeError and RecursionError (KVStore.apply answers all three bad_request)."""
    try:
        return _decoder.decode(data)
    except (UnicodeDecodeError, RecursionError) as error:
        raise msgspec.DecodeError(f"malformed command: {error}") from None


# Commands a SharedDecoder keeps: more than a simulated run has in flight between the first
# and the last replica applying an entry.
SHARED_DECODER_SIZE = 4096


class SharedDecoder:
    """`decode_command` for the stores of several replicas in one process (the simulators
    run every node's store side by side): each command's bytes are decoded once, not once
    per replica. A command is immutable, so the replicas share it. Keeps the last
    `SHARED_DECODER_SIZE` commands decoded; bytes that are not a command are decoded (and
    refused) every time."""

    def __init__(self) -> None:
        self._commands: dict[bytes, Command] = {}

    def __call__(self, data: bytes) -> Command:
        commands = self._commands
        command = commands.get(data)
        if command is None:
            command = decode_command(data)
            if len(commands) >= SHARED_DECODER_SIZE:
                del commands[next(iter(commands))]  # the oldest
            commands[data] = command
        return command
