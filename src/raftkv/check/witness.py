"""Small proofs of non-linearizability found without searching.

The search (Wing & Gong 1993; Lowe 2017) proves a failure only by exhausting every partial
linearization before it, which for a long, busy history can be more than any budget. The
classic anomalies have short proofs that real-time order alone gives, found here in
near-linear time; each comes with the few operations that make it, which are themselves not
linearizable, so they are also the minimal sub-history to show.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from raftkv.check.model import (
    COMPARE_AND_SET,
    DELETE_PRESENT,
    IMPOSSIBLE,
    READ,
    READ_OTHER,
    WRITE,
    ModelOperation,
    find_unwritten_observation,
)


@dataclass(frozen=True)
class Witness:
    reason: str  # in words, naming operations by their history index (#12)
    operations: tuple[ModelOperation, ...]  # in call order
    blocking: ModelOperation  # the operation that cannot take effect


def _value(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def _keeps(operation: ModelOperation, value: str | None) -> bool:
    """Whether `operation` can take effect while the register holds `value` and leave it."""
    kind = operation.kind
    if kind == READ:
        return operation.expected == value
    if kind == READ_OTHER:
        return operation.expected != value
    if kind in (WRITE, COMPARE_AND_SET):
        return operation.new_value == value and (kind == WRITE or operation.expected == value)
    return False  # a delete changes a present value and cannot run on an absent one


def find_witness(operations: Sequence[ModelOperation]) -> Witness | None:
    """A short proof that `operations` (one key, starting absent) are not linearizable."""
    unwritten = find_unwritten_observation(operations)
    if unwritten is not None:
        name = f"#{unwritten.history_index}"
        if unwritten.kind == IMPOSSIBLE:
            reason = f"{name} reports a failed compare-and-set that found the value it expected"
            return Witness(reason, (unwritten,), unwritten)
        writers = [
            op
            for op in operations
            if op.kind in (WRITE, COMPARE_AND_SET) and op.new_value == unwritten.expected
        ]
        first = min(writers, key=lambda op: (op.call_time, op.history_index), default=None)
        reason = (
            f"{name} needs {_value(unwritten.expected)}, but nothing writes it before it returned"
        )
        if first is not None:
            reason += f" (#{first.history_index}, the first writer, is called later)"
        return Witness(reason, _in_call_order(unwritten, first), unwritten)
    return _find_overwritten_read(operations)


def _find_overwritten_read(operations: Sequence[ModelOperation]) -> Witness | None:
    """A value written once (or the initial absence, if nothing deletes) lives in one stretch
    of the linearization, from its write to the first operation that changes it, and every
    operation that needs it (reads it, or compare-and-sets from it) must fall in that stretch.
    Real time breaks that when:

    - an operation Y that real time puts after the write and before a reader R's call cannot
      take effect while the value stays (the stale read; the read of a lost or duplicated
      write);
    - two compare-and-sets both replace it (the lost update);
    - one that replaces it returned before a reader was called.
    """
    writers: defaultdict[str | None, list[ModelOperation]] = defaultdict(list)
    readers: defaultdict[str | None, list[ModelOperation]] = defaultdict(list)
    for operation in operations:
        if operation.kind in (WRITE, COMPARE_AND_SET):
            writers[operation.new_value].append(operation)
        elif operation.kind == DELETE_PRESENT:
            writers[None].append(operation)
        definite = operation.return_time is not None
        if definite and (operation.kind == READ or operation.kind == COMPARE_AND_SET):
            readers[operation.expected].append(operation)
    definite_by_call = sorted(
        (op for op in operations if op.return_time is not None),
        key=lambda op: (op.call_time, op.history_index),
    )
    call_times = [op.call_time for op in definite_by_call]
    found: list[Witness] = []
    for value, value_readers in readers.items():
        producers = writers.get(value, [])
        if value is None and not producers:
            writer, written_by = None, -math.inf  # the initial absence
        elif value is not None and len(producers) == 1:
            # An indeterminate writer never "returned": only the replacer rules apply to it.
            writer = producers[0]
            written_by = math.inf if writer.return_time is None else writer.return_time
        else:
            continue
        reader = max(value_readers, key=lambda op: (op.call_time, -op.history_index))
        replacers = sorted(
            (op for op in value_readers if op.kind == COMPARE_AND_SET and op.new_value != value),
            key=lambda op: (op.return_time, op.history_index),
        )
        if len(replacers) >= 2:
            found.append(_lost_update_witness(value, writer, replacers[0], replacers[1]))
            continue
        if replacers and (replacers[0].return_time or 0.0) < reader.call_time:
            found.append(
                _overwritten_witness(value, writer, replacers[0], reader, called_after_write=False)
            )
            continue
        # Candidates for Y: definite, called after the write returned, returned before R's call.
        start = bisect.bisect_right(call_times, written_by)
        for between in definite_by_call[start:]:
            if between.call_time >= reader.call_time:
                break
            assert between.return_time is not None
            if between.return_time < reader.call_time and not _keeps(between, value):
                found.append(
                    _overwritten_witness(value, writer, between, reader, called_after_write=True)
                )
                break
    if not found:
        return None
    # Report the earliest reader, so repeated runs name the same anomaly first.
    return min(
        found, key=lambda witness: (witness.blocking.call_time, witness.blocking.history_index)
    )


def _in_call_order(*operations: ModelOperation | None) -> tuple[ModelOperation, ...]:
    present = [op for op in operations if op is not None]
    return tuple(sorted(present, key=lambda op: (op.call_time, op.history_index)))


def _origin(value: str | None, writer: ModelOperation | None) -> str:
    if writer is None:
        return "the initial absence (nothing deletes the key)"
    return f"{_value(value)}, which only #{writer.history_index} writes"


def _lost_update_witness(
    value: str | None,
    writer: ModelOperation | None,
    first: ModelOperation,
    second: ModelOperation,
) -> Witness:
    both = f"#{first.history_index} and #{second.history_index}"
    reason = (
        f"{both} both replaced {_origin(value, writer)}: whichever took effect second found it "
        "already replaced (a lost update)"
    )
    return Witness(reason, _in_call_order(writer, first, second), second)


def _overwritten_witness(
    value: str | None,
    writer: ModelOperation | None,
    between: ModelOperation,
    reader: ModelOperation,
    *,
    called_after_write: bool,
) -> Witness:
    read, middle = f"#{reader.history_index}", f"#{between.history_index}"
    after = ""
    if writer is not None and called_after_write:
        after = f"was called after #{writer.history_index} returned and "
    reason = (
        f"{read} needs {_origin(value, writer)}; {middle} {after}returned before {read} was "
        f"called, and cannot take effect while the key holds {_value(value)} without changing it"
    )
    return Witness(reason, _in_call_order(writer, between, reader), reader)
