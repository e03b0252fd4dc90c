"""The nemesis schedule: a pure function of its seed, every kind in a short run, nothing
overlapping or past the end. No processes."""

from __future__ import annotations

import itertools

import pytest

from raftkv.chaos.nemesis import FAULT_KINDS, parse_kinds, schedule


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(7, 60, FAULT_KINDS) == schedule(7, 60, FAULT_KINDS)
    assert schedule(7, 60, FAULT_KINDS) != schedule(8, 60, FAULT_KINDS)


@pytest.mark.parametrize("seconds", [5, 8, 20, 60])
@pytest.mark.parametrize("seed", range(5))
def test_every_kind_comes_at_least_once_and_faults_do_not_overlap(seconds: int, seed: int) -> None:
    faults = schedule(seed, seconds, FAULT_KINDS)
    assert {f.kind for f in faults} == set(FAULT_KINDS)
    for before, after in itertools.pairwise(faults):
        assert before.start + before.duration < after.start
    assert faults[-1].start + faults[-1].duration <= seconds


def test_a_long_run_has_more_faults_than_kinds() -> None:
    assert len(schedule(1, 60, FAULT_KINDS)) > 2 * len(FAULT_KINDS)


def test_only_the_kinds_asked_for() -> None:
    assert {f.kind for f in schedule(3, 60, parse_kinds("kill,pause"))} == {"kill", "pause"}
    assert schedule(3, 60, parse_kinds("")) == []
    assert parse_kinds("all") == FAULT_KINDS
    with pytest.raises(ValueError, match="unknown nemesis kind 'flood'"):
        parse_kinds("kill,flood")
