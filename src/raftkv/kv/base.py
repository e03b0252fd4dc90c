"""The StateMachine seam: what the runtime applies committed entries to."""

from __future__ import annotations

from typing import Any, Protocol


class StateMachine(Protocol):
    """Deterministic and free of I/O: every replica applying the same commands in the same
    order must reach the same state, or `raft-client check` will tell."""

    def apply(self, index: int, command: bytes) -> Any:
        """Apply the command committed at `index`; the result goes back to the proposer."""

    def snapshot(self) -> bytes:
        """The whole state as bytes."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's."""

    @property
    def applied_hash(self) -> str:
        """A running hash over every command applied, to compare replicas at one index."""
