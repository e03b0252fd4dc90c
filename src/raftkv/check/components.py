"""Splitting a history into independent components, each checked on its own.

Linearizability is local (Herlihy & Wing 1990, §3.3): a history of several objects is
linearizable exactly when each object's sub-history is. With transactions and ranges one
operation acts on several keys at once, so the objects are the connected components of the
relation "touches a common key": an operation touches every key it names (a get's key, a
compare's key, a put's key in a branch) and every key in a range it reads or deletes,
including keys absent when it ran; a range read and a later put to a key in its interval are
therefore one component. Keys are known only by name, so a range touches the keys in it that
some operation of the history names, which are all the keys that can ever be present in it.

Within a component the operations share no key with any operation outside it, so the
component is an object of its own (its state: the map from its keys to values) and the
locality theorem applies to the components. A history of single-key operations only splits
into one component per key, exactly the per-key decomposition.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from raftkv.check.history import Operation, is_multi_key
from raftkv.check.map_model import RangeName, key_range, operation_keys, operation_ranges


@dataclass
class Component:
    """The operations (history positions, in order) of one component and the keys they name."""

    keys: tuple[str, ...]
    indices: list[int] = field(default_factory=list)
    multi_key: bool = False  # some operation is a range, delete-range or transaction

    @property
    def label(self) -> str:
        """The name reports give it: its key, or its keys in braces."""
        if not self.multi_key:
            return self.keys[0]
        return "{" + ", ".join(repr(key) for key in self.keys) + "}"


class _Sets:
    """Union-find over key positions (path halving, union by size)."""

    def __init__(self, count: int) -> None:
        self.parent = list(range(count))
        self.size = [1] * count

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        first, second = self.find(first), self.find(second)
        if first == second:
            return
        if self.size[first] < self.size[second]:
            first, second = second, first
        self.parent[second] = first
        self.size[first] += self.size[second]


def split_components(operations: Sequence[Operation]) -> list[Component]:
    """The components of `operations`, ordered by their first operation."""
    keys_named = [operation_keys(operation) for operation in operations]
    named = sorted({key for keys in keys_named for key in keys})
    position = {key: number for number, key in enumerate(named)}
    spans: dict[RangeName, tuple[int, int]] = {}  # per range named: the keys it holds
    sets = _Sets(len(named))
    # linked[i] is the first position at or after i not yet joined to its successor by a
    # range, so that wide ranges join each pair of neighbours once in all.
    linked = list(range(len(named) + 1))

    def next_unlinked(item: int) -> int:
        root = item
        while linked[root] != root:
            root = linked[root]
        while linked[item] != root:
            linked[item], item = root, linked[item]
        return root

    touched: list[int | None] = []  # per operation: one key position it touches, if any
    for operation, keys in zip(operations, keys_named, strict=True):
        positions = [position[key] for key in keys]
        for range_name in operation_ranges(operation):
            span = spans.get(range_name)
            if span is None:
                keys_range = key_range(*range_name)
                end = keys_range.end
                span = spans[range_name] = (
                    bisect.bisect_left(named, keys_range.start),
                    len(named) if end is None else bisect.bisect_left(named, end),
                )
            low, high = span
            if low < high:
                positions.append(low)
                item = next_unlinked(low)
                while item < high - 1:
                    sets.union(item, item + 1)
                    linked[item] = item + 1
                    item = next_unlinked(item + 1)
        for other in positions[1:]:
            sets.union(positions[0], other)
        touched.append(positions[0] if positions else None)
    by_root: dict[int, Component] = {}
    members: dict[int, list[str]] = {}
    for number, key in enumerate(named):
        members.setdefault(sets.find(number), []).append(key)
    components: list[Component] = []
    for index, (operation, first) in enumerate(zip(operations, touched, strict=True)):
        if first is None:  # a range naming no key of the history: alone with itself
            components.append(Component((), [index], True))
            continue
        root = sets.find(first)
        component = by_root.get(root)
        if component is None:
            component = by_root[root] = Component(tuple(members[root]))
            components.append(component)
        component.indices.append(index)
        component.multi_key = component.multi_key or is_multi_key(operation)
    return components
