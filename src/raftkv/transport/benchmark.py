"""Micro benchmark: AppendEntries per second through TcpTransport on loopback.

    python -m raftkv.transport.benchmark [--entries N] [--entry-bytes B] [--loop uvloop]

A sender (node 1, this process) streams AppendEntries to a receiver (node 2, a child process
with its own event loop, as in a real cluster); the receiver acknowledges every
`ACK_EVERY_MESSAGES` with an AppendEntriesResponse, and the sender keeps at most
`WINDOW_MESSAGES` unacknowledged, as a leader's inflight limit would, so nothing is dropped.
Reported: messages/s, entries/s and payload MB/s, for batches of 1 and 64 entries.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from multiprocessing.queues import Queue

import uvloop

from raftkv.core.messages import AnyMessage, AppendEntries, AppendEntriesResponse, Entry
from raftkv.transport.handshake import LeaseSettings
from raftkv.transport.tcp import TcpTransport

HOST = "127.0.0.1"
CLUSTER_ID = "benchmark"
# Both ends must declare the same (the handshake compares them); the server's defaults.
LEASE_SETTINGS = LeaseSettings.of(tick_ms=10, election_timeout_ticks_min=15, check_quorum=True)
SENDER, RECEIVER = 1, 2
# Below the send queue's frame limit (4096), so the benchmark never measures drops.
WINDOW_MESSAGES = 2048
ACK_EVERY_MESSAGES = 256
READY_TIMEOUT_SECONDS = 30.0
# Large batches still send this many messages, so a run lasts long enough to measure.
MESSAGES_PER_RUN_MIN = 20_000


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    return uvloop.new_event_loop if name == "uvloop" else asyncio.new_event_loop


def append_entries(sequence: int, batch: int, entry_bytes: int) -> AppendEntries:
    data = b"v" * entry_bytes
    first = sequence * batch + 1
    return AppendEntries(
        to=RECEIVER,
        term=1,
        leader_id=SENDER,
        prev_log_index=first - 1,
        prev_log_term=1,
        entries=[Entry(term=1, index=first + offset, data=data) for offset in range(batch)],
        leader_commit=first - 1,
    )


def run_receiver(sender_port: int, messages: int, loop: str, ports: Queue[int]) -> None:
    async def receive() -> None:
        done = asyncio.Event()
        received = 0

        def on_message(message: AnyMessage) -> None:
            nonlocal received
            received += 1
            if received % ACK_EVERY_MESSAGES == 0 or received == messages:
                transport.send(
                    AppendEntriesResponse(
                        to=SENDER, term=1, from_id=RECEIVER, success=True, match_index=received
                    )
                )
            if received == messages:
                done.set()

        transport = TcpTransport(
            node_id=RECEIVER,
            cluster_id=CLUSTER_ID,
            lease_settings=LEASE_SETTINGS,
            listen_host=HOST,
            listen_port=0,
            on_message=on_message,
        )
        transport.set_peer_address(SENDER, HOST, sender_port)
        await transport.start()
        ports.put(transport.listen_address[1])
        await done.wait()
        # Let the last acknowledgement leave before closing.
        while transport.counters().peers[SENDER].queued_frames:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        await transport.close()

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(receive())


async def send(messages: int, batch: int, entry_bytes: int, loop: str) -> float:
    """Messages per second from the first send to the last acknowledgement."""
    acknowledged = 0
    progress = asyncio.Event()

    def on_message(message: AnyMessage) -> None:
        nonlocal acknowledged
        if isinstance(message, AppendEntriesResponse):
            acknowledged = message.match_index
            progress.set()

    transport = TcpTransport(
        node_id=SENDER,
        cluster_id=CLUSTER_ID,
        lease_settings=LEASE_SETTINGS,
        listen_host=HOST,
        listen_port=0,
        on_message=on_message,
        # The receiver dials back before this side learns its port.
        accept_unknown_peers=True,
    )
    await transport.start()
    context = multiprocessing.get_context("spawn")
    ports: Queue[int] = context.Queue()
    receiver = context.Process(
        target=run_receiver, args=(transport.listen_address[1], messages, loop, ports)
    )
    receiver.start()
    try:
        port = await asyncio.to_thread(ports.get, True, READY_TIMEOUT_SECONDS)
        transport.set_peer_address(RECEIVER, HOST, port)
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            while not transport.is_connected(RECEIVER):
                await asyncio.sleep(0.001)
        # Encoding is part of the cost measured; building the Python objects is not.
        prepared = [append_entries(sequence, batch, entry_bytes) for sequence in range(messages)]
        started = time.perf_counter()
        sent = 0
        while acknowledged < messages:
            while sent < messages and sent - acknowledged < WINDOW_MESSAGES:
                transport.send(prepared[sent])
                sent += 1
            progress.clear()
            await progress.wait()
        elapsed = time.perf_counter() - started
        dropped = transport.counters().peers[RECEIVER].frames_dropped
        if dropped:
            raise RuntimeError(f"{dropped} frames dropped: the window is too large")
        return messages / elapsed
    finally:
        await transport.close()
        await asyncio.to_thread(receiver.join, READY_TIMEOUT_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=400_000, help="entries sent per run")
    parser.add_argument("--entry-bytes", type=int, default=100)
    parser.add_argument("--batches", default="1,64", help="entries per AppendEntries")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--runs", type=int, default=3, help="runs per batch size; median shown")
    arguments = parser.parse_args()
    for batch in (int(text) for text in arguments.batches.split(",")):
        messages = max(MESSAGES_PER_RUN_MIN, arguments.entries // batch)
        rates = []
        for _ in range(arguments.runs):
            with asyncio.Runner(loop_factory=loop_factory(arguments.loop)) as runner:
                rates.append(
                    runner.run(send(messages, batch, arguments.entry_bytes, arguments.loop))
                )
        rate = statistics.median(rates)
        megabytes = rate * batch * arguments.entry_bytes / 1e6
        print(
            f"{arguments.loop:8} batch={batch:<3} entry={arguments.entry_bytes}B "
            f"messages={messages:<7} {rate:>10,.0f} msg/s {rate * batch:>12,.0f} entries/s "
            f"{megabytes:8.1f} MB/s of entry data "
            f"(median of {len(rates)}: {min(rates):,.0f}..{max(rates):,.0f} msg/s)"
        )


if __name__ == "__main__":
    main()
