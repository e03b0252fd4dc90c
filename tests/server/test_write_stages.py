"""Sampled stage timing of writes (server/write_stages.py), on a clock the test moves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from raftkv.core import Entry, Ready
from raftkv.server.write_stages import SAMPLE_EVERY, WriteStages


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stage_sums(registry: CollectorRegistry) -> dict[str, tuple[float, float]]:
    """stage -> (sum, count)"""
    found: dict[str, list[float]] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            stage = sample.labels.get("stage")
            if stage is None or sample.name.endswith("_bucket"):
                continue
            pair = found.setdefault(stage, [0.0, 0.0])
            pair[0 if sample.name.endswith("_sum") else 1] = sample.value
    return {stage: (pair[0], pair[1]) for stage, pair in found.items() if pair[1]}


def entries(first: int, last: int) -> list[Entry]:
    return [Entry(term=1, index=index) for index in range(first, last + 1)]


def test_a_sampled_write_is_timed_through_each_leader_stage() -> None:
    registry, clock = CollectorRegistry(), Clock()
    stages = WriteStages(registry, clock)
    for index in range(1, SAMPLE_EVERY):
        stages.proposed(index)  # not sampled
    stages.proposed(SAMPLE_EVERY)
    clock.now += 0.001
    stages.ready_started(Ready(entries=entries(1, SAMPLE_EVERY)))  # handed to the disk
    clock.now += 0.001
    stages.synced(SAMPLE_EVERY - 1)  # an earlier Ready's sync, ending first: not the sample's
    clock.now += 0.001
    stages.synced(SAMPLE_EVERY)
    clock.now += 0.003
    stages.ready_started(Ready(entries=entries(9, 9)))  # another write's: not committed yet
    stages.ready_started(Ready(committed_entries=entries(1, SAMPLE_EVERY - 1)))
    clock.now += 0.004
    stages.ready_started(Ready(committed_entries=entries(SAMPLE_EVERY, SAMPLE_EVERY)))
    clock.now += 0.005
    stages.applied()
    clock.now += 0.006
    stages.resumed(SAMPLE_EVERY - 1)  # another write's handler: not the sample
    stages.resumed(SAMPLE_EVERY)
    sums = stage_sums(registry)
    expected = {
        "queue": 0.001,
        "leader_disk": 0.002,
        "replicate": 0.007,
        "apply": 0.005,
        "resume": 0.006,
    }
    assert set(sums) == set(expected)
    for stage, seconds in expected.items():
        assert abs(sums[stage][0] - seconds) < 1e-9, stage
        assert sums[stage][1] == 1


def test_a_sample_that_never_completes_is_replaced_by_the_next() -> None:
    registry, clock = CollectorRegistry(), Clock()
    stages = WriteStages(registry, clock)
    for index in range(1, SAMPLE_EVERY + 1):
        stages.proposed(index)
    stages.ready_started(Ready(entries=entries(1, SAMPLE_EVERY)))
    # Leadership lost: the entry is never found committed. The next sample starts afresh.
    for index in range(SAMPLE_EVERY + 1, 2 * SAMPLE_EVERY + 1):
        stages.proposed(index)
    stages.resumed(SAMPLE_EVERY)
    assert stage_sums(registry) == {}
    clock.now += 0.5
    stages.ready_started(Ready(entries=entries(SAMPLE_EVERY + 1, 2 * SAMPLE_EVERY)))
    stages.synced(2 * SAMPLE_EVERY)
    stages.ready_started(Ready(committed_entries=entries(1, 2 * SAMPLE_EVERY)))
    stages.applied()
    stages.resumed(2 * SAMPLE_EVERY)
    sums = stage_sums(registry)
    assert sums["queue"] == (0.5, 1)  # from the second sample's proposal, not the first's
    assert all(count == 1 for _, count in sums.values())


def test_a_follower_times_one_append_in_sample_every_from_arrival_to_acknowledgement() -> None:
    registry, clock = CollectorRegistry(), Clock()
    stages = WriteStages(registry, clock)
    for last in range(1, SAMPLE_EVERY):  # not sampled: no clock read, nothing observed
        stages.append_arrived(last)
        stages.ready_started(Ready(entries=entries(last, last)))
        stages.acknowledged(last)
    assert stage_sums(registry) == {}
    stages.append_arrived(SAMPLE_EVERY + 4)  # the sample
    clock.now += 0.25
    for _ in range(SAMPLE_EVERY):
        stages.append_arrived(SAMPLE_EVERY + 6)  # one sample at a time: ignored, due or not
    stages.ready_started(Ready(entries=entries(SAMPLE_EVERY, SAMPLE_EVERY)))  # an earlier append
    stages.acknowledged(SAMPLE_EVERY)
    clock.now += 0.25
    stages.ready_started(Ready(entries=entries(SAMPLE_EVERY + 1, SAMPLE_EVERY + 6)))
    clock.now += 0.125
    # A sync the loop did not wait for: an earlier one's end, or a later Ready's without
    # entries, does not end the sample; the one through its entries does, at the time the
    # sync thread wrote the acknowledgement.
    stages.acknowledged(SAMPLE_EVERY + 5)
    stages.acknowledged(0)
    clock.now += 0.5
    stages.acknowledged(SAMPLE_EVERY + 6, at=clock.now - 0.375)
    assert stage_sums(registry) == {"follower_queue": (0.5, 1), "follower_disk": (0.25, 1)}
