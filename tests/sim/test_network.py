"""The simulated network on its own: latency, order, loss, duplication, links, restarts."""

from __future__ import annotations

import random
from typing import get_args

from raftkv.core.messages import (
    AnyMessage,
    AppendEntries,
    AppendEntriesResponse,
    Forward,
    ForwardReply,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.sim.network import REORDER_SPREAD_TICKS, Network
from raftkv.sim.stats import Stats
from raftkv.sim.transcript import Transcript


def make_network(seed: int = 1) -> tuple[Network, Stats]:
    stats = Stats()
    network = Network(random.Random(seed), stats, Transcript())
    network.incarnations = {1: 0, 2: 0, 3: 0}
    return network, stats


def message(sender: int, receiver: int, term: int) -> AnyMessage:
    return TimeoutNow(to=receiver, term=term, leader_id=sender)


def terms(messages: list[AnyMessage]) -> list[int]:
    return [m.term for m in messages]


def test_fifo_with_fixed_latency() -> None:
    network, stats = make_network()
    network.send(0, [message(1, 2, term) for term in range(5)])
    assert network.due(0) == []
    assert terms(network.due(1)) == [0, 1, 2, 3, 4]
    assert stats.messages_delivered == 5


def test_zero_latency_delivers_within_the_tick() -> None:
    network, _ = make_network()
    network.latency_ticks = 0
    network.send(4, [message(1, 2, 7)])
    assert terms(network.due(4)) == [7]


def test_sent_between_ticks_with_zero_latency_arrives_next_tick() -> None:
    network, _ = make_network()
    network.latency_ticks = 0
    network.send(4, [message(1, 2, 7)])  # after tick 4 finished delivering
    assert terms(network.due(5)) == [7]


def test_reordering_delays_some_messages_within_the_spread() -> None:
    network, stats = make_network()
    network.reorder_rate = 1.0
    network.send(0, [message(1, 2, term) for term in range(50)])
    arrived = [terms(network.due(tick)) for tick in range(1, REORDER_SPREAD_TICKS + 3)]
    assert arrived[0] == []
    assert sorted(t for batch in arrived for t in batch) == list(range(50))
    assert [t for batch in arrived for t in batch] != list(range(50))
    assert stats.faults["reorder"] == 50


def test_drops_and_duplicates() -> None:
    network, stats = make_network()
    network.drop_rate = 1.0
    network.send(0, [message(1, 2, 1)])
    assert network.due(1) == [] and stats.messages_dropped == 1
    network.drop_rate, network.duplicate_rate = 0.0, 1.0
    network.send(1, [message(1, 2, 2)])
    assert terms(network.due(2)) == [2, 2] and stats.messages_duplicated == 1


def test_symmetric_partition_and_heal() -> None:
    network, _ = make_network()
    network.partition([[1], [2, 3]], [1, 2, 3])
    assert not network.can_reach(1, 2) and not network.can_reach(2, 1)
    assert network.can_reach(2, 3)
    network.heal_partition()
    assert network.can_reach(1, 2)


def test_one_way_failure_blocks_one_direction_only() -> None:
    network, _ = make_network()
    network.block(1, 2)
    network.send(0, [message(1, 2, 1), message(2, 1, 2)])
    assert terms(network.due(1)) == [2]
    network.heal_oneway()
    assert network.can_reach(1, 2)


def test_a_link_that_fails_loses_what_is_in_flight() -> None:
    network, stats = make_network()
    network.send(0, [message(1, 2, 1)])
    network.block(1, 2)
    assert network.due(1) == [] and stats.messages_dropped == 1


def test_a_restarted_receiver_never_gets_messages_sent_to_its_previous_life() -> None:
    network, _ = make_network()
    network.send(0, [message(1, 2, 1)])
    network.incarnations[2] = 1  # crashed and restarted meanwhile
    network.send(0, [message(1, 2, 2)])
    assert terms(network.due(1)) == [2]


def test_messages_to_a_down_node_are_lost() -> None:
    network, stats = make_network()
    del network.incarnations[3]
    network.send(0, [message(1, 3, 1)])
    assert network.due(1) == [] and stats.messages_dropped == 1


def test_same_seed_same_schedule() -> None:
    schedules = []
    for _ in range(2):
        network, _ = make_network(seed=9)
        network.drop_rate, network.duplicate_rate, network.reorder_rate = 0.2, 0.2, 0.5
        network.send(0, [message(1, 2, term) for term in range(40)])
        schedules.append([terms(network.due(tick)) for tick in range(10)])
    assert schedules[0] == schedules[1]


def test_a_broken_link_drops_every_message_type_from_its_sender_only() -> None:
    # Each type names its sender in its own field (3, 4 or 5 here; `to` is 2): a `sender`
    # reading the wrong field would let the message through the broken link.
    every_type = [
        (AppendEntries(2, 1, 4, 0, 0, [], 0), 4),
        (AppendEntriesResponse(2, 1, 3, True, 0), 3),
        (RequestVote(2, 1, 5, 0, 0), 5),
        (RequestVoteResponse(2, 1, 3, True), 3),
        (InstallSnapshot(2, 1, 4, 1, 1, 0, b"", True), 4),
        (InstallSnapshotResponse(2, 1, 3, 1, 0), 3),
        (TimeoutNow(2, 1, 4), 4),
        (Forward(2, 0, 3, 7, "propose"), 3),
        (ForwardReply(2, 0, 3, 7, leader_id=4), 3),
    ]
    assert {type(message) for message, _ in every_type} == set(get_args(AnyMessage))
    for sent, sender in every_type:
        network, stats = make_network()
        network.incarnations = {node_id: 0 for node_id in range(1, 6)}
        network.block(1, 2)  # a link from a node that sent none of them
        network.send(0, [sent])
        assert network.due(1) == [sent], type(sent).__name__
        network.block(sender, 2)
        network.send(1, [sent])
        assert network.due(2) == [] and stats.messages_dropped == 1, type(sent).__name__
