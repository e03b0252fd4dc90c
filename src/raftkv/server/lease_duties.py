"""The runtime's part in leases (SPEC §6, "Leases"): it keeps the leader's lessor
(server/lessor.py) told of leadership and of applied entries, and from the ticker looks for
expired leases every LEASE_CHECK_SECONDS, proposing them as one `lease_expire` entry. Only
a node whose state machine is the KV store has these duties."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from raftkv.errors import RaftError
from raftkv.kv import Command, KVStore, encode_command
from raftkv.server.lessor import LeaseMetrics, Lessor

logger = logging.getLogger(__name__)

# How often the leader looks for expired leases: an expiry is applied this much (plus a
# commit) after its deadline at most.
LEASE_CHECK_SECONDS = 0.1


class LeaseDuties:
    def __init__(
        self,
        store: KVStore,
        clock: Callable[[], float],
        propose: Callable[[bytes], object],
        *,
        election_timeout_seconds: float,
        tick_ms: int,
        registry: CollectorRegistry,
    ) -> None:
        """`propose`: the core's (raises RaftError when not leader or the log is full)."""
        self.lessor = Lessor(
            store,
            clock,
            extension_seconds=election_timeout_seconds,
            retry_seconds=election_timeout_seconds,
        )
        self._propose = propose
        # Ticks between two looks for expired leases, and ticks left until the next one.
        self._check_ticks = max(1, round(LEASE_CHECK_SECONDS * 1000 / tick_ms))
        self._countdown = self._check_ticks
        registry.register(LeaseMetrics(store, self.lessor))

    def tick(self) -> None:
        """Leader: propose expiring the leases past their deadline. From the ticker, not a
        task of its own. The entry is not waited for: the lessor proposes it again if it is
        lost."""
        lessor = self.lessor
        if not lessor.active:
            return
        self._countdown -= 1
        if self._countdown > 0:
            return
        self._countdown = self._check_ticks
        expired = lessor.expired()
        if expired:
            command = Command(op="lease_expire", key="", leases=tuple(expired))
            try:
                self._propose(encode_command(command))
            except RaftError as error:  # no longer leader, or the log is full for now
                logger.info("could not propose expiring %d leases: %s", len(expired), error)

    def leadership(self, leading: bool) -> None:
        """The node's role changed: a new leader times every lease afresh; a former one
        forgets its deadlines."""
        lessor = self.lessor
        if leading and not lessor.active:
            lessor.promote()
        elif not leading and lessor.active:
            lessor.demote()

    def applied(self) -> None:
        """Entries were applied, or a snapshot restored: grants start, revokes end."""
        self.lessor.applied()
