"""The map model: ranges, delete-ranges and transactions in histories."""

from __future__ import annotations

import io

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.check import HistoryError, Operation, check_history, dump_history, load_history
from raftkv.check.components import split_components
from raftkv.check.history import StepResult
from raftkv.check.synthetic import Workload, generate_history, inject_stale_read
from raftkv.check.synthetic_map import MapWorkload, corrupt_answer, generate_map_history
from raftkv.kv.txn import Compare, TxnOp

from .builders import cas, delete, delete_range, get, put, range_read, txn
from .reference_map import brute_force_map_linearizable


def _swap_x_to_y() -> Operation:
    """A transaction moving the token: if x == "1", delete x and put y = "1"."""
    return txn(
        "c1", 1, 2, [Compare("x", "value", "==", "1")],
        [TxnOp("delete", "x"), TxnOp("put", "y", "1")],
        succeeded=True, results=[StepResult(deleted=1), StepResult()],
    )  # fmt: skip


def test_a_range_read_sees_every_key_written_before_it_began() -> None:
    writes = [put("c1", 0, 1, "a", key="p/a"), put("c2", 0, 1, "b", key="p/b")]
    assert check_history([*writes, range_read("c3", 2, 3, {"p/a": "a", "p/b": "b"},
                                              prefix="p/")]).ok is True  # fmt: skip
    missing = range_read("c3", 2, 3, {"p/a": "a"}, prefix="p/")
    result = check_history([*writes, missing])
    assert result.ok is False
    assert result.failed_keys == ["{'p/a', 'p/b'}"]
    assert "could not be linearized next" in result.explain()


def test_a_range_read_concurrent_with_a_write_may_see_it_or_not() -> None:
    write = put("c1", 0, 4, "a", key="p/a")
    assert check_history([write, range_read("c2", 1, 2, {}, prefix="p/")]).ok is True
    assert check_history([write, range_read("c2", 1, 2, {"p/a": "a"}, prefix="p/")]).ok is True


def test_a_stale_range_read_is_rejected() -> None:
    history = [
        put("c1", 0, 1, "old", key="a"),
        put("c1", 2, 3, "new", key="a"),
        range_read("c2", 4, 5, {"a": "old"}, start="a", end="b"),
    ]
    assert check_history(history).ok is False


def test_a_range_read_checks_limit_count_and_more() -> None:
    writes = [put("c1", 0, 1, str(n), key=f"k{n}") for n in range(3)]
    first_two = {"k0": "0", "k1": "1"}
    assert check_history(
        [*writes, range_read("c2", 2, 3, first_two, prefix="k", limit=2, count=3, more=True)]
    ).ok
    for wrong in (
        range_read("c2", 2, 3, first_two, prefix="k", limit=2, count=2, more=True),
        range_read("c2", 2, 3, first_two, prefix="k", limit=2, count=3, more=False),
        range_read("c2", 2, 3, {"k0": "0", "k2": "2"}, prefix="k", limit=2),
        range_read("c2", 2, 3, {"k0": "0", "k1": "x"}, prefix="k", limit=2),
    ):
        assert check_history([*writes, wrong]).ok is False, wrong


def test_a_range_read_seeing_half_a_transaction_is_rejected() -> None:
    history = [put("c0", 0, 0.5, "1", key="x"), _swap_x_to_y()]
    both_before = range_read("c2", 1.5, 3, {"x": "1"}, start="x", end="z")
    after = range_read("c2", 1.5, 3, {"y": "1"}, start="x", end="z")
    assert check_history([*history, both_before]).ok is True
    assert check_history([*history, after]).ok is True
    # The token in both places, or in neither: half of the transaction.
    for torn in ({"x": "1", "y": "1"}, {}):
        result = check_history([*history, range_read("c2", 1.5, 3, torn, start="x", end="z")])
        assert result.ok is False, torn


def test_two_gets_seeing_half_a_transaction_are_rejected() -> None:
    history = [put("c0", 0, 0.5, "1", key="x"), _swap_x_to_y()]
    # y written, then x still there: no single instant has both.
    torn = [get("c2", 1.2, 1.3, "1", key="y"), get("c2", 1.4, 1.5, "1", key="x")]
    assert check_history([*history, *torn]).ok is False
    whole = [get("c2", 1.2, 1.3, None, key="y"), get("c2", 1.4, 1.5, "1", key="x")]
    assert check_history([*history, *whole]).ok is True


def test_a_transaction_that_saw_a_state_no_order_explains_is_rejected() -> None:
    setup = [put("c0", 0, 1, "1", key="x"), put("c0", 0, 1, "2", key="y")]
    # Its compare on x succeeded and its get of y answered "3", which nothing wrote.
    impossible = txn(
        "c1", 2, 3, [Compare("x", "value", "==", "1")], [TxnOp("get", "y")],
        succeeded=True, results=[StepResult(value="3")],
    )  # fmt: skip
    assert check_history([*setup, impossible]).ok is False
    # The compare failed though x had been "1" since before it began.
    wrongly_failed = txn(
        "c1", 2, 3, [Compare("x", "value", "==", "1")], [], [TxnOp("get", "y")],
        succeeded=False, results=[StepResult(value="2")],
    )  # fmt: skip
    assert check_history([*setup, wrongly_failed]).ok is False
    right = txn(
        "c1", 2, 3, [Compare("x", "value", "==", "1")], [TxnOp("get", "y")],
        succeeded=True, results=[StepResult(value="2")],
    )  # fmt: skip
    assert check_history([*setup, right]).ok is True


def test_two_transactions_that_both_won_a_race_are_rejected() -> None:
    def claim(client: str, value: str) -> Operation:
        return txn(
            client, 1, 2, [Compare("lock", "exists", "==", False)],
            [TxnOp("put", "lock", value), TxnOp("put", "owner", value)],
            succeeded=True, results=[StepResult(), StepResult()],
        )  # fmt: skip

    assert check_history([claim("c1", "a")]).ok is True
    assert check_history([claim("c1", "a"), claim("c2", "b")]).ok is False


def test_version_compares_are_exact() -> None:
    writes = [put("c0", 0, 1, "a", key="x"), put("c0", 2, 3, "b", key="x")]

    def version_is(version: int, succeeded: bool) -> Operation:
        return txn(
            "c1", 4, 5, [Compare("x", "version", "==", version)], [TxnOp("get", "y")], [],
            succeeded=succeeded, results=[StepResult()] if succeeded else [],
        )  # fmt: skip

    assert check_history([*writes, version_is(2, True)]).ok is True
    assert check_history([*writes, version_is(1, True)]).ok is False
    assert check_history([*writes, version_is(2, False)]).ok is False
    # A delete resets the version: created again, it is 1.
    again = [delete("c0", 6, 7, key="x"), put("c0", 8, 9, "c", key="x")]
    late = msgspec.structs.replace(version_is(1, True), call_time=10, return_time=11)
    assert check_history([*writes, *again, late]).ok is True


def test_mod_index_compares_are_assumed_to_go_either_way() -> None:
    """The history has no log indexes: the documented limit of the model."""
    setup = [put("c0", 0, 1, "a", key="x")]
    for succeeded in (True, False):
        branch = [TxnOp("put", "y", "1")]
        operation = txn(
            "c1", 2, 3, [Compare("x", "mod_index", "==", 99)], branch, branch,
            succeeded=succeeded, results=[StepResult()],
        )  # fmt: skip
        assert check_history([*setup, operation]).ok is True
    # Its other compares still count when it succeeded.
    both = txn(
        "c1", 2, 3,
        [Compare("x", "mod_index", "==", 99), Compare("x", "value", "==", "zzz")],
        [TxnOp("put", "y", "1")], succeeded=True, results=[StepResult()],
    )  # fmt: skip
    assert check_history([*setup, both]).ok is False


def test_a_delete_range_that_left_a_key_is_rejected() -> None:
    history = [
        put("c1", 0, 1, "a", key="p/a"),
        put("c1", 0, 1, "b", key="p/b"),
        delete_range("c2", 2, 3, 2, prefix="p/"),
    ]
    assert check_history([*history, range_read("c3", 4, 5, {}, prefix="p/")]).ok is True
    assert check_history([*history, get("c3", 4, 5, None, key="p/b")]).ok is True
    assert check_history([*history, get("c3", 4, 5, "b", key="p/b")]).ok is False
    # And its count must be the keys it found.
    miscounted = [*history[:2], delete_range("c2", 2, 3, 1, prefix="p/")]
    assert check_history(miscounted).ok is False


def test_an_unknown_delete_range_may_or_may_not_have_happened() -> None:
    history = [put("c1", 0, 1, "a", key="p/a"), delete_range("c2", 2, None, None, prefix="p/")]
    assert check_history([*history, get("c3", 4, 5, "a", key="p/a")]).ok is True
    assert check_history([*history, get("c3", 4, 5, None, key="p/a")]).ok is True
    # But not undone: once seen deleted, the key stays deleted.
    flip = [get("c3", 4, 5, None, key="p/a"), get("c3", 6, 7, "a", key="p/a")]
    assert check_history([*history, *flip]).ok is False


def test_an_unknown_transaction_takes_its_whole_branch_or_nothing() -> None:
    setup = [put("c0", 0, 1, "1", key="x")]
    unknown = txn(
        "c1", 2, None, [Compare("x", "value", "==", "1")],
        [TxnOp("put", "y", "new"), TxnOp("put", "z", "new")],
    )  # fmt: skip
    seen = range_read("c2", 5, 6, {"x": "1", "y": "new", "z": "new"}, start="x")
    assert check_history([*setup, unknown, seen]).ok is True
    assert check_history([*setup, unknown, range_read("c2", 5, 6, {"x": "1"}, start="x")]).ok
    torn = range_read("c2", 5, 6, {"x": "1", "y": "new"}, start="x")
    assert check_history([*setup, unknown, torn]).ok is False


def test_components_are_connected_by_ranges_over_absent_keys() -> None:
    history = [
        range_read("c1", 0, 1, {}, prefix="a"),
        put("c2", 2, 3, "v", key="ab"),
        put("c3", 0, 1, "v", key="b"),
        range_read("c1", 0, 1, {}, prefix="zzz"),
    ]
    components = split_components(history)
    assert [(c.keys, c.indices, c.multi_key) for c in components] == [
        (("ab",), [0, 1], True),
        (("b",), [2], False),
        ((), [3], True),
    ]


def test_a_wide_range_joins_every_key_in_it_and_no_other() -> None:
    history = [put("c1", 0, 1, "v", key=key) for key in ("a", "b", "c", "d", "e")]
    history.append(range_read("c2", 2, 3, {"b": "v", "c": "v"}, start="b", end="d"))
    components = split_components(history)
    assert sorted(c.keys for c in components) == [("a",), ("b", "c"), ("d",), ("e",)]
    result = check_history(history)
    assert result.ok is True
    assert sorted(result.keys) == ["a", "d", "e", "{'b', 'c'}"]


def test_single_key_operations_beside_a_range_keep_their_register_semantics() -> None:
    history = [
        put("c1", 0, 1, "a", key="x"),
        cas("c2", 2, 3, "a", "b", key="x"),
        cas("c3", 4, 5, "a", "c", failed=True, current="b", key="x"),
        delete("c1", 6, 7, key="x"),
        delete("c1", 8, 9, found=False, key="x"),
        range_read("c4", 10, 11, {}, prefix="x"),
    ]
    assert check_history(history).ok is True
    lost = [*history[:2], cas("c3", 2, 3, "a", "c", key="x"), history[-1]]
    assert check_history(lost).ok is False


def test_an_exhausted_search_budget_is_unknown_not_ok() -> None:
    writes = [put(f"c{n}", 0, 10, str(n), key=f"k{n % 3}") for n in range(12)]
    history = [*writes, range_read("r", 11, 12, {"k0": "0", "k1": "1", "k2": "2"}, prefix="k")]
    # Linearizable (each key's last write may be its first), but not provably in 5 states.
    short = check_history(history, max_states=5)
    assert short.ok is None
    assert short.unknown_keys == ["{'k0', 'k1', 'k2'}"]
    assert "ran out of its budget (max_states)" in short.explain()
    assert check_history(history).ok is True


def test_multi_key_records_round_trip_and_are_validated() -> None:
    history = [
        put("c0", 0, 1, "1", key="x"),
        _swap_x_to_y(),
        range_read("c2", 3, 4, {"y": "1"}, prefix="", limit=5, count=1, more=False),
        delete_range("c3", 5, 6, 1, start="a", end="z"),
    ]
    buffer = io.StringIO()
    dump_history(history, buffer)
    assert list(load_history(buffer.getvalue().splitlines())) == history
    text = buffer.getvalue()
    assert '"compare":[{"key":"x","target":"value","op":"==","value":"1"}]' in text
    bad = [
        '{"client":"c","op":"range","call":0,"return":1,"kvs":[]}',  # no prefix or start
        '{"client":"c","op":"range","prefix":"a","call":0,"return":1}',  # ok without kvs
        '{"client":"c","op":"delrange","prefix":"a","call":0,"return":1}',  # no deleted
        '{"client":"c","op":"txn","call":0,"return":1,"succeeded":true,"results":[{}]}',
        '{"client":"c","op":"txn","compare":[{"key":"x","target":"version","op":"==",'
        '"value":"1"}],"call":0,"status":"unknown"}',
        '{"client":"c","op":"get","key":"k","prefix":"a","call":0,"return":1}',
    ]
    for line in bad:
        with pytest.raises(HistoryError):
            load_history([line])


def test_old_single_key_histories_give_the_same_verdicts() -> None:
    """No multi-key operation: the per-key path, untouched (a component per key)."""
    history = [put("c1", 0, 1, "a", key="x"), get("c2", 2, 3, "a", key="x")]
    result = check_history(history)
    assert result.ok is True
    assert list(result.keys) == ["x"]
    assert result.keys["x"].component_keys == ()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6), st.booleans())
def test_map_model_agrees_with_brute_force(seed: int, count: int, corrupt: bool) -> None:
    """Histories the real store produced, some with one answer changed: the checker's
    verdict is the brute-force replay's."""
    workload = MapWorkload(
        count, client_count=3, compare_targets=("value", "version", "exists"),
        indeterminate_fraction=0.3, failed_fraction=0.05,
    )  # fmt: skip
    history = generate_map_history(workload, seed)
    if corrupt:
        history = corrupt_answer(history, seed)
    result = check_history(history)
    assert result.ok is brute_force_map_linearizable(history), result.explain()
    if not corrupt:
        assert result.ok is True


def test_generated_histories_with_every_operation_check_ok() -> None:
    history = generate_map_history(MapWorkload(400), seed=7)
    kinds = {op.op for op in history}
    assert kinds == {"get", "put", "del", "cas", "range", "delrange", "txn"}
    assert {op.status for op in history} == {"ok", "fail", "unknown"}
    assert any(c.target == "mod_index" for op in history for c in op.compare)
    result = check_history(history)
    assert result.ok is True, result.explain()
    corrupted = [corrupt_answer(history, seed) for seed in range(10)]
    assert any(check_history(bad).ok is False for bad in corrupted)


def test_single_key_components_are_judged_exactly_as_keys_alone() -> None:
    """A range naming no key of a history forces the component path; every key's result,
    explanation and minimal sub-history stay what the per-key path gives."""
    history = generate_history(Workload(2000, client_count=16, key_count=4), seed=3)
    broken = inject_stale_read(history, seed=3)[0]
    for operations in (history, broken):
        alone = check_history(operations)
        beside = check_history([*operations, range_read("r", 0, 1, {}, prefix="zzz")])
        assert beside.ok is alone.ok
        assert {key: beside.keys[key] for key in alone.keys} == alone.keys
    assert check_history(broken).ok is False


def test_a_failing_component_is_explained_with_a_minimal_sub_history() -> None:
    history = [
        put("c0", 0, 0.5, "1", key="x"),
        _swap_x_to_y(),
        put("c3", 0, 0.2, "q", key="z"),
        range_read("c4", 0.3, 0.4, {"x": "1", "z": "q"}, start="x"),
        range_read("c2", 1.5, 3, {}, start="x", end="z"),  # neither x nor y: torn
        range_read("c5", 5, 6, {"y": "1", "z": "q"}, start="x"),
    ]
    result = check_history(history)
    assert result.ok is False
    (failed,) = result.failed_keys
    component = result.keys[failed]
    minimal = [indexed.operation for indexed in component.minimal]
    # A proof on its own, that no weakening of one more operation keeps: the torn read, the
    # writers (outcomes forgotten: the failure does not need them), and the read after the
    # put that says x was "1" by then. The read after the transaction is not needed.
    assert [indexed.index for indexed in component.minimal] == [0, 1, 2, 3, 4]
    assert [op.status for op in minimal] == ["unknown", "unknown", "unknown", "ok", "ok"]
    assert check_history(minimal).ok is False
    assert component.minimization_complete
    explanation = result.explain()
    assert "-> success [deleted 1, ok]" in explanation
    assert "minimal non-linearizable sub-history (5 of 6 operations" in explanation


def test_unknown_writes_to_different_keys_may_both_be_seen_by_one_range() -> None:
    """The search's rule for unknown writes must allow a chain of them before the read
    that needs them all (found by the minimiser: a wrong rule rejected this)."""
    writes = [put("c0", 0, None, "1", key="x"), put("c1", 0, None, "q", key="z")]
    both = range_read("c2", 1, 2, {"x": "1", "z": "q"}, start="x")
    assert check_history([*writes, both]).ok is True
    assert check_history([*reversed(writes), both]).ok is True
    assert check_history([*writes, range_read("c2", 1, 2, {"z": "q"}, start="x")]).ok is True
    torn = [both, range_read("c3", 3, 4, {"x": "1"}, start="x")]
    assert check_history([*writes, *torn]).ok is False


def test_a_transaction_step_without_count_is_judged_as_the_checker_judges_it() -> None:
    """Found by the property above (seed 592350): a range step answered with keys but no
    `count` or `more` (an answer the corruption builds) was refused by the brute-force
    reference, which compared every field of a step, and accepted by the checker, which
    leaves out what was not recorded, as both do for a whole operation. The put may have
    landed first (it is indeterminate), so the answer is linearizable."""
    workload = MapWorkload(
        2, client_count=3, compare_targets=("value", "version", "exists"),
        indeterminate_fraction=0.3, failed_fraction=0.05,
    )  # fmt: skip
    history = corrupt_answer(generate_map_history(workload, 592350), 592350)
    assert check_history(history).ok is True
    assert brute_force_map_linearizable(history) is True
