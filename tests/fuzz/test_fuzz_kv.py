"""KV commands, KV snapshots and the client session records in them (kv/commands.py,
kv/store.py, kv/sessions.py): `decode_command` returns a Command or raises
`msgspec.DecodeError`, so `KVStore.apply` answers any bytes in a log entry with a result
(`bad_request` for a malformed command), never an exception; `KVStore.restore` raises only
`msgspec.DecodeError` for bytes that are no snapshot; commands and snapshots,
sessions included, round-trip byte for byte."""

from __future__ import annotations

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.kv.commands import Command, Result, decode_command, encode_command
from raftkv.kv.store import KVStore

from .fuzzing import any_text, deep_msgpack, edge_integers, fuzz, hostile, raises_only

keys = st.text(max_size=6)
commands = st.builds(
    Command,
    op=st.sampled_from(["put", "del", "cas", "get", ""]) | any_text,
    key=keys,
    value=st.none() | any_text,
    if_value=st.none() | any_text,
    if_absent=st.booleans(),
    client_id=st.sampled_from(["", "a", "b"]) | any_text,
    seq=st.integers(0, 2**63 - 1),
    after_index=st.none() | st.integers(0, 2**63 - 1),
)
valid_commands = commands.map(encode_command)

_NOT_UTF8 = b"\x82\xa2op\xa3put\xa3key\xa1\xff"
_DEEP = b"\x83\xa2op\xa3put\xa3key\xa1k\xa2zz" + deep_msgpack(100_000)


@fuzz
@given(data=hostile(valid_commands))
@example(data=_NOT_UTF8)
@example(data=_DEEP)
def test_any_command_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    raises_only(decode_command, msgspec.DecodeError, data)


@fuzz
@given(entries=st.lists(hostile(valid_commands), max_size=6))
@example(entries=[_NOT_UTF8, _DEEP])
def test_apply_answers_any_entry_with_a_result(entries: list[bytes]) -> None:
    store = KVStore(sessions_max=2)
    for index, data in enumerate(entries, start=1):
        assert isinstance(store.apply(index, data), Result)
    assert store.applied_index == len(entries)


@fuzz
@given(command=commands)
def test_commands_round_trip(command: Command) -> None:
    data = encode_command(command)
    assert decode_command(data) == command
    assert encode_command(decode_command(data)) == data


@st.composite
def stores(draw: st.DrawFn) -> KVStore:
    store = KVStore(sessions_max=draw(st.integers(1, 4)))
    for index, command in enumerate(draw(st.lists(commands, max_size=8)), start=1):
        store.apply(index, encode_command(command))
    return store


@fuzz
@given(store=stores())
def test_snapshots_round_trip_byte_for_byte(store: KVStore) -> None:
    snapshot = store.snapshot()
    copy = KVStore(sessions_max=store.sessions_max)
    copy.restore(snapshot)
    assert copy.snapshot() == snapshot
    assert (copy.data, copy.applied_hash, copy.sessions, copy.evicted_through) == (
        store.data,
        store.applied_hash,
        store.sessions,
        store.evicted_through,
    )


odd_snapshots = st.fixed_dictionaries(
    {
        "data": st.dictionaries(keys, any_text, max_size=2) | st.just({"k": 1}),
        "applied_index": edge_integers,
        "applied_hash": st.binary(max_size=20),
        "sessions": st.lists(
            st.tuples(any_text, edge_integers, st.just({"ok": True}) | st.just({}), edge_integers)
            | st.lists(edge_integers, max_size=5),
            max_size=3,
        ),
        "evicted_through": edge_integers | st.none(),
    }
).map(msgspec.msgpack.encode)


@fuzz
@given(data=hostile(stores().map(KVStore.snapshot)) | odd_snapshots)
@example(
    data=b"\x84\xa4data\x80\xadapplied_index\x01\xacapplied_hash\xc4\x00\xa2zz"
    + deep_msgpack(100_000)
)
@example(data=b"\x83\xa4data\x81\xa1k\xa1\xff\xadapplied_index\x01\xacapplied_hash\xc4\x00")
def test_restore_takes_a_snapshot_or_raises_decode_error(data: bytes) -> None:
    store = KVStore()
    if raises_only(store.restore, msgspec.DecodeError, data) is None:
        return
    # Whatever was restored snapshots again and restores to the same state.
    again = KVStore()
    again.restore(store.snapshot())
    assert again.snapshot() == store.snapshot()
