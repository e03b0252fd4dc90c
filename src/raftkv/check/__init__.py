"""Linearizability checking of key-value histories (Wing & Gong 1993; Lowe 2017).

Used by the simulator and by real-cluster tests: record with `HistoryRecorder`, check with
`check_history`, or write JSON lines (docs/history-format.md) for `raft-check`.
"""

from raftkv.check.checker import CheckResult, KeyResult, check_history
from raftkv.check.history import (
    History,
    HistoryError,
    IndexedOperation,
    Operation,
    describe_operation,
    dump_history,
    load_history,
)
from raftkv.check.recorder import HistoryRecorder

__all__ = [
    "CheckResult",
    "History",
    "HistoryError",
    "HistoryRecorder",
    "IndexedOperation",
    "KeyResult",
    "Operation",
    "check_history",
    "describe_operation",
    "dump_history",
    "load_history",
]
