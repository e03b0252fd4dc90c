"""The embedding API's state machine on its own: calls applied in log order, errors as the
command's result (never the node's), sessions, snapshots, and the safe value encoding."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.embed import values
from raftkv.embed.machine import (
    Call,
    ObjectStateMachine,
    ReplicatedCallError,
    SessionExpired,
    encode_call,
)
from raftkv.embed.replicated import replicated


class Account:
    def __init__(self) -> None:
        self.balance = 0
        self.history: list[tuple[str, int]] = []

    @replicated
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise ValueError("a deposit is positive")
        self.balance += amount
        self.history.append(("in", amount))
        return self.balance

    @replicated
    def fail_strangely(self) -> None:
        class Strange(Exception):
            pass

        raise Strange("not a built-in")

    @replicated
    def exit(self) -> None:
        raise SystemExit(3)

    @replicated
    def leak(self) -> object:
        return object()  # not a replicable value

    def peek(self) -> int:  # local: never callable through the log
        return self.balance


def command(
    method: str, *args: Any, client: str = "", seq: int = 0, after: int | None = 0
) -> bytes:
    arguments = values.encode([list(args), {}])
    return encode_call(Call("account", method, arguments, client, seq, after))


class Log:
    def __init__(self, machine: ObjectStateMachine) -> None:
        self.machine = machine
        self.index = 0

    def apply(self, data: bytes) -> Any:
        self.index += 1
        return self.machine.apply(self.index, data)


def machine() -> tuple[ObjectStateMachine, Account]:
    account = Account()
    return ObjectStateMachine({"account": account}), account


def test_a_call_applies_and_returns_a_copy_of_its_result() -> None:
    state, account = machine()
    log = Log(state)
    assert log.apply(command("deposit", 5)).unwrap() == 5
    assert log.apply(command("deposit", 7)).unwrap() == 12
    assert account.balance == 12 and account.history == [("in", 5), ("in", 7)]


def test_an_exception_is_the_commands_result_and_the_next_command_applies() -> None:
    state, account = machine()
    log = Log(state)
    result = log.apply(command("deposit", -1))
    with pytest.raises(ValueError, match="positive"):
        result.unwrap()
    with pytest.raises(Exception, match="not a built-in") as strange:
        log.apply(command("fail_strangely", client="c", seq=1)).unwrap()
    assert type(strange.value).__name__ == "Strange"  # the exception itself, raised here
    # Answered from the session, it is rebuilt by name: only built-in types come back as
    # themselves (a name from the log imports nothing).
    with pytest.raises(ReplicatedCallError, match="Strange: not a built-in"):
        log.apply(command("fail_strangely", client="c", seq=1)).unwrap()
    with pytest.raises(TypeError, match="cannot replicate"):
        log.apply(command("leak")).unwrap()
    with pytest.raises(SystemExit):  # the caller's to handle; the replicas go on
        log.apply(command("exit")).unwrap()
    assert log.apply(command("deposit", 3)).unwrap() == 3
    assert account.balance == 3


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\x00garbage",
        encode_call(Call("nobody", "deposit", values.encode([[1], {}]))),
        encode_call(Call("account", "peek", values.encode([[], {}]))),
        encode_call(Call("account", "__init__", values.encode([[], {}]))),
        encode_call(Call("account", "deposit", b"\xc1")),
        encode_call(Call("account", "deposit", values.encode([["x", "y"], {}]))),
    ],
    ids=["undecodable", "no object", "local method", "dunder", "bad arguments", "bad types"],
)
def test_a_poison_command_is_refused_alike_everywhere_and_changes_nothing(data: bytes) -> None:
    replicas = [machine() for _ in range(2)]
    outcomes = []
    for state, account in replicas:
        log = Log(state)
        outcomes.append(log.apply(data).outcome)
        assert account.balance == 0
        assert log.apply(command("deposit", 2)).unwrap() == 2
    assert outcomes[0] == outcomes[1] and outcomes[0].error_type
    assert replicas[0][0].applied_hash == replicas[1][0].applied_hash


def test_a_retry_in_a_session_applies_once_and_gets_the_first_answer() -> None:
    state, account = machine()
    log = Log(state)
    first = log.apply(command("deposit", 5, client="c", seq=1))
    assert first.unwrap() == 5
    assert state.take_result("c", 1) is first
    again = log.apply(command("deposit", 5, client="c", seq=1))
    assert again.unwrap() == 5 and account.balance == 5
    assert state.take_result("c", 1) is again
    assert state.take_result("c", 1) is None  # taken once


def test_a_failed_call_retried_is_answered_with_its_error_not_run_again() -> None:
    state, account = machine()
    log = Log(state)
    log.apply(command("deposit", -1, client="c", seq=1))
    retried = log.apply(command("deposit", -1, client="c", seq=1))
    assert retried.raised is None  # answered from the session, rebuilt by name
    with pytest.raises(ValueError, match="positive"):
        retried.unwrap()
    assert account.history == []


def test_a_forgotten_session_is_refused_not_run_again() -> None:
    account = Account()
    state = ObjectStateMachine({"account": account}, sessions_max=1)
    log = Log(state)
    log.apply(command("deposit", 5, client="a", seq=1, after=0))
    log.apply(command("deposit", 1, client="b", seq=1, after=1))  # "a" forgotten
    with pytest.raises(SessionExpired):
        log.apply(command("deposit", 5, client="a", seq=1, after=0)).unwrap()
    assert account.balance == 6


def test_a_snapshot_restores_objects_sessions_and_hash() -> None:
    state, account = machine()
    log = Log(state)
    log.apply(command("deposit", 5, client="c", seq=1))
    log.apply(command("deposit", 6))
    account._raftkv_timer = 42  # type: ignore[attr-defined]  # local: not in snapshots
    data = state.prepare_snapshot()()
    other, copy = machine()
    copy._raftkv_timer = 7  # type: ignore[attr-defined]
    other.restore(data)
    assert copy.balance == 11 and copy.history == [("in", 5), ("in", 6)]
    assert isinstance(copy.history[0], tuple)
    assert copy._raftkv_timer == 7  # type: ignore[attr-defined]
    assert other.applied_hash == state.applied_hash and other.applied_index == 2
    retried = Log(other)
    retried.index = 2
    assert retried.apply(command("deposit", 5, client="c", seq=1)).unwrap() == 5
    assert copy.balance == 11


def test_an_object_can_say_how_to_store_itself() -> None:
    class Custom:
        def __init__(self) -> None:
            self.items = {"a": 1}

        def __raft_state__(self) -> Any:
            return sorted(self.items.items())

        def __raft_restore__(self, state: Any) -> None:
            self.items = {key: value for key, value in state}

    original, copy = Custom(), Custom()
    copy.items = {}
    data = ObjectStateMachine({"c": original}).snapshot()
    ObjectStateMachine({"c": copy}).restore(data)
    assert copy.items == {"a": 1}


def test_a_method_runs_locally_on_an_object_no_node_holds() -> None:
    account = Account()
    assert account.deposit(4) == 4 and account.balance == 4


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | st.binary()
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers(-5, 5), inner, max_size=4)
        | st.frozensets(st.integers(-5, 5) | st.text(max_size=3), max_size=4)
        | st.sets(st.integers(-5, 5), max_size=4)
    ),
    max_leaves=20,
)


@given(plain)
def test_values_come_back_as_the_same_types(value: Any) -> None:
    assert values.decode(values.encode(value)) == value
    assert type(values.decode(values.encode(value))) is type(value)


def test_values_refuse_what_they_cannot_carry_by_name() -> None:
    with pytest.raises(TypeError, match="Account"):
        values.encode({"a": Account()})
    with pytest.raises(ValueError):
        values.decode(
            values.encode({"__raftkv__": "module", "items": []}).replace(b"dict", b"evil")
        )


def test_a_set_encodes_alike_whatever_its_history_and_the_process_hashing() -> None:
    """Replicas (and snapshots) must agree byte for byte on a result or state holding a
    set, whose own iteration order depends on insertion history and string hashing."""
    members = ["\x87", "a", "zz", "q", "b", "\u00e9"]
    forward, backward = set(), set()
    for member in members:
        forward.add(member)
    for member in reversed(members):
        backward.add(member)
    assert values.encode(forward) == values.encode(backward)
    script = (
        "import sys; from raftkv.embed import values;"
        "sys.stdout.write(values.encode({'a', 'b', '\\x87', frozenset({'x', 'y'})}).hex())"
    )
    encodings = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(encodings) == 1
