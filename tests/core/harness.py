"""A small hand-driven cluster for the paper tests: the test decides every tick and every
delivery, so each rule is exercised in isolation (after etcd's raft_test.go `network`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace

from raftkv.core import Entry, Membership, RaftConfig, RaftNode, ReadState
from raftkv.core.messages import AnyMessage
from raftkv.storage import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from raftkv.storage.recovery import recover


class Cluster:
    def __init__(
        self,
        node_ids: Iterable[int],
        seed: int = 0,
        bootstrap: bool = True,
        **config: object,
    ) -> None:
        self.ids = sorted(node_ids)
        self.seed = seed
        # The paper's rules are tested with every follower sent every entry at once;
        # quorum-first replication has its own tests (test_quorum_first.py).
        config.setdefault("quorum_first", False)
        self.config = config
        self.nodes: dict[int, RaftNode] = {}
        self.logs: dict[int, MemoryLogStore] = {}
        self.stables: dict[int, MemoryStableStore] = {}
        self.snapshots: dict[int, MemorySnapshotStore] = {}
        self.applied: dict[int, list[Entry]] = {node_id: [] for node_id in self.ids}
        self.read_states: dict[int, list[ReadState]] = {node_id: [] for node_id in self.ids}
        self.in_flight: list[AnyMessage] = []
        self.delivered: list[AnyMessage] = []
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        # Called for each message before delivery; returning None drops it.
        self.filter: Callable[[AnyMessage], AnyMessage | None] | None = None
        for node_id in self.ids:
            self.logs[node_id] = MemoryLogStore()
            self.stables[node_id] = MemoryStableStore()
            self.snapshots[node_id] = MemorySnapshotStore()
            self.nodes[node_id] = self._new_node(node_id)
            if bootstrap:
                self.nodes[node_id].bootstrap(Membership(voters=frozenset(self.ids)))
        self.process()

    def _new_node(self, node_id: int) -> RaftNode:
        config = RaftConfig(node_id=node_id, **self.config)  # type: ignore[arg-type]
        recovered = recover(self.logs[node_id], self.stables[node_id], self.snapshots[node_id])
        return RaftNode(
            config,
            random.Random(self.seed * 1000 + node_id),
            hard_state=recovered.hard_state,
            entries=recovered.entries,
            snapshot=recovered.snapshot,
            applied=recovered.applied_index,
        )

    def __getitem__(self, node_id: int) -> RaftNode:
        return self.nodes[node_id]

    # --- driving ------------------------------------------------------------------------
    def process(self) -> None:
        """Carry out every pending Ready, as a driver must."""
        for node_id in self.ids:
            if node_id in self.down:
                continue
            node = self.nodes[node_id]
            while node.has_ready():
                ready = node.ready()
                self._send(ready.messages)
                if ready.snapshot is not None:
                    meta, data = ready.snapshot
                    self.snapshots[node_id].save(meta, data)
                    self.logs[node_id].reset(meta.index, meta.term)
                if ready.entries:
                    self.logs[node_id].append(ready.entries)
                if ready.hard_state is not None:
                    self.stables[node_id].set_hard_state(ready.hard_state)
                self.logs[node_id].sync()
                self.stables[node_id].sync()
                self._send(ready.messages_after_persist)
                self.applied[node_id].extend(ready.committed_entries)
                self.read_states[node_id].extend(ready.read_states)
                node.advance(ready)

    def _send(self, messages: list[AnyMessage]) -> None:
        for message in messages:
            if (message.sender, message.to) not in self.cut and message.to not in self.down:
                self.in_flight.append(message)

    def deliver(self, count: int | None = None) -> int:
        """Deliver in-flight messages in order (and what they provoke); returns how many."""
        delivered = 0
        while self.in_flight and (count is None or delivered < count):
            message = self.in_flight.pop(0)
            if self.filter is not None:
                filtered = self.filter(message)
                if filtered is None:
                    continue
                message = filtered
            if message.to in self.down or (message.sender, message.to) in self.cut:
                continue
            self.delivered.append(message)
            self.nodes[message.to].step(message)
            delivered += 1
            self.process()
        return delivered

    def tick(self, times: int = 1, only: Iterable[int] | None = None) -> None:
        targets = list(only) if only is not None else self.ids
        for _ in range(times):
            for node_id in targets:
                if node_id not in self.down:
                    self.nodes[node_id].tick()
            self.process()
            self.deliver()

    def campaign(self, node_id: int) -> None:
        """Make `node_id` time out now and run the election to its end."""
        node = self.nodes[node_id]
        node.campaign(pre_vote=node.config.pre_vote)
        self.process()
        self.deliver()

    def propose(self, node_id: int, data: bytes) -> tuple[int, int]:
        result = self.nodes[node_id].propose(data)
        self.process()
        self.deliver()
        return result

    # --- faults -------------------------------------------------------------------------
    def isolate(self, node_id: int) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [set(group) for group in groups]
        for a in self.ids:
            for b in self.ids:
                if a != b and not any(a in group and b in group for group in sets):
                    self.cut.add((a, b))

    def heal(self) -> None:
        self.cut.clear()

    def crash(self, node_id: int) -> None:
        self.down.add(node_id)
        self.logs[node_id].crash()
        self.stables[node_id].crash()
        self.in_flight = [m for m in self.in_flight if m.to != node_id]

    def restart(self, node_id: int) -> None:
        self.down.discard(node_id)
        self.nodes[node_id] = self._new_node(node_id)
        self.applied[node_id] = []  # committed entries are applied again from the log
        self.process()

    # --- queries ------------------------------------------------------------------------
    def leaders(self) -> list[int]:
        return [i for i in self.ids if i not in self.down and self.nodes[i].role == "leader"]

    def leader(self) -> int:
        leaders = self.leaders()
        assert len(leaders) == 1, f"expected one leader, got {leaders}"
        return leaders[0]

    def log_of(self, node_id: int) -> list[tuple[int, int]]:
        log = self.nodes[node_id].log
        return [(entry.index, entry.term) for entry in log.entries]

    def with_config(self, **changes: object) -> RaftConfig:
        return replace(self.nodes[self.ids[0]].config, **changes)  # type: ignore[arg-type]
