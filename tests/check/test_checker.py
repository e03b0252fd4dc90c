"""Hand-written histories with a known verdict, each the smallest form of an anomaly."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.check import HistoryError, Operation, check_history
from tests.check.builders import cas, delete, get, put


def minimal_indexes(result_history: list[Operation], key: str = "k") -> list[int]:
    result = check_history(result_history)
    assert result.ok is False, result.explain()
    return sorted(op.index for op in result.keys[key].minimal)


def test_sequential_history_is_linearizable() -> None:
    history = [put("c1", 0, 1, "a"), get("c2", 2, 3, "a"), put("c1", 4, 5, "b")]
    result = check_history(history)
    assert result.ok is True
    assert result.summary() == "OK n=3 keys=1"
    assert result.explain() == "OK n=3 keys=1"


def test_stale_read_is_rejected_with_the_three_operations_that_prove_it() -> None:
    history = [
        put("c1", 0, 1, "old"),
        put("c2", 2, 3, "new"),
        get("c3", 2.5, 2.6, "old"),  # concurrent with the second put: fine
        get("c3", 4, 5, "old"),  # after the second put returned: stale
    ]
    assert minimal_indexes(history) == [0, 1, 3]
    explanation = check_history(history).explain()
    assert "NOT LINEARIZABLE n=4 keys=1" in explanation
    assert "#3 c3 get 'k' [call 4, return 5] -> 'old'" in explanation


def test_read_of_absent_after_a_completed_write_is_rejected() -> None:
    history = [put("c1", 0, 1, "a"), get("c2", 2, 3, None)]
    assert minimal_indexes(history) == [0, 1]


def test_lost_update_two_cas_from_the_same_value_cannot_both_succeed() -> None:
    history = [
        put("c1", 0, 1, "v0"),
        cas("c2", 2, 5, "v0", "v1"),
        cas("c3", 3, 6, "v0", "v2"),
    ]
    assert minimal_indexes(history) == [0, 1, 2]


def test_concurrent_cas_where_one_fails_is_linearizable() -> None:
    history = [
        put("c1", 0, 1, "v0"),
        cas("c2", 2, 5, "v0", "v1"),
        cas("c3", 3, 6, "v0", "v2", failed=True, current="v1"),
        get("c1", 7, 8, "v1"),
    ]
    assert check_history(history).ok is True


def test_duplicated_write_reappearing_is_rejected() -> None:
    # put 1, then put 2 strictly after, then reads see 1 again with no writer of 1 running.
    history = [
        put("c1", 0, 1, "1"),
        put("c2", 2, 3, "2"),
        get("c3", 4, 5, "2"),
        get("c3", 6, 7, "1"),
    ]
    assert minimal_indexes(history) == [0, 1, 3]


def test_retried_write_with_unknown_outcome_may_take_effect_late() -> None:
    # The first put timed out; it may have taken effect after the second one.
    history = [
        put("c1", 0, None, "1"),
        put("c2", 2, 3, "2"),
        get("c3", 4, 5, "1"),
    ]
    assert check_history(history).ok is True


def test_write_with_unknown_outcome_may_never_take_effect() -> None:
    history = [put("c1", 0, None, "1"), get("c2", 1, 2, None), get("c2", 10, 11, None)]
    assert check_history(history).ok is True


def test_write_with_unknown_outcome_cannot_take_effect_before_its_call() -> None:
    history = [get("c2", 0, 1, "1"), put("c1", 2, None, "1")]
    result = check_history(history)
    assert result.ok is False
    # The late put is set aside (it could only take effect after every reader), so the read
    # alone is the proof.
    assert [op.index for op in result.keys["k"].minimal] == [0]
    assert "nothing writes it before it returned" in result.explain()


def test_unknown_write_that_took_effect_then_was_overwritten() -> None:
    history = [
        put("c1", 0, None, "x"),
        get("c2", 1, 2, "x"),
        put("c3", 3, 4, "y"),
        get("c2", 5, 6, "y"),
    ]
    assert check_history(history).ok is True


def test_overlapping_writes_linearizable_in_exactly_one_order() -> None:
    # Both puts span the whole run; the reads force "b" first, then "a".
    writes = [put("c1", 0, 10, "a"), put("c2", 0, 10, "b")]
    reads = [get("c3", 1, 2, "b"), get("c4", 5, 6, "a"), get("c3", 11, 12, "a")]
    assert check_history(writes + reads).ok is True
    flipped = [*writes, *reads[:2], get("c3", 11, 12, "b")]
    result = check_history(flipped)
    assert result.ok is False
    assert "#4 c3 get" in result.explain()


def test_touching_intervals_count_as_concurrent() -> None:
    assert check_history([put("c1", 0, 1, "a"), get("c2", 1, 2, None)]).ok is True


def test_read_from_the_future_is_rejected_with_its_writer() -> None:
    history = [put("c1", 0, 1, "a"), get("c2", 2, 3, "b"), put("c3", 4, 5, "b")]
    result = check_history(history)
    assert result.ok is False
    assert [op.index for op in result.keys["k"].minimal] == [1, 2]
    assert "#2, the first writer, is called later" in result.explain()


def test_failed_cas_reports_the_value_it_found() -> None:
    base = [put("c1", 0, 1, "a")]
    assert check_history([*base, cas("c2", 2, 3, "b", "c", failed=True, current="a")]).ok
    wrong_current = [*base, cas("c2", 2, 3, "b", "c", failed=True, current="z")]
    assert check_history(wrong_current).ok is False
    # Without `current` it still observed a value other than the expected one.
    should_have_succeeded = [*base, cas("c2", 2, 3, "a", "c", failed=True)]
    assert check_history(should_have_succeeded).ok is False
    assert check_history([*base, cas("c2", 2, 3, "b", "c", failed=True)]).ok is True


def test_failed_cas_that_found_its_expected_value_is_impossible() -> None:
    history = [put("c1", 0, 1, "a"), cas("c2", 2, 3, "a", "b", failed=True, current="a")]
    result = check_history(history)
    assert result.ok is False
    assert [op.index for op in result.keys["k"].minimal] == [1]


def test_cas_if_absent_and_conditional_put() -> None:
    create = cas("c1", 0, 1, None, "a")
    assert check_history([create, get("c2", 2, 3, "a")]).ok is True
    assert check_history([put("c0", -2, -1, "z"), create]).ok is False
    conditional_put = Operation(
        client="c1", op="put", key="k", value="a", if_absent=True, call_time=0, return_time=1
    )
    assert check_history([put("c0", -2, -1, "z"), conditional_put]).ok is False


def test_delete_semantics() -> None:
    assert check_history([delete("c1", 0, 1, found=False)]).ok is True
    assert check_history([delete("c1", 0, 1)]).ok is False  # nothing to delete
    assert check_history([put("c1", 0, 1, "a"), delete("c2", 2, 3, found=False)]).ok is False
    deleted = [put("c1", 0, 1, "a"), delete("c2", 2, 3), get("c3", 4, 5, None)]
    assert check_history(deleted).ok is True
    # A get reporting not_found is a read of "absent", whatever its status says.
    missing = Operation(
        client="c3", op="get", key="k", call_time=4, return_time=5, status="fail",
        error="not_found",
    )  # fmt: skip
    assert check_history([*deleted[:2], missing]).ok is True
    assert check_history([deleted[0], missing]).ok is False


def test_unknown_delete_may_take_effect() -> None:
    history = [put("c1", 0, 1, "a"), delete("c2", 2, None), get("c3", 3, 4, None)]
    assert check_history(history).ok is True


def test_definite_failures_and_unanswered_reads_have_no_effect() -> None:
    rejected = Operation(
        client="c1", op="put", key="k", value="a", call_time=0, status="fail", error="not_leader"
    )
    assert check_history([rejected, get("c2", 1, 2, None)]).ok is True
    assert check_history([rejected, get("c2", 1, 2, "a")]).ok is False
    timed_out_read = Operation(client="c2", op="get", key="k", call_time=1, status="unknown")
    assert check_history([put("c1", 0, 1, "a"), timed_out_read]).ok is True


def test_keys_are_checked_independently() -> None:
    history = [
        put("c1", 0, 1, "a", key="x"),
        put("c1", 0, 1, "a", key="y"),
        put("c2", 2, 3, "b", key="y"),
        get("c3", 4, 5, "a", key="x"),
        get("c3", 4, 5, "a", key="y"),
    ]
    result = check_history(history)
    assert result.ok is False
    assert result.failed_keys == ["y"]
    assert result.keys["x"].ok is True
    assert "key 'y'" in result.explain() and "key 'x'" not in result.explain()


def test_search_failure_without_a_shortcut_is_minimised() -> None:
    # "y" has two writers, so the one-writer shortcuts do not apply; the search must decide.
    history = [
        put("c1", 0, 1, "y"),
        put("c2", 2, 3, "x"),
        get("c3", 4, 5, "y"),
        put("c4", 6, 7, "y"),
        get("c5", 8, 9, "y"),
        put("c6", 8, 9, "z"),
    ]
    result = check_history(history)
    assert result.ok is False
    key_result = result.keys["k"]
    assert key_result.states_explored > 0
    assert key_result.minimization_complete
    assert sorted(op.index for op in key_result.minimal) == [0, 1, 2]
    assert check_history(op.operation for op in key_result.minimal).ok is False
    assert "longest linearizable prefix found" in result.explain()


def test_exhausted_budget_reports_unknown() -> None:
    history = [put(f"c{n}", 0, 10, f"v{n}") for n in range(6)]
    history += [get("r", 11, 12, "v3")]
    result = check_history(history, max_states=2, minimize=False)
    assert result.ok is None
    assert result.keys["k"].budget_exhausted == "max_states"
    assert result.explain().startswith("UNKNOWN n=7 keys=1")
    assert "ran out of its budget" in result.explain()
    assert check_history(history).ok is True


def test_invalid_operations_are_refused() -> None:
    backwards = put("c1", 5, 1, "a")
    with pytest.raises(HistoryError, match="return time is before call time"):
        check_history([backwards])
    no_value = msgspec.structs.replace(put("c1", 0, 1, "a"), value=None)
    with pytest.raises(HistoryError, match="put needs a value"):
        check_history([no_value])
