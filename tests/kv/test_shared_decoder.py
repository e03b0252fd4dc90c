"""SharedDecoder: the replicas of one process decode each command once between them, and
get exactly what decode_command gives (bad bytes still refused, every time)."""

from __future__ import annotations

import msgspec
import pytest

import raftkv.kv.commands as commands
from raftkv.kv import KVStore
from raftkv.kv.commands import Command, SharedDecoder, decode_command, encode_command


def test_the_same_bytes_are_decoded_once_and_the_command_shared() -> None:
    decoder = SharedDecoder()
    data = encode_command(Command(op="put", key="k", value="v", client_id="c", seq=1))
    first = decoder(data)
    assert first == decode_command(data)
    assert decoder(bytes(data)) is first  # equal bytes, another object: the same command


def test_bad_bytes_are_refused_every_time_and_not_kept() -> None:
    decoder = SharedDecoder()
    for _ in range(2):
        with pytest.raises(msgspec.DecodeError):
            decoder(b"\xc1 not a command")


def test_it_keeps_only_the_newest_commands() -> None:
    decoder = SharedDecoder()
    datas = [
        encode_command(Command(op="del", key=f"k{n}"))
        for n in range(commands.SHARED_DECODER_SIZE + 1)
    ]
    kept = [decoder(data) for data in datas]
    assert decoder(datas[-1]) is kept[-1]
    assert decoder(datas[1]) is kept[1]
    assert decoder(datas[0]) is not kept[0]  # the oldest went first: decoded anew
    assert decoder(datas[0]) == kept[0]


def test_replicas_sharing_a_decoder_end_in_the_same_state_as_replicas_that_do_not() -> None:
    decoder = SharedDecoder()
    shared, alone = [KVStore(decode=decoder) for _ in range(3)], KVStore()
    log = [
        encode_command(Command(op="put", key="a", value="1", client_id="c", seq=1)),
        encode_command(Command(op="cas", key="a", value="2", if_value="1", client_id="c", seq=2)),
        b"\xc1 not a command",
        encode_command(Command(op="del", key="a", client_id="c", seq=3)),
    ]
    for index, data in enumerate(log, start=1):
        answers = {store.apply(index, data) for store in [*shared, alone]}
        assert len(answers) == 1, answers
    assert {store.applied_hash for store in [*shared, alone]} == {alone.applied_hash}
