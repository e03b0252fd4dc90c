"""What each simulated machine made durable, and the two rules checked against it.

- **Durability at restart**: a node that starts holds the newest committed entry its WAL
  held after a sync returned, or refuses to start (its disk lost or damaged it).
- **Persisted before sent** (§5.1, "updated on stable storage before responding to
  RPCs"): no message leaves with a term the sender has not yet made durable, and no vote
  is granted before that vote is durable. Checked where every message leaves a server
  (`transport.send`), so a message sent too early is caught when it is sent, not only in
  the rare run where a power loss at that very fsync turns it into two leaders.

Both watch the production stores and transport by wrapping their methods on the one
instance a server incarnation uses; the code under test is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raftkv.core.messages import AnyMessage, HardState, RequestVote, RequestVoteResponse
from raftkv.server.runtime import RaftServer
from raftkv.sim.whole_node_machine import Machine
from raftkv.storage.file_log import FileStorage
from raftkv.transport.base import Transport

Fail = Callable[[str, str], None]


class DurabilityWatch:
    def __init__(self, fail: Fail) -> None:
        self._fail = fail

    def watched_transport(
        self, machine: Machine, make: Callable[..., Transport]
    ) -> Callable[..., Transport]:
        """A transport factory for `machine`'s next server. The server calls it once its
        stores are open and recovered and before anything is synced or sent: the hard
        state it holds then is what the disk holds."""

        def factory(**kwargs: Any) -> Transport:
            server = machine.server
            assert server is not None
            machine.durable_hard_state = server.stable_store.hard_state()
            self._record_syncs(machine, server)
            transport = make(**kwargs)
            send = transport.send

            def checked_send(message: AnyMessage) -> None:
                self._check_sent(machine, message)
                send(message)

            transport.send = checked_send  # type: ignore[method-assign]
            return transport

        return factory

    def check_restart(self, machine: Machine, server: RaftServer) -> None:
        node = server.node
        index, term = machine.durable
        if index > node.log.snapshot_index and node.log.term(index) != term:
            self._fail(
                "Durability",
                f"node {machine.id} restarted without entry {index}/{term} it had made"
                f" durable (its log ends at {node.log.last_index}/{node.log.last_term})",
            )

    def _record_syncs(self, machine: Machine, server: RaftServer) -> None:
        """After every sync that returned: the hard state it made durable, and the newest
        committed entry the WAL holds: durable and never truncated, so every later
        incarnation must hold it (or refuse to start). Uncommitted entries may legitimately
        vanish: a later leader truncates them, and a crash may keep part of that unsynced
        truncation."""
        storage = server.storage
        if not isinstance(storage, FileStorage) or server.stable_store is not storage:
            # The simulator's servers open their own WAL, which holds the hard state too.
            raise TypeError("the durability watch needs a server on its own FileStorage")
        wal = storage

        def synced() -> None:
            # One WAL holds both: one sync makes the log and the hard state durable.
            machine.durable_hard_state = wal.hard_state()
            index = min(wal.last_index(), server.node.log.committed)
            term = wal.term(index)
            # Only the committed entry itself: a message stepped while this Ready awaited
            # may already have replaced (in memory, not yet on disk) an uncommitted entry
            # the WAL still holds at that index and moved the commit index past it.
            if (
                term is not None
                and term == server.node.log.term(index)
                and index > machine.durable[0]
            ):
                machine.durable = (index, term)

        wal.on_synced = synced

    def _check_sent(self, machine: Machine, message: AnyMessage) -> None:
        if isinstance(message, (RequestVote, RequestVoteResponse)) and message.pre_vote:
            return  # a trial run: it carries the term it would campaign at, changing none
        durable: HardState = machine.durable_hard_state
        kind = type(message).__name__
        if message.term > durable.term:
            self._fail(
                "Persisted before sent",
                f"node {machine.id} sent {kind} to {message.to} at term {message.term}"
                f" while its durable term was {durable.term}",
            )
        # A grant for an older term, sent once a newer term is durable, is safe: this node
        # can never vote in that term again.
        elif (
            isinstance(message, RequestVoteResponse)
            and message.granted
            and durable.term == message.term
            and durable.voted_for != message.to
        ):
            self._fail(
                "Persisted before sent",
                f"node {machine.id} granted its vote to {message.to} at term {message.term}"
                f" while its durable vote was for {durable.voted_for} at term {durable.term}",
            )
