"""`consistency=stale` reads in the simulator.

A stale read may return an old value, but not any value: it must be exactly what the key
held once the cluster had applied the reading node's applied index. The probe reads a
reference store fed with every index the first time any node applies it (those first
applications come in index order: a node applies an index only after all before it, or
restores a snapshot that another node built by applying them): the clients' execution
ledger, which already is such a store, rather than a second copy applying every command
again. It records each key's value after every index, and compares each stale read with it.
"""

from __future__ import annotations

import bisect
import random
from typing import TYPE_CHECKING, Final

import msgspec

from raftkv.core import Entry, EntryKind
from raftkv.kv import KVStore
from raftkv.sim import draws

if TYPE_CHECKING:
    from raftkv.sim.cluster import Simulation

KEYS: Final = ("x", "y", "z")
# Chance per tick of one stale read from a random running node.
STALE_READ_PROBABILITY_PER_TICK: Final = 0.2


class StaleReadProbe:
    def __init__(
        self, rng: random.Random, simulation: Simulation, enabled: bool, reference: KVStore
    ) -> None:
        """`reference`: a store that applies each index the first time any node applies
        it, and does so before this probe hears of it (an earlier apply listener)."""
        self._rng = rng
        self._random = rng.random  # bound once: drawn every tick
        self._simulation = simulation
        self._enabled = enabled
        self._reference = reference
        self._reference_index = 0
        # key -> (indexes, values): the key's value from each index on.
        self._history: dict[str, tuple[list[int], list[str | None]]] = {}
        simulation.checker.apply_listeners.append(self._first_applied)

    def _first_applied(self, entry: Entry) -> None:
        if entry.index != self._reference_index + 1:
            # Cannot happen (see the module docstring); stop checking rather than guess.
            self._enabled = False
            return
        self._reference_index = entry.index
        if entry.kind != EntryKind.NORMAL:
            return
        if self._reference.applied_index != entry.index:
            # The reference stopped (it checks the same order): stop checking too.
            self._enabled = False
            return
        try:
            command = self._simulation.decoder(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        # A delete-range or transaction may change every key; note those that changed.
        keys = KEYS if command.op in ("delrange", "txn") else (command.key,)
        for key in keys:
            indexes, values = self._history.setdefault(key, ([], []))
            value = self._reference.get(key)
            if key == command.key or not values or values[-1] != value:
                indexes.append(entry.index)
                values.append(value)

    def value_at(self, key: str, index: int) -> str | None:
        indexes, values = self._history.get(key, ([], []))
        position = bisect.bisect_right(indexes, index)
        return values[position - 1] if position else None

    def tick(self, now: int) -> None:
        if not self._enabled or self._random() >= STALE_READ_PROBABILITY_PER_TICK:
            return
        simulation = self._simulation
        driver = simulation.nodes[draws.choice(self._rng, simulation.node_ids)]
        key = draws.choice(self._rng, KEYS)
        if driver.node is None or driver.paused(now):
            return
        applied = driver.applied_index
        if applied > self._reference_index:
            return  # not possible either; the reference is never behind a node
        value = driver.kv.get(key)
        expected = self.value_at(key, applied)
        simulation.stats.stale_reads += 1
        if value != expected:
            raise simulation.checker.fail(
                "Stale reads",
                f"node {driver.id} at applied index {applied} read {key}={value!r}"
                f" but the cluster's state there has {key}={expected!r}",
            )
