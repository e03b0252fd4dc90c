"""The in-memory twin's network faults: partitions, one-way blocks, isolation, random loss."""

from __future__ import annotations

import random

from raftkv.transport import MemoryHub, MemoryTransport

from .harness import Network, append_entries, run_on_network, start_cluster, wait_until


def test_partition_holds_messages_until_heal() -> None:
    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2, 3])
        hub = network.hub
        hub.partition([1], [2, 3])
        one, one_inbox = nodes[1]
        two, two_inbox = nodes[2]
        _, three_inbox = nodes[3]
        one.send(append_entries(1, 2, 0))
        two.send(append_entries(2, 3, 0))
        await three_inbox.wait_for_count(1)
        await wait_until(lambda: not one.is_connected(2), "node 1 cut off")
        assert two_inbox.messages == []
        assert one.counters().peers[2].queued_frames == 1
        hub.heal()
        await two_inbox.wait_for_count(1)
        assert two_inbox.sequences_from(1) == [0]
        assert one.is_connected(2)
        assert one_inbox.messages == []

    run_on_network("memory", body)


def test_block_cuts_one_direction_only() -> None:
    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2])
        network.hub.block(1, 2)
        one, one_inbox = nodes[1]
        two, two_inbox = nodes[2]
        one.send(append_entries(1, 2, 0))
        two.send(append_entries(2, 1, 0))
        await one_inbox.wait_for_count(1)
        assert two_inbox.messages == []
        assert not one.is_connected(2)
        assert two.is_connected(1)

    run_on_network("memory", body)


def test_isolate_cuts_a_node_off_from_everyone() -> None:
    async def body(network: Network) -> None:
        nodes = await start_cluster(network, [1, 2, 3])
        network.hub.isolate(3)
        for sender in (1, 2):
            nodes[sender][0].send(append_entries(sender, 3, 0))
        nodes[3][0].send(append_entries(3, 1, 0))
        nodes[1][0].send(append_entries(1, 2, 0))
        await nodes[2][1].wait_for_count(1)
        assert nodes[3][1].messages == [] and nodes[1][1].messages == []
        network.hub.heal()
        await nodes[3][1].wait_for_count(2)
        await nodes[1][1].wait_for_count(1)

    run_on_network("memory", body)


def test_random_loss_is_reproducible_from_the_hub_seed() -> None:
    def lost_sequences(seed: int) -> list[int]:
        received: list[int] = []

        async def body(network: Network) -> None:
            network.hub = MemoryHub(random.Random(seed))
            network.hub.set_drop_probability(0.3)
            nodes = await start_cluster(network, [1, 2])
            sender, _ = nodes[1]
            _, inbox = nodes[2]
            for sequence in range(200):
                sender.send(append_entries(1, 2, sequence))
            await wait_until(
                lambda: network.hub.frames_lost + len(inbox.messages) == 200, "all delivered"
            )
            received.extend(inbox.sequences_from(1))

        run_on_network("memory", body)
        return sorted(set(range(200)) - set(received))

    first = lost_sequences(11)
    assert first == lost_sequences(11)
    assert 20 < len(first) < 100


def test_memory_port_zero_gets_a_fresh_port() -> None:
    async def body(network: Network) -> None:
        first = network.create(1, lambda message: None)
        second = network.create(2, lambda message: None)
        await first.start()
        await second.start()
        assert isinstance(first, MemoryTransport)
        assert first.listen_address != second.listen_address

    run_on_network("memory", body)
