"""The simulated network: messages in flight on virtual time, with loss, duplication,
reordering, partitions (symmetric and one-way) and crashed receivers.

Every message gets a delivery tick when sent. Messages due at the same tick are delivered in
the order they were sent, so the only source of reordering is the random delay, drawn from the
network's own random stream.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Final

from raftkv.core.messages import AnyMessage
from raftkv.sim.stats import Stats
from raftkv.sim.transcript import Transcript

# Without reordering every message takes exactly the base latency: links are FIFO. A latency
# of 0 delivers within the same tick (a LAN, where a round trip is far below a tick); 1 tick
# makes every round trip a noticeable share of the election timeout (a WAN).
LATENCY_TICKS_CHOICES = (0, 1)
# With reordering, a share of the messages (`reorder_rate`) is held up for an extra 1 to
# REORDER_SPREAD_TICKS ticks, a few heartbeat intervals: stale AppendEntries and responses
# overtake each other, while most traffic keeps the base latency.
REORDER_SPREAD_TICKS: Final = 5


class Network:
    def __init__(self, rng: random.Random, stats: Stats, transcript: Transcript) -> None:
        self._rng = rng
        self._stats = stats
        self._transcript = transcript
        # Delivery tick -> (receiver incarnation, message), in send order.
        self._in_flight: dict[int, list[tuple[int, AnyMessage]]] = {}
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.latency_ticks = 1
        self.reorder_rate = 0.0
        # Directed links that lose everything, (sender, receiver): a symmetric partition's and
        # one-way faults', healed separately, and their union.
        self._partition_links: set[tuple[int, int]] = set()
        self._oneway_links: set[tuple[int, int]] = set()
        self._blocked: set[tuple[int, int]] = set()
        # The incarnation of each running node; a crashed node is absent. A message is only
        # delivered to the incarnation it was sent to: a restart drops every connection.
        self.incarnations: dict[int, int] = {}

    # --- links --------------------------------------------------------------------------
    def can_reach(self, sender: int, receiver: int) -> bool:
        return (sender, receiver) not in self._blocked

    def block(self, sender: int, receiver: int) -> None:
        """One-way fault: `sender` can no longer reach `receiver` (the reverse still works)."""
        self._oneway_links.add((sender, receiver))
        self._blocked = self._partition_links | self._oneway_links

    def partition(self, groups: Iterable[Iterable[int]], node_ids: Iterable[int]) -> None:
        """Symmetric partition (replacing any earlier one): nodes in different groups cannot
        reach each other; a node in no group is isolated from everyone."""
        group_of: dict[int, int] = {}
        for number, group in enumerate(groups):
            for node_id in group:
                group_of[node_id] = number
        ids = sorted(node_ids)
        links: set[tuple[int, int]] = set()
        for sender in ids:
            for receiver in ids:
                if sender != receiver and group_of.get(sender, -sender) != group_of.get(
                    receiver, -receiver
                ):
                    links.add((sender, receiver))
        self._partition_links = links
        self._blocked = self._partition_links | self._oneway_links

    def heal_partition(self) -> None:
        self._partition_links = set()
        self._blocked = set(self._oneway_links)

    def heal_oneway(self) -> None:
        self._oneway_links = set()
        self._blocked = set(self._partition_links)

    def heal(self) -> None:
        self._partition_links, self._oneway_links, self._blocked = set(), set(), set()

    @property
    def blocked_links(self) -> list[tuple[int, int]]:
        return sorted(self._blocked)

    @property
    def in_flight_count(self) -> int:
        return sum(len(batch) for batch in self._in_flight.values())

    def postpone(self, now: int) -> None:
        """Move what is still due at `now` to the next tick (a tick's delivery rounds ran
        out)."""
        batch = self._in_flight.pop(now, None)
        if batch:
            self._in_flight.setdefault(now + 1, [])[:0] = batch

    # --- traffic ------------------------------------------------------------------------
    def send(self, now: int, messages: list[AnyMessage]) -> None:
        stats = self._stats
        fault_counts = stats.faults  # Stats.count_fault, inlined: this runs per message
        transcript = self._transcript if self._transcript.enabled else None
        # Bound once: a method call on a Random (not compiled) looks the method up each time.
        random = self._rng.random
        incarnations = self.incarnations
        blocked = self._blocked
        any_blocked = len(blocked) > 0
        in_flight = self._in_flight
        drop_rate = self.drop_rate
        duplicate_rate = self.duplicate_rate
        reorder_rate = self.reorder_rate
        latency_ticks = self.latency_ticks
        sent = 0
        # The random draws per message, in this order, are part of every seed's schedule.
        for message in messages:
            sent += 1
            receiver = message.to
            if any_blocked and (message.sender, receiver) in blocked:
                stats.messages_dropped += 1
                if transcript is not None:
                    transcript.rpc(now, message, "blocked")
                continue
            if drop_rate and random() < drop_rate:
                stats.messages_dropped += 1
                fault_counts["drop"] = fault_counts.get("drop", 0) + 1
                if transcript is not None:
                    transcript.rpc(now, message, "dropped")
                continue
            incarnation = incarnations.get(receiver)
            if incarnation is None:
                stats.messages_dropped += 1
                if transcript is not None:
                    transcript.rpc(now, message, "receiver down")
                continue
            copies = 1
            if duplicate_rate and random() < duplicate_rate:
                copies = 2
                stats.messages_duplicated += 1
                fault_counts["duplicate"] = fault_counts.get("duplicate", 0) + 1
            note = "duplicated" if copies == 2 else ""
            # Only a transcript wants them: no list per message otherwise.
            delivery_ticks: list[int] | None = None if transcript is None else []
            in_transit = (incarnation, message)
            while copies:
                copies -= 1
                tick = now + latency_ticks
                if reorder_rate and random() < reorder_rate:
                    tick += 1 + int(random() * REORDER_SPREAD_TICKS)
                    fault_counts["reorder"] = fault_counts.get("reorder", 0) + 1
                batch = in_flight.get(tick)
                if batch is None:
                    in_flight[tick] = [in_transit]
                else:
                    batch.append(in_transit)
                if delivery_ticks is not None:
                    delivery_ticks.append(tick)
            # Reported once the delays are drawn, so a replay knows when each copy arrives
            # (the transcript's line is the same either way).
            if transcript is not None and delivery_ticks is not None:
                transcript.rpc(now, message, note, delivery_ticks)
        stats.messages_sent += sent

    def hold(self, now: int, message: AnyMessage, until: int) -> None:
        """Deliver `message` at `until` instead (its receiver is paused: the bytes wait in
        its socket buffer)."""
        incarnation = self.incarnations.get(message.to)
        if incarnation is not None:
            self._in_flight.setdefault(until, []).append((incarnation, message))
            self._stats.messages_delivered -= 1  # counted again when it really arrives
            if self._transcript.enabled:
                self._transcript.held(now, message, until)

    def due(self, now: int) -> list[AnyMessage]:
        """The messages that arrive at `now`, minus those lost on the way (the link broke or
        the receiver crashed since they were sent). Messages sent at `now` with no delay are
        due at `now` too: call again until it returns nothing."""
        # Messages sent between two ticks (by a test, or a restart) with no latency were due
        # at the tick that had just ended: they go first.
        # get and del, not pop(key, None): a compiled pop with a default is a generic method
        # call, and this runs every delivery round.
        in_flight = self._in_flight
        leftover = in_flight.get(now - 1)
        if leftover is not None:
            del in_flight[now - 1]
        batch = in_flight.get(now)
        if batch is not None:
            del in_flight[now]
        if leftover:
            batch = leftover + batch if batch else leftover
        if not batch:
            return []
        delivered: list[AnyMessage] = []
        incarnations = self.incarnations
        blocked = self._blocked
        any_blocked = len(blocked) > 0
        for incarnation, message in batch:
            receiver = message.to
            if incarnations.get(receiver) != incarnation:
                self._lose(now, message, "receiver crashed")
            elif any_blocked and (message.sender, receiver) in blocked:
                self._lose(now, message, "link broken in flight")
            else:
                delivered.append(message)
        self._stats.messages_delivered += len(delivered)
        return delivered

    def _lose(self, now: int, message: AnyMessage, reason: str) -> None:
        self._stats.messages_dropped += 1
        if self._transcript.enabled:
            self._transcript.rpc(now, message, f"lost: {reason}")
