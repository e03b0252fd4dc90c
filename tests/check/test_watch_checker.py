"""The watch checker (check/watches.py) passes what a watcher should see, and fails, naming
the first discrepancy, on an event missing, duplicated, out of order or foreign, and on one
missing at the end up to the index the watcher reached."""

from __future__ import annotations

import pytest

from raftkv.check.watches import (
    ObservedEvent,
    WatchObservation,
    check_watch,
    check_watches,
    committed_changes,
)
from raftkv.kv import Command, encode_command
from raftkv.kv.ranges import KeyRange
from raftkv.kv.txn import Txn, TxnOp

COMMANDS = [
    Command(op="put", key="a/1", value="1"),  # 1
    Command(op="put", key="b", value="2"),  # 2
    Command(op="txn", key="", txn=Txn(success=[TxnOp(op="put", key="a/2", value="3"),
                                               TxnOp(op="put", key="a/3", value="4")])),  # 3
    Command(op="del", key="a/1"),  # 4
    Command(op="cas", key="a/2", value="5", if_value="nope"),  # 5: fails, changes nothing
    Command(op="delrange", key="a/", end="a0"),  # 6: a/2, a/3
    Command(op="put", key="a/1", value="7"),  # 7
]  # fmt: skip
EXPECTED = committed_changes(
    (index, encode_command(command)) for index, command in enumerate(COMMANDS, start=1)
)
GOOD = [
    ObservedEvent("put", "a/2", 3, "3"),
    ObservedEvent("put", "a/3", 3, "4"),
    ObservedEvent("delete", "a/1", 4),
    ObservedEvent("delete", "a/2", 6),
    ObservedEvent("delete", "a/3", 6),
    ObservedEvent("put", "a/1", 7, "7"),
]


def observation(events: list[ObservedEvent], reached: int = 7) -> WatchObservation:
    return WatchObservation("w1", KeyRange.prefix("a/"), 1, events, reached)


def test_the_replay_yields_every_change_in_log_order() -> None:
    assert [(change.index, change.key) for change in EXPECTED] == [
        (1, "a/1"), (2, "b"), (3, "a/2"), (3, "a/3"), (4, "a/1"), (6, "a/2"), (6, "a/3"),
        (7, "a/1"),
    ]  # fmt: skip


def test_what_the_watcher_should_see_passes() -> None:
    assert check_watch(EXPECTED, observation(GOOD)).ok
    # A stream that broke in the middle of index 6, having promised up to 4: fine so far.
    assert check_watch(EXPECTED, observation(GOOD[:4], reached=4)).ok
    verdict = check_watches(EXPECTED, [observation(GOOD), observation(GOOD[:3], reached=5)])
    assert verdict.ok and verdict.checked == 9


@pytest.mark.parametrize(
    ("events", "reached", "words"),
    [
        (GOOD[:2] + GOOD[3:], 7, "(delete 'a/2' at 6): delete 'a/1' at 4 is missing before"),
        (GOOD[:3] + GOOD[2:], 7, "event #4 (delete 'a/1' at 4): duplicated"),
        ([GOOD[1], GOOD[0], *GOOD[2:]], 7, "event #1 (put 'a/3'='4' at 3): out of order"),
        ([*GOOD[:2], ObservedEvent("put", "b", 2, "2"), *GOOD[2:]], 7, "event #3"),
        (GOOD[:5], 7, "missing put 'a/1'='7' at 7 (event #6)"),
        ([*GOOD[:5], ObservedEvent("put", "a/1", 7, "other")], 7, "foreign"),
        (GOOD[:4] + GOOD[5:], 5, "event #5 (put 'a/1'='7' at 7)"),
    ],
)
def test_each_kind_of_discrepancy_fails_and_is_named(
    events: list[ObservedEvent], reached: int, words: str
) -> None:
    verdict = check_watch(EXPECTED, observation(events, reached))
    assert not verdict.ok
    assert verdict.message.startswith("watcher w1")
    assert words in verdict.message, verdict.message


def test_a_foreign_event_is_called_foreign() -> None:
    events = [*GOOD[:2], ObservedEvent("put", "b", 2, "2"), *GOOD[2:]]
    verdict = check_watch(EXPECTED, observation(events))
    assert "foreign" in verdict.message and "after index 1" in verdict.message
    lines = [{"type": "put", "key": "a/2", "value": "3", "mod_index": 3, "create_index": 3}]
    assert ObservedEvent.of_line(lines[0]) == GOOD[0]
