"""Readable explanations of a check's result, for people reading a failed test or run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from raftkv.check.history import IndexedOperation, describe_operation
from raftkv.check.limits import (
    EXPLAIN_MINIMAL_OPERATIONS_MAX,
    EXPLAIN_PENDING_OPERATIONS_MAX,
    EXPLAIN_PREFIX_TAIL_OPERATIONS,
)

if TYPE_CHECKING:
    from raftkv.check.checker_records import CheckResult, KeyResult

_INDENT = "    "


def _value(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def _lines(operations: Sequence[IndexedOperation], limit: int) -> list[str]:
    shown = [_INDENT + describe_operation(op.operation, op.index) for op in operations[:limit]]
    if len(operations) > limit:
        shown.append(f"{_INDENT}... and {len(operations) - limit} more")
    return shown


def _name(result: KeyResult) -> str:
    """`key 'x'`, or for a component `keys {'x', 'y'}` (its label is already quoted)."""
    return f"keys {result.key}" if result.component_keys else f"key {result.key!r}"


def explain_key(result: KeyResult) -> list[str]:
    """The lines explaining one failed or unknown key (nothing for a linearizable one)."""
    if result.ok:
        return []
    verdict = "not linearizable" if result.ok is False else "unknown"
    lines = [
        f"{_name(result)}: {verdict}: {result.reason} "
        f"({result.operation_count} operations, {result.searched_count} searched, "
        f"{result.states_explored} states explored)"
    ]
    if result.states_explored:
        prefix = result.longest_prefix
        tail = prefix[-EXPLAIN_PREFIX_TAIL_OPERATIONS:]
        heading = "longest linearizable prefix found"
        if len(prefix) > len(tail):
            heading += f": {len(prefix)} operations, the last {len(tail)}"
        else:
            heading += f": {len(prefix)} operations"
        lines.append(f"  {heading}{':' if tail else ''}")
        lines.extend(_lines(tail, EXPLAIN_PREFIX_TAIL_OPERATIONS))
        if result.component_keys:
            state = ", ".join(f"{key!r}: {value!r}" for key, value in result.state_after_prefix)
            lines.append(f"  map after it (other keys absent): {{{state}}}")
        else:
            lines.append(f"  value after it: {_value(result.value_after_prefix)}")
    if result.blocking:
        lines.append("  could not be linearized next:")
        lines.extend(_lines(result.blocking, len(result.blocking)))
    if result.pending:
        lines.append("  other operations not yet linearized, called before it returned:")
        lines.extend(_lines(result.pending, EXPLAIN_PENDING_OPERATIONS_MAX))
    if result.minimal:
        note = (
            f"{result.minimization_checks} checks"
            if result.minimization_complete
            else f"budget ran out after {result.minimization_checks} checks; may not be minimal"
        )
        lines.append(
            f"  minimal non-linearizable sub-history ({len(result.minimal)} of "
            f"{result.operation_count} operations; {note}):"
        )
        lines.extend(_lines(result.minimal, EXPLAIN_MINIMAL_OPERATIONS_MAX))
        if any(op.operation.status == "unknown" for op in result.minimal):
            lines.append(
                "  ('outcome unknown' marks writes that may have completed in the history: the"
                " failure does not depend on it)"
            )
    return lines


def explain_result(result: CheckResult) -> str:
    """The summary line, then the explanation of every failed and unknown key."""
    lines = [result.summary()]
    for key_result in result.keys.values():
        lines.extend(explain_key(key_result))
    if result.ok is False:
        lines.append(
            "A minimal sub-history only drops reads, forgets when writes returned, and keeps "
            "every writer of the values it needs, so the rest of the history cannot make it "
            "linearizable (Wing & Gong 1993; Lowe 2017)."
        )
    return "\n".join(lines)
