"""Recording a client history while a test runs.

The recorder never reads a clock: callers pass the time of each call and return (virtual
time in the simulator, time.monotonic() in real-cluster tests), so a simulated run records
the same history on every replay.
"""

from __future__ import annotations

import os
import threading
from typing import IO, Any

import msgspec

from raftkv.check.history import (
    History,
    HistoryError,
    Operation,
    OperationKind,
    Status,
    dump_history,
    validate_operation,
)


class HistoryRecorder:
    """Collects operations: `invoke` when a client sends a call, `complete` when it ends.

    A call never completed is recorded with status "unknown" (it may have taken effect), which
    is exactly what a client that crashed or gave up knows. Safe to use from several threads.
    """

    def __init__(self) -> None:
        self._operations: list[Operation] = []
        self._completed: list[bool] = []
        self._lock = threading.Lock()

    def invoke(
        self,
        client: str,
        op: OperationKind,
        key: str,
        *,
        time: float,
        value: str | None = None,
        if_value: str | None = None,
        if_absent: bool = False,
    ) -> int:
        """Record a call made at `time`; returns the handle to pass to `complete`."""
        operation = Operation(
            client=client,
            op=op,
            key=key,
            value=value,
            if_value=if_value,
            if_absent=if_absent,
            call_time=time,
            status="unknown",
        )
        problem = validate_operation(operation)
        if problem is not None:
            raise HistoryError(f"invoke {op} {key!r}: {problem}")
        with self._lock:
            self._operations.append(operation)
            self._completed.append(False)
            return len(self._operations) - 1

    def invoke_operation(self, operation: Operation) -> int:
        """Record a call given as a whole record (a range, delete-range or transaction:
        its fields as docs/history-format.md names them); its outcome is unknown until
        `complete`. Returns the handle to pass to `complete`."""
        operation = msgspec.structs.replace(operation, status="unknown", return_time=None)
        problem = validate_operation(operation)
        if problem is not None:
            raise HistoryError(f"invoke {operation.op}: {problem}")
        with self._lock:
            self._operations.append(operation)
            self._completed.append(False)
            return len(self._operations) - 1

    def complete(
        self,
        handle: int,
        status: Status,
        *,
        time: float | None,
        result: str | None = None,
        error: str | None = None,
        current: str | msgspec.UnsetType | None = msgspec.UNSET,
        **answer: Any,
    ) -> None:
        """Record how call `handle` ended at `time`.

        status "ok": it took effect (for get, `result` is the value read, None if absent;
        a not_found or cas_failed `error` with `current` reports what was observed);
        "fail": it certainly had no effect (or `error` is an observation, as for ok);
        "unknown": it timed out or the connection dropped, and it may still take effect.
        `answer`: a range's kvs/count/more, a delete-range's deleted, a transaction's
        succeeded/results (with status "ok").
        """
        with self._lock:
            if self._completed[handle]:
                raise HistoryError(f"operation {handle} completed twice")
            operation = msgspec.structs.replace(
                self._operations[handle],
                return_time=time,
                status=status,
                result=result,
                error=error,
                current=current,
                **answer,
            )
            problem = validate_operation(operation)
            if problem is not None:
                raise HistoryError(f"complete {handle}: {problem}")
            self._operations[handle] = operation
            self._completed[handle] = True

    def history(self) -> History:
        """Everything recorded so far; calls not yet completed count as unknown."""
        with self._lock:
            return History(tuple(self._operations))

    def dump(self, file: str | os.PathLike[str] | IO[str]) -> None:
        """Write the history as JSON lines (docs/history-format.md), e.g. for raft-check."""
        dump_history(self.history(), file)
