"""The batteries (embed/batteries.py) on their own: encoded calls applied in log order to
several replicas through ObjectStateMachine, which must agree after every call; snapshots;
the errors of the Python types; and ReplLock's expiry, with the leader hooks called by the
test at chosen clock values (no sleeps, no real time)."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.embed import values
from raftkv.embed.batteries import (
    EXPIRE_RETRY_SECONDS,
    INT_MAX,
    LeaderCall,
    ReplCounter,
    ReplDict,
    ReplList,
    ReplLock,
    ReplQueue,
    ReplSet,
)
from raftkv.embed.machine import Call, CallResult, ObjectStateMachine, encode_call, state_of

NAME = "it"
DUTY = 0.1  # the interval between two duty calls of a leader


def command(method: str, *args: Any, **kwargs: Any) -> bytes:
    arguments = values.encode([list(args), kwargs])
    return encode_call(Call(NAME, method, arguments))


def canonical(state: Any) -> Any:
    """`state` as comparable data that keeps what replicas must agree on: types (1, 1.0
    and True differ), the order of lists and dicts, and set members (not their order)."""
    return _canonical(values.to_plain(state))


def _canonical(plain: Any) -> Any:
    if isinstance(plain, list):
        return ["list", [_canonical(item) for item in plain]]
    if isinstance(plain, dict):
        tag = plain.get(values.TAG)
        if tag in ("set", "frozenset"):
            return [tag, sorted((_canonical(item) for item in plain["items"]), key=repr)]
        return ["map", [[key, _canonical(item)] for key, item in plain.items()]]
    return [type(plain).__name__, plain]


class Cluster:
    """Replicas of one object, each in its own ObjectStateMachine, fed the same log."""

    def __init__(self, make: Callable[[], Any], replicas: int = 2) -> None:
        self.make = make
        self.objects: list[Any] = [make() for _ in range(replicas)]
        self.machines = [ObjectStateMachine({NAME: target}) for target in self.objects]
        self.index = 0

    def apply(self, method: str, *args: Any, **kwargs: Any) -> CallResult:
        """Apply the call on every replica; they must answer and end alike."""
        data = command(method, *args, **kwargs)
        self.index += 1
        results = [machine.apply(self.index, data) for machine in self.machines]
        assert all(result.outcome == results[0].outcome for result in results)
        self.assert_agree()
        return results[0]

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.apply(method, *args, **kwargs).unwrap()

    def assert_agree(self) -> None:
        states = [canonical(state_of(target)) for target in self.objects]
        assert all(state == states[0] for state in states), states
        assert len({machine.applied_hash for machine in self.machines}) == 1

    def join_from_snapshot(self, make: Callable[[], Any] | None = None) -> Any:
        """A new replica restored from the first one's snapshot; it follows the log on."""
        target = (make or self.make)()
        machine = ObjectStateMachine({NAME: target})
        machine.restore(self.machines[0].snapshot())
        self.objects.append(target)
        self.machines.append(machine)
        self.assert_agree()
        return target


def outcome_of(result: CallResult) -> tuple[str, Any]:
    """(error type, message) of a failed call, ("", value) of a successful one."""
    if result.outcome.error_type:
        return result.outcome.error_type, result.outcome.error_message
    return "", canonical(values.decode(result.outcome.value))


def model_outcome(model: Any, method: str, args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        value = getattr(model, method)(*copy.deepcopy(args))
    except Exception as error:
        return type(error).__qualname__, str(error)
    return "", canonical(value)


def run_against_model(
    make: Callable[[], Any],
    model: Any,
    operations: list[tuple[str, tuple[Any, ...]]],
    snapshot_at: int,
    contents: Callable[[Any], Any],
    model_contents: Callable[[Any], Any],
) -> None:
    """Apply `operations` to two replicas (a third joins from a snapshot midway) and to a
    plain Python `model`: same results, same errors, same contents."""
    cluster = Cluster(make)
    for position, (method, args) in enumerate(operations):
        if position == snapshot_at:
            cluster.join_from_snapshot()
        expected = model_outcome(model, method, args)
        assert outcome_of(cluster.apply(method, *args)) == expected, (method, args)
        for target in cluster.objects:
            assert canonical(contents(target)) == canonical(model_contents(model)), (method, args)


# --- strategies -----------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.text(max_size=2)
    | st.binary(max_size=2)
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=2), max_leaves=4
)
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(st.integers(-3, 3) | st.text(max_size=2), max_size=3)
    ),
    max_leaves=8,
)
# Few distinct keys and members, so that operations meet existing ones.
small = st.integers(0, 3) | st.sampled_from(["a", "b", b"a", 1.0, True, (1, "a")])
indexes = st.integers(-4, 4)


# --- ReplCounter ----------------------------------------------------------------------------
def test_a_counters_operations_return_the_new_value_on_every_replica() -> None:
    counter = Cluster(ReplCounter)
    assert counter("inc") == 1
    assert counter("add", 10) == 11
    assert counter("sub", 4) == 7
    assert counter("set", -2) == -2
    assert counter("add", 0.5) == -1.5
    assert all(target.get() == -1.5 for target in counter.objects)


def test_a_counter_refuses_what_is_not_a_number_or_would_not_fit_and_keeps_its_value() -> None:
    counter = Cluster(lambda: ReplCounter(INT_MAX - 1))
    with pytest.raises(TypeError, match="int or a float"):
        counter("add", "1")
    with pytest.raises(TypeError, match="int or a float"):
        counter("set", True)
    assert counter("inc") == INT_MAX
    with pytest.raises(OverflowError):
        counter("inc")
    assert counter.objects[0].get() == INT_MAX
    counter.join_from_snapshot(ReplCounter)  # the state still snapshots


counter_operations = st.lists(
    st.tuples(st.just("inc"), st.just(()))
    | st.tuples(st.sampled_from(["add", "sub", "set"]), st.tuples(st.integers(-50, 50))),
    max_size=20,
)


class CounterModel:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> int:
        self.value += 1
        return self.value

    def add(self, amount: int) -> int:
        self.value += amount
        return self.value

    def sub(self, amount: int) -> int:
        self.value -= amount
        return self.value

    def set(self, value: int) -> int:
        self.value = value
        return self.value


@given(counter_operations, st.integers(0, 20))
def test_a_counter_behaves_as_a_number(
    operations: list[tuple[str, tuple[Any, ...]]], snapshot_at: int
) -> None:
    model = CounterModel()
    cluster = Cluster(ReplCounter)
    for position, (method, args) in enumerate(operations):
        if position == snapshot_at:
            cluster.join_from_snapshot()
        assert cluster(method, *args) == getattr(model, method)(*args)
        assert all(target.get() == model.value for target in cluster.objects)


# --- ReplDict -------------------------------------------------------------------------------
dict_operations = st.lists(
    st.tuples(st.just("set"), st.tuples(small, plain))
    | st.tuples(st.just("pop"), st.tuples(small) | st.tuples(small, plain))
    | st.tuples(st.just("popitem"), st.just(()))
    | st.tuples(st.just("setdefault"), st.tuples(small) | st.tuples(small, plain))
    | st.tuples(
        st.just("update"),
        st.tuples(st.lists(st.tuples(small, plain), max_size=3))
        | st.tuples(st.dictionaries(small, plain, max_size=3)),
    )
    | st.tuples(st.just("clear"), st.just(())),
    max_size=25,
)


@given(dict_operations, st.integers(0, 25))
def test_a_dict_behaves_as_a_dict(
    operations: list[tuple[str, tuple[Any, ...]]], snapshot_at: int
) -> None:
    run_against_model(
        ReplDict, _DictModel(), operations, snapshot_at, lambda target: target.copy(), dict
    )


class _DictModel(dict[Any, Any]):
    """A dict whose item assignment is called `set`, as ReplDict's."""

    def set(self, key: Any, value: Any) -> None:
        self[key] = value


def test_a_dicts_errors_and_reads_are_a_dicts() -> None:
    cluster = Cluster(ReplDict)
    d: ReplDict[Any, Any] = cluster.objects[0]
    cluster("set", "a", [1, 2])
    cluster("update", [("b", 2)], c=3)
    assert cluster("setdefault", "b", 9) == 2
    assert cluster("setdefault", "z") is None
    with pytest.raises(KeyError, match="'nope'"):
        cluster("pop", "nope")
    assert cluster("pop", "nope", "default") == "default"
    with pytest.raises(TypeError):
        cluster("pop", "nope", 1, 2)  # as dict.pop: at most one default
    with pytest.raises(ValueError, match="length 3"):
        cluster("update", [("k", 1, 2)])
    assert d.keys() == ["a", "b", "c", "z"] and list(d) == ["a", "b", "c", "z"]
    assert d.items() == [("a", [1, 2]), ("b", 2), ("c", 3), ("z", None)]
    assert d["a"] == [1, 2] and d.get("q", 5) == 5 and "c" in d and len(d) == 4
    with pytest.raises(KeyError):
        d["q"]
    d["a"].append(3)  # a read is a copy: changing it changes no replica
    got = d.get("a")
    assert got is not None
    got.append(3)
    d.values()[0].append(3)
    for key in d:  # iterating a copy while the dict changes
        cluster("pop", key)
    cluster.assert_agree()
    assert len(d) == 0
    with pytest.raises(KeyError, match="empty"):
        cluster("popitem")


def test_a_dict_refuses_pairs_in_a_set_whose_order_replicas_would_not_share() -> None:
    cluster = Cluster(ReplDict)
    with pytest.raises(TypeError, match="no order"):
        cluster("update", {("k", 1), ("k", 2)})
    assert len(cluster.objects[0]) == 0


# --- ReplList -------------------------------------------------------------------------------
list_operations = st.lists(
    st.tuples(st.just("append"), st.tuples(small | plain))
    | st.tuples(st.just("extend"), st.tuples(st.lists(small, max_size=3) | st.tuples(small)))
    | st.tuples(st.just("insert"), st.tuples(indexes, small))
    | st.tuples(st.just("pop"), st.just(()) | st.tuples(indexes))
    | st.tuples(st.just("remove"), st.tuples(small))
    | st.tuples(st.just("set"), st.tuples(indexes, small))
    | st.tuples(st.just("clear"), st.just(())),
    max_size=25,
)


class _ListModel(list[Any]):
    def set(self, index: int, item: Any) -> None:
        self[index] = item


@given(list_operations, st.integers(0, 25))
def test_a_list_behaves_as_a_list(
    operations: list[tuple[str, tuple[Any, ...]]], snapshot_at: int
) -> None:
    run_against_model(
        ReplList, _ListModel(), operations, snapshot_at, lambda target: target.copy(), list
    )


def test_a_lists_errors_and_reads_are_a_lists() -> None:
    cluster = Cluster(ReplList)
    items: ReplList[Any] = cluster.objects[0]
    with pytest.raises(IndexError, match="pop from empty list"):
        cluster("pop")
    cluster("extend", ["a", ("b", 1), {"c": [1]}])
    with pytest.raises(ValueError, match="not in list"):
        cluster("remove", "zzz")
    with pytest.raises(IndexError, match="assignment index out of range"):
        cluster("set", 3, "x")
    with pytest.raises(TypeError, match="no order"):
        cluster("extend", {"p", "q"})
    assert cluster("pop", 0) == "a"
    assert items[0] == ("b", 1) and items[-1] == {"c": [1]} and items[0:1] == [("b", 1)]
    assert items.get(1) == {"c": [1]} and items.index(("b", 1)) == 0
    assert items.count("a") == 0 and ("b", 1) in items and len(items) == 2
    items[1]["c"].append(2)  # a copy
    assert list(items) == [("b", 1), {"c": [1]}]
    cluster.assert_agree()


# --- ReplSet --------------------------------------------------------------------------------
set_members = st.integers(0, 3) | st.sampled_from(["a", "b", b"a", (1, "a"), frozenset({1})])
set_operations = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "remove"]), st.tuples(set_members))
    | st.tuples(
        st.just("update"),
        st.tuples(st.lists(set_members, max_size=3))
        | st.tuples(st.sets(set_members, max_size=3), st.frozensets(set_members, max_size=2)),
    )
    | st.tuples(st.just("clear"), st.just(())),
    max_size=25,
)


@given(set_operations, st.integers(0, 25))
def test_a_set_behaves_as_a_set(
    operations: list[tuple[str, tuple[Any, ...]]], snapshot_at: int
) -> None:
    run_against_model(ReplSet, set(), operations, snapshot_at, lambda target: target.copy(), set)


def test_a_sets_errors_and_reads_are_a_sets() -> None:
    cluster = Cluster(ReplSet)
    members: ReplSet[Any] = cluster.objects[0]
    cluster("update", ["a", "b"], {("t", 1)})
    with pytest.raises(KeyError, match="'c'"):
        cluster("remove", "c")
    cluster("discard", "c")
    with pytest.raises(TypeError, match="unhashable"):
        cluster("add", [1])
    assert "a" in members and ("t", 1) in members and len(members) == 3
    assert sorted(map(repr, members)) == sorted(map(repr, {"a", "b", ("t", 1)}))
    assert members.copy() == {"a", "b", ("t", 1)}
    assert not hasattr(ReplSet, "pop")  # which member it pops would differ between replicas


# --- ReplQueue ------------------------------------------------------------------------------
class _QueueModel:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: deque[Any] = deque()

    def put(self, item: Any) -> bool:
        if self.maxsize and len(self.items) >= self.maxsize:
            return False
        self.items.append(item)
        return True

    def get(self) -> Any:
        if not self.items:
            raise IndexError("get from an empty ReplQueue")
        return self.items.popleft()


queue_operations = st.lists(
    st.tuples(st.just("put"), st.tuples(plain)) | st.tuples(st.just("get"), st.just(())),
    max_size=25,
)


@given(queue_operations, st.integers(0, 25), st.integers(0, 3))
def test_a_queue_is_first_in_first_out_and_bounded(
    operations: list[tuple[str, tuple[Any, ...]]], snapshot_at: int, maxsize: int
) -> None:
    model = _QueueModel(maxsize)
    cluster = Cluster(lambda: ReplQueue(maxsize))
    for position, (method, args) in enumerate(operations):
        if position == snapshot_at:
            cluster.join_from_snapshot(ReplQueue)  # maxsize comes with the snapshot
        assert outcome_of(cluster.apply(method, *args)) == model_outcome(model, method, args)
        for target in cluster.objects:
            assert target.qsize() == len(model.items) and target.maxsize == maxsize
            assert target.full() == (maxsize > 0 and len(model.items) == maxsize)


def test_a_queue_refuses_a_put_when_full_and_a_get_when_empty() -> None:
    cluster = Cluster(lambda: ReplQueue(maxsize=2))
    queue: ReplQueue[Any] = cluster.objects[0]
    assert queue.empty() and not queue.full()
    with pytest.raises(IndexError, match="empty ReplQueue"):
        cluster("get")
    with pytest.raises(IndexError, match="empty ReplQueue"):
        queue.peek()
    assert cluster("put", {"job": [1]}) is True
    assert cluster("put", ("b", 2)) is True
    assert cluster("put", "c") is False  # full: not queued
    assert queue.full() and queue.qsize() == len(queue) == 2
    queue.peek()["job"].append(2)  # a copy
    assert cluster("get") == {"job": [1]}
    assert cluster("get") == ("b", 2)
    assert queue.empty()
    with pytest.raises(ValueError, match="maxsize"):
        ReplQueue(-1)


# --- snapshots ------------------------------------------------------------------------------
TYPED = [None, True, 1, 1.0, "s", b"b", (1, ("t",)), [1, [2]], {1: "i", "k": {b"x": 2.5}}]
# Keys of every hashable kind (True stands for 1: they are one key).
TYPED_DICT = {
    "none": None,
    True: True,
    1.5: 1.0,
    b"b": b"b",
    (1, ("t",)): (1, ("t",)),
    frozenset({2}): [1, [2]],
    "dict": {1: "i", "k": {b"x": 2.5}},
}


@pytest.mark.parametrize(
    ("make", "calls"),
    [
        (ReplCounter, [("add", (2.5,))]),
        (ReplDict, [("update", (TYPED_DICT,)), ("setdefault", ("s", {1, 2}))]),
        (ReplList, [("extend", (TYPED,)), ("append", ({frozenset({1, "a"})},))]),
        (ReplSet, [("update", ([None, True, 2, 1.5, "s", b"b", (1, ("t",)), frozenset({1})],))]),
        (lambda: ReplQueue(5), [("put", (item,)) for item in TYPED[:5]]),
        (ReplLock, [("acquire", ("a", "h1", 5)), ("acquire", ("b", "h2", 0.5))]),
    ],
    ids=["counter", "dict", "list", "set", "queue", "lock"],
)
def test_a_snapshot_restores_each_battery_with_its_types(
    make: Callable[[], Any], calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    cluster = Cluster(make)
    for method, args in calls:
        cluster.apply(method, *args).unwrap()
    restored = cluster.join_from_snapshot()  # canonical states (types included) agree
    assert canonical(state_of(restored)) == canonical(state_of(cluster.objects[0]))
    # ... and go on alike: a last call of the same kind on every replica.
    method, args = calls[-1]
    cluster.apply(method, *args)


def test_a_restored_queue_and_dict_keep_their_order() -> None:
    queue = Cluster(ReplQueue)
    for item in ["x", ("y",), b"z"]:
        queue("put", item)
    queue.join_from_snapshot()
    assert [queue("get") for _ in range(3)] == ["x", ("y",), b"z"]
    d = Cluster(ReplDict)
    d("update", [(3, "a"), ("b", 1), (1.5, None)])
    restored = d.join_from_snapshot()
    assert restored.keys() == [3, "b", 1.5]
    assert d("popitem") == (1.5, None)


# --- ReplLock -------------------------------------------------------------------------------
class Locks(Cluster):
    """Replicas of a ReplLock; `leader` is the replica the hooks are called on."""

    def __init__(self, replicas: int = 2) -> None:
        super().__init__(ReplLock, replicas)
        self.leader = 0

    def duties(self, now: float) -> list[LeaderCall]:
        calls: list[LeaderCall] = self.objects[self.leader].__raft_leader_duties__(now)
        for _method, args, kwargs in calls:  # what a node proposes must encode
            values.encode([list(args), kwargs])
        return calls

    def elect(self, replica: int, now: float) -> None:
        self.leader = replica
        self.objects[replica].__raft_became_leader__(now)

    def propose(self, call: LeaderCall) -> Any:
        method, args, kwargs = call
        return self(method, *args, **kwargs)

    def holders(self) -> set[str | None]:
        return {target.holder("a") for target in self.objects}


def expire(name: str, holder: str, revision: int) -> LeaderCall:
    return ("expire", (name, holder, revision), {})


def test_a_lock_is_exclusive_reentrant_and_released_only_by_its_holder() -> None:
    locks = Locks()
    assert locks("acquire", "a", "h1", 10) is True
    assert locks("acquire", "a", "h2", 10) is False
    assert locks("acquire", "a", "h1", 20) is True  # re-entrant: a renewal
    assert locks("renew", "a", "h2") is False
    assert locks("renew", "a", "h1") is True
    assert locks("release", "a", "h2") is False
    assert locks("renew", "b", "h1") is False  # never held
    assert all(t.holder("a") == "h1" and t.locks() == {"a": "h1"} for t in locks.objects)
    assert locks("release", "a", "h1") is True
    assert locks("release", "a", "h1") is False
    assert locks.holders() == {None}
    assert locks("acquire", "a", "h2", 1) is True


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("a", "h", 0), ValueError),
        (("a", "h", -1), ValueError),
        (("a", "h", float("nan")), ValueError),
        (("a", "h", float("inf")), ValueError),
        (("a", "h", "5"), TypeError),
        (("a", "h", True), TypeError),
        ((1, "h", 5), TypeError),
        (("a", None, 5), TypeError),
    ],
)
def test_a_lock_refuses_bad_arguments_alike_everywhere(args: tuple[Any, ...], error: type) -> None:
    locks = Locks()
    with pytest.raises(error):
        locks("acquire", *args)
    assert locks.holders() == {None}


def test_a_lock_expires_only_once_its_ttl_has_passed_on_the_leaders_clock() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    assert locks.duties(100.0) == []  # notes the acquire: deadline 110
    assert locks.duties(105.0) == []
    assert locks.duties(109.99) == []
    assert locks.holders() == {"h1"}
    assert locks.duties(110.0) == [expire("a", "h1", 1)]
    assert locks.propose(expire("a", "h1", 1)) is True
    assert locks.holders() == {None}
    assert locks.duties(111.0) == []
    assert locks("acquire", "a", "h2", 10) is True  # free for the next holder


def test_a_renewal_moves_the_deadline() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    locks.duties(100.0)
    locks("renew", "a", "h1")
    assert locks.duties(105.0) == []  # deadline 115 now
    assert locks.duties(114.0) == []
    assert locks.duties(115.0) == [expire("a", "h1", 2)]


def test_a_renewal_applied_between_the_duty_and_its_expire_wins() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    locks.duties(100.0)
    proposed = locks.duties(110.0)
    assert proposed == [expire("a", "h1", 1)]
    assert locks("renew", "a", "h1") is True  # applied before the expire
    assert locks.propose(proposed[0]) is False
    assert locks.holders() == {"h1"}
    assert locks.duties(110.1) == []  # the renewal counts from here
    assert locks.duties(120.0) == []
    assert locks.duties(120.1) == [expire("a", "h1", 2)]


def test_an_old_expire_never_frees_a_lock_released_and_taken_again() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    locks.duties(0.0)
    stale = locks.duties(10.0)
    locks("release", "a", "h1")
    locks("acquire", "a", "h1", 10)  # the same holder, a new revision
    assert locks.propose(stale[0]) is False
    assert locks.holders() == {"h1"}


def test_an_expire_in_flight_is_proposed_again_only_after_a_while() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 1)
    locks.duties(0.0)
    assert locks.duties(1.0) == [expire("a", "h1", 1)]
    assert locks.duties(1.1) == []  # not applied yet: not proposed again at once
    assert locks.duties(1.0 + EXPIRE_RETRY_SECONDS) == [expire("a", "h1", 1)]  # lost?


def test_a_new_leader_gives_every_held_lock_a_full_ttl() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    locks("acquire", "b", "h2", 20)
    locks.duties(100.0)
    assert locks.duties(109.0) == []  # the old leader would expire "a" at 110
    # Replica 1 takes over; its monotonic clock reads 5000 (clocks are not shared).
    locks.elect(1, 5000.0)
    assert locks.duties(5009.9) == []
    assert locks.duties(5010.0) == [expire("a", "h1", 1)]
    assert locks.duties(5020.0) == [expire("a", "h1", 1), expire("b", "h2", 2)]
    assert [locks.propose(call) for call in locks.duties(5030.0)] == [True, True]
    assert locks.holders() == {None}
    assert all(target.locks() == {} for target in locks.objects)


def test_a_new_leader_notes_renewals_it_applies_after_taking_over() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    locks.elect(1, 0.0)  # elected before it applied the renewal below
    locks("renew", "a", "h1")
    assert locks.duties(5.0) == []
    assert locks.duties(14.9) == []
    assert locks.duties(15.0) == [expire("a", "h1", 2)]


def test_a_lock_agrees_on_every_replica_after_expiry() -> None:
    locks = Locks(replicas=3)
    for name, holder in [("a", "h1"), ("b", "h2"), ("c", "h1")]:
        locks("acquire", name, holder, 1)
    locks.duties(0.0)
    locks("renew", "b", "h2")
    for call in locks.duties(1.0):
        locks.propose(call)  # Cluster checks the replicas after each
    assert [target.locks() for target in locks.objects] == [{"b": "h2"}] * 3
    assert locks("acquire", "a", "h3", 1) is True
    assert [target.locks() for target in locks.objects] == [{"b": "h2", "a": "h3"}] * 3


def test_a_locks_deadlines_are_local_not_in_snapshots_and_kept_across_restores() -> None:
    locks = Locks()
    locks("acquire", "a", "h1", 10)
    locks.duties(100.0)
    leader = locks.objects[0]
    assert set(state_of(leader)) == {"_locks", "_revision"}
    assert locks.objects[1]._raftkv_deadlines == {}  # a follower's hooks were not called
    fresh = ReplLock()
    fresh._raftkv_deadlines["gone"] = 1.0
    ObjectStateMachine({NAME: fresh}).restore(locks.machines[0].snapshot())
    assert fresh.holder("a") == "h1" and fresh._raftkv_deadlines == {"gone": 1.0}
    # Leading without became_leader: a held lock with no deadline here gets a full ttl, the
    # deadline of a lock not held goes.
    assert fresh.__raft_leader_duties__(50.0) == []
    assert fresh._raftkv_deadlines == {"a": 60.0}
    assert fresh.__raft_leader_duties__(59.9) == []
    assert fresh.__raft_leader_duties__(60.0) == [expire("a", "h1", 1)]
    assert fresh.acquire("b", "h2", 1) is True  # no node: runs here; revisions go on
    assert fresh._locks["b"] == ("h2", 1.0, 2)


# The lock under random schedules: true time `t`; each replica's monotonic clock is t plus
# its own offset; proposals of the leader apply later, or are lost with a leader change.
lock_events = st.lists(
    st.tuples(
        st.just("acquire"),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["h1", "h2"]),
        st.sampled_from([0.3, 1.0, 2.5]),
    )
    | st.tuples(st.sampled_from(["renew", "release"]), st.sampled_from(["a", "b"]), st.just("h1"))
    | st.tuples(st.just("tick"), st.sampled_from([0.05, DUTY, 0.4, 1.5]))
    | st.tuples(st.just("deliver"))
    | st.tuples(st.just("elect"), st.booleans()),
    max_size=60,
)


@settings(max_examples=300)
@given(lock_events)
def test_a_lock_expires_never_before_its_ttl_and_always_soon_after(
    events: list[tuple[Any, ...]],
) -> None:
    offsets = [0.0, 1000.0]
    locks = Locks()
    t = 0.0
    granted: dict[str, tuple[float, float]] = {}  # name -> (time of last grant, ttl)
    pending: list[LeaderCall] = []

    def apply(method: str, *args: Any) -> Any:
        result = locks(method, *args)
        name = args[0]
        if result is True and method in ("acquire", "renew"):
            ttl = args[2] if method == "acquire" else granted[name][1]
            granted[name] = (t, ttl)
        elif result is True:
            if method == "expire":
                since, ttl = granted[name]
                assert t - since >= ttl - 1e-6, f"{name} expired {t - since}s after, ttl {ttl}"
            del granted[name]
        return result

    for event in events:
        kind = event[0]
        if kind == "tick":
            t += event[1]
            pending.extend(locks.duties(t + offsets[locks.leader]))
        elif kind == "deliver":
            if pending:
                method, args, _ = pending.pop(0)
                apply(method, *args)
        elif kind == "elect":
            if event[1]:
                pending.clear()  # the old leader's proposals were lost
            new = 1 - locks.leader
            locks.elect(new, t + offsets[new])
        else:
            apply(kind, *event[1:])
    # Quiet from now on: what is in flight applies, and duties run every DUTY.
    for method, args, _ in pending:
        apply(method, *args)
    start = t
    while granted:
        t += DUTY
        for method, args, _ in locks.duties(t + offsets[locks.leader]):
            apply(method, *args)
        for name, (since, ttl) in granted.items():
            assert t <= max(since, start) + ttl + 2 * DUTY + 1e-6, f"{name} kept too long"
    assert all(target.locks() == {} for target in locks.objects)
