"""The one root exception of raftkv and its kinds.

Operating errors (a peer gone, a full disk, bad input) are raised as these and handled at the
boundary. A broken invariant raises `InvariantViolation` (never a bare `assert`, which
`python -O` strips): it means a bug, and a node that meets one stops taking part.
"""

from __future__ import annotations


class RaftError(Exception):
    """Root of every error raftkv raises on purpose."""


# --- client-facing -------------------------------------------------------------------------
class ClientError(RaftError):
    """An error a client sees; `code` is the SPEC §3 error code."""

    code = "error"


class NotLeader(ClientError):
    code = "not_leader"

    def __init__(self, leader_id: int | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id})")
        self.leader_id = leader_id


class NoLeader(ClientError):
    code = "no_leader"


class Timeout(ClientError):
    code = "timeout"


class ProposalDropped(ClientError):
    """The proposal was not appended (no leader, leadership transfer, or a full window)."""

    code = "no_leader"


class CommandFailed(ClientError):
    """The state machine raised while applying the command committed at `index`: that is
    the command's result, not a node failure. Every replica applies the same entry with
    the same deterministic code, so every replica (and a replay after a restart) decides
    the same way. `error` is what the state machine raised."""

    code = "command_failed"

    def __init__(self, error: Exception, index: int) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.index = index


# --- invariants ----------------------------------------------------------------------------
class InvariantViolation(RaftError):
    """A rule the code relies on does not hold: a bug. The driver stops the node."""


class SafetyViolation(InvariantViolation):
    """A peer's message contradicts this node's committed log (§5.4: committed entries are
    never replaced). Either side may be damaged; the message is refused, loudly, before it
    changes anything."""


def check(condition: bool, message: str) -> None:
    """An invariant that stays under `python -O` (unlike `assert`)."""
    if not condition:
        raise InvariantViolation(message)


# --- storage -------------------------------------------------------------------------------
class StorageError(RaftError):
    """The disk failed us (full, I/O error); the node stops accepting writes."""


class Corruption(StorageError):
    """Data on disk is damaged before its tail; the node refuses to start (exit 4)."""

    def __init__(self, message: str, path: str | None = None, offset: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f" in {path}" + (f" at offset {offset}" if offset is not None else "")
        super().__init__(message + where)
        self.path = path
        self.offset = offset


class DataDirMismatch(StorageError):
    """The data dir belongs to another node id or cluster, or is locked by another process."""


# --- transport -----------------------------------------------------------------------------
class ConnectionClosed(RaftError):
    """A peer connection closed or was refused (bad handshake, malformed frame)."""


class FrameError(ConnectionClosed):
    """A frame was malformed or over the size limit."""
