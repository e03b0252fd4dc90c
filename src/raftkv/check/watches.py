"""The watch checker (SPEC §6, "Watches"): did a watcher see exactly the committed changes
of its range after its `from_index`, each once, in log order?

The truth is the committed log replayed through a fresh `KVStore` whose change observer
records every key it changes (`committed_changes`), or any list of `KeyChange`s. A watcher
is described by what it asked (its range and `from_index`), what it received, and how far it
got: `reached`, the index up to which it was promised everything (its last progress line,
or the index before the last one it received events of, since a stream may break in the
middle of an index's events). Up to `reached` the events must be exactly the expected ones;
after it, those received must begin the expected ones (a partly received last index).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raftkv.kv.changes import KeyChange
from raftkv.kv.ranges import KeyRange
from raftkv.kv.store import KVStore


class _Recorder:
    def __init__(self) -> None:
        self.changes: list[KeyChange] = []

    def changed(self, change: KeyChange) -> None:
        self.changes.append(change)

    def restored(self, index: int) -> None:
        raise AssertionError("a replay from the first entry restores no snapshot")


def committed_changes(commands: Iterable[tuple[int, bytes]]) -> list[KeyChange]:
    """Every key change of the committed key-value commands `(index, command)`, in order
    (other entries, such as configurations, are left out of `commands`)."""
    recorder = _Recorder()
    store = KVStore(observer=recorder)
    for index, command in commands:
        store.apply(index, command)
    return recorder.changes


@dataclass(frozen=True, slots=True)
class ObservedEvent:
    """A watch event as compared: what kind, which key, at which index, with what value."""

    type: str
    key: str
    index: int
    value: str | None = None

    @classmethod
    def of_change(cls, change: KeyChange) -> ObservedEvent:
        record = change.record
        if record is None:
            return cls("delete", change.key, change.index)
        return cls("put", change.key, change.index, record.value)

    @classmethod
    def of_line(cls, line: Mapping[str, Any]) -> ObservedEvent:
        """From a watch line's JSON object (`{"type", "key", "mod_index", "value"?}`)."""
        return cls(str(line["type"]), str(line["key"]), int(line["mod_index"]), line.get("value"))

    def __str__(self) -> str:
        value = "" if self.value is None else f"={self.value!r}"
        return f"{self.type} {self.key!r}{value} at {self.index}"


@dataclass
class WatchObservation:
    """One watcher: its range, `from_index` (exclusive), the events it received in order,
    and `reached` (see the module's docstring). `name` says which watcher in a report."""

    name: str
    key_range: KeyRange
    from_index: int
    events: list[ObservedEvent]
    reached: int


@dataclass(frozen=True, slots=True)
class WatchVerdict:
    ok: bool
    message: str
    checked: int  # events compared


def check_watch(expected: Sequence[KeyChange], watch: WatchObservation) -> WatchVerdict:
    """Compare a watcher's events with the expected changes of its range; on a difference,
    the first one, said plainly (missing, duplicated, out of order, or foreign)."""
    key_range, low = watch.key_range, watch.from_index
    wanted = [
        ObservedEvent.of_change(change)
        for change in expected
        if change.index > low and change.key in key_range
    ]
    within = [event for event in wanted if event.index <= watch.reached]
    received = watch.events
    for position, event in enumerate(received):
        if position < len(within):
            if event != within[position]:
                return _failed(watch, position, event, within[position], wanted, received)
        else:
            after = wanted[len(within) :]
            extra = position - len(within)
            if extra >= len(after) or event != after[extra]:
                promised = after[extra] if extra < len(after) else None
                return _failed(watch, position, event, promised, wanted, received)
    if len(received) < len(within):
        missing = within[len(received)]
        return WatchVerdict(
            False,
            f"watcher {watch.name}: missing {missing} (event #{len(received) + 1}): it received"
            f" {len(received)} events but was promised {len(within)} up to index"
            f" {watch.reached}",
            len(received),
        )
    return WatchVerdict(True, f"watcher {watch.name}: {len(received)} events OK", len(received))


def _failed(
    watch: WatchObservation,
    position: int,
    event: ObservedEvent,
    promised: ObservedEvent | None,
    wanted: list[ObservedEvent],
    received: list[ObservedEvent],
) -> WatchVerdict:
    where = f"watcher {watch.name}, event #{position + 1} ({event})"
    if event in received[:position]:
        why = "duplicated: it was received before"
    elif event not in wanted:
        why = (
            f"foreign: no committed change of its range after index {watch.from_index} is this one"
        )
    elif promised is not None and promised not in received[position:]:
        why = f"{promised} is missing before it"
    else:
        why = f"out of order: {promised} comes first in the log"
    return WatchVerdict(False, f"{where}: {why}", position)


def check_watches(
    expected: Sequence[KeyChange], watches: Iterable[WatchObservation]
) -> WatchVerdict:
    """Every watcher at once: the first failure, or OK with the events compared."""
    checked = 0
    count = 0
    for watch in watches:
        verdict = check_watch(expected, watch)
        if not verdict.ok:
            return verdict
        checked += verdict.checked
        count += 1
    return WatchVerdict(True, f"OK ({count} watchers, {checked} events)", checked)
