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
