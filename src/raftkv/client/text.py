"""Aligned text tables for `raft-client status` and `members`."""

from __future__ import annotations

from collections.abc import Sequence

COLUMN_GAP = "  "


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric_columns: frozenset[int]
) -> str:
    """Columns padded to their widest cell; numeric ones right-aligned so digits line up."""
    widths = [len(title) for title in header]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))
    lines = []
    for row in [list(header), *rows]:
        cells = [
            cell.rjust(widths[column]) if column in numeric_columns else cell.ljust(widths[column])
            for column, cell in enumerate(row)
        ]
        lines.append(COLUMN_GAP.join(cells).rstrip())
    return "\n".join(lines)
