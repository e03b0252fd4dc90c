"""Embedding values and calls (embed/values.py, embed/machine.py): `values.decode` turns
any bytes into a plain value or raises `ValueError`, as it documents; every supported value
round-trips (`decode(encode(v)) == v`, and its encoding is canonical); the object machine
answers any bytes in a log entry with a `CallResult` (a malformed one as `BadCommand`),
never an exception; its snapshots round-trip and `restore` raises only `ValueError`."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.embed import values
from raftkv.embed.machine import Call, CallResult, ObjectStateMachine, encode_call
from raftkv.embed.replicated import replicated

from .fuzzing import deep_msgpack, fuzz, hostile, raises_only

_encode = msgspec.msgpack.encode
TAG = values.TAG

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=values.INT_MIN, max_value=values.INT_MAX),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
supported = st.recursive(
    scalars | hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
    ),
    max_leaves=12,
)


@fuzz
@given(value=supported)
def test_supported_values_round_trip_canonically(value: Any) -> None:
    data = values.encode(value)
    decoded = values.decode(data)
    assert decoded == value
    assert type(decoded) is type(value)
    assert values.encode(decoded) == data


# Tagged values whose items are not what the tag needs, or that cannot be keys.
_MALFORMED_TAGGED = [
    {TAG: "dict", "items": [[1]]},
    {TAG: "dict", "items": [1, 2]},
    {TAG: "dict", "items": [{"a": 1}]},
    {TAG: "dict", "items": [[[1], 2]]},
    {TAG: "set", "items": [{TAG: "tuple", "items": [[1]]}]},
    {TAG: "frozenset", "items": [{TAG: "tuple", "items": [{"a": 1}]}]},
    {TAG: "dict", "items": [[{TAG: "tuple", "items": [{TAG: "set", "items": []}]}, 1]]},
    {TAG: "tuple"},
    {TAG: 5, "items": []},
    {TAG: "nope", "items": []},
]
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3) | st.sampled_from([TAG, "items"]), inner, max_size=3)
    ),
    max_leaves=10,
)
hostile_plain = st.one_of(
    plain,
    st.sampled_from(_MALFORMED_TAGGED),
    st.fixed_dictionaries(
        {
            TAG: st.sampled_from(["dict", "tuple", "set", "frozenset"]),
            "items": st.lists(plain, max_size=3),
        }
    ),
).map(_encode)


def _nested_tuples(depth: int) -> bytes:
    """A tagged tuple nested `depth` deep: within msgspec's limit, past from_plain's."""
    return b"\x82\xaa__raftkv__\xa5tuple\xa5items\x91" * depth + b"\x00"


@fuzz
@given(data=hostile(supported.map(values.encode)) | hostile_plain)
@example(data=deep_msgpack(100_000))
@example(data=_nested_tuples(900))
@example(data=b"\xa1\xff")
def test_any_bytes_decode_to_a_value_or_raise_value_error(data: bytes) -> None:
    raises_only(values.decode, ValueError, data)


@pytest.mark.parametrize("malformed", _MALFORMED_TAGGED, ids=repr)
def test_malformed_tagged_values_are_value_errors(malformed: object) -> None:
    # IndexError, KeyError and TypeError (unhashable) escaped before.
    with pytest.raises(ValueError):
        values.decode(_encode(malformed))


class Register:
    def __init__(self) -> None:
        self.value: Any = None

    @replicated
    def set(self, value: Any) -> Any:
        self.value = value
        return value

    @replicated
    def get(self) -> Any:
        return self.value


valid_calls = st.builds(
    lambda method, args, client, seq: encode_call(
        Call("r", method, values.encode([args, {}]), client, seq, 0 if client else None)
    ),
    st.sampled_from(["set", "get", "nope"]),
    st.lists(supported, max_size=1),
    st.sampled_from(["", "c"]),
    st.integers(0, 3),
)
_CALL_NOT_UTF8 = b"\x93\xa1\xff\xa3get\xc4\x00"
_CALL_DEEP = b"\x94\xa1r\xa3get\xc4\x00" + deep_msgpack(100_000)


@fuzz
@given(entries=st.lists(hostile(valid_calls), max_size=5))
@example(entries=[_CALL_NOT_UTF8, _CALL_DEEP])
@example(entries=[encode_call(Call("r", "set", _encode(item))) for item in _MALFORMED_TAGGED])
def test_the_machine_answers_any_entry_with_a_call_result(entries: list[bytes]) -> None:
    machine = ObjectStateMachine({"r": Register()}, sessions_max=2)
    for index, data in enumerate(entries, start=1):
        assert isinstance(machine.apply(index, data), CallResult)
    # Whatever it holds now snapshots and restores to the same bytes.
    snapshot = machine.snapshot()
    copy = ObjectStateMachine({"r": Register()}, sessions_max=2)
    copy.restore(snapshot)
    assert copy.snapshot() == snapshot


@fuzz
@given(data=hostile(st.lists(valid_calls, max_size=3).map(lambda calls: _snapshot_of(calls))))
@example(
    data=b"\x85\xa7objects\x81\xa1r"
    + b"\xc4\x03\xa1\xff\x00"
    + b"\xadapplied_index\x01\xacapplied_hash\xc4\x00\xa8sessions\x90\xafevicted_through\x00"
)
@example(
    data=b"\x84\xa7objects\x80\xadapplied_index\x01\xacapplied_hash\xc4\x00\xa2zz"
    + deep_msgpack(100_000)
)
def test_restore_takes_a_snapshot_or_raises_value_error(data: bytes) -> None:
    machine = ObjectStateMachine({"r": Register()})
    raises_only(machine.restore, ValueError, data)


def _snapshot_of(calls: list[bytes]) -> bytes:
    machine = ObjectStateMachine({"r": Register()})
    for index, data in enumerate(calls, start=1):
        machine.apply(index, data)
    return machine.snapshot()


def test_nan_round_trips_as_nan() -> None:
    assert math.isnan(values.decode(values.encode(float("nan"))))
