"""The Raft safety properties (paper Figure 3), checked after every step of every node.

Each check is incremental, so checking continuously costs about as much as running:

* Election Safety: one map term -> leader over the whole run.
* Leader Append-Only: while a node leads a term, the entry at the end of its log as last seen
  is still there, unchanged, and everything after it is of the leader's term.
* Log Matching, by the paper's own induction: every entry that enters any log is recorded
  under (index, term) with its content and the term of the entry before it. Two entries with
  the same index and term must agree on both, so logs sharing an entry share the whole prefix.
* Leader Completeness (§5.4): an entry committed in term T is in the log of every leader of a
  term after T. The term an index committed in is bounded by the term of the node first seen
  committing it (a follower learns commits from its own term's leader), so: a new leader of
  term T holds the newest index committed in an earlier term (hence, by Log Matching, all
  before it), and a commit learned later is in the log of every current leader of a later
  term than that bound. (An entry of term 3 may well commit in term 5 while a stale leader
  of term 4, elected earlier, lacks it.) And, sooner: when an index commits, no node
  lacking the entry may be able to win an election. The paper's proof (§5.4.3) shows that
  every holder of a committed entry is strictly more up-to-date (§5.4.1) than any node
  lacking it, and the holders are a majority; so if the nodes whose vote a lacking node could
  get by log comparison alone (pre-vote and leases only take votes away) form a majority,
  the commit was unsafe, whether or not that node ever campaigns. This catches a Figure 8
  commit the moment it happens.
* State Machine Safety: one map index -> applied entry, and one map index -> the state
  machine's running hash after applying it.
* Lease safety (thesis §6.4.1): while a leader's lease is valid no leader of a later term
  can have been elected (clocks here do not drift), so a stale leader never claims one. After
  a process pause the driver distrusts the lease for a while, as the server does; what is
  checked is the lease a read may use.
* Commit indexes never decrease within a node's lifetime, and a write acknowledged to a client
  stays applied at its index (that index's entry is fixed by the map above).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from raftkv.core.messages import Entry
from raftkv.core.node import RaftNode, Role

_LEADER: Final = Role.LEADER  # a module constant: `Role.LEADER` is a class lookup on every use


class LogView:
    """What a node's log would say in an election: a running node's log in memory, a
    crashed node's durable one. (A plain class: the checker builds one per node at every
    new commit, and compiled code reads its fields directly.)"""

    def __init__(
        self,
        node_id: int,
        last_index: int,
        last_term: int,
        snapshot_index: int,
        term_at: Callable[[int], int | None],
    ) -> None:
        self.node_id = node_id
        self.last_index = last_index
        self.last_term = last_term
        self.snapshot_index = snapshot_index
        self.term_at = term_at

    def holds(self, index: int, term: int) -> bool:
        return index <= self.snapshot_index or self.term_at(index) == term

    def at_least_as_up_to_date_as(self, other: LogView) -> bool:
        """§5.4.1, from the voter `other`'s side."""
        return self.last_term > other.last_term or (
            self.last_term == other.last_term and self.last_index >= other.last_index
        )


class InvariantViolation(Exception):
    def __init__(self, invariant: str, detail: str, tick: int) -> None:
        super().__init__(f"{invariant}: {detail} (tick {tick})")
        self.invariant = invariant
        self.detail = detail
        self.tick = tick


# A committed index whose term no node could tell (it was compacted into a snapshot everywhere
# the commit was learned); such an index is not compared.
UNKNOWN_TERM: Final = -1


class InvariantChecker:
    def __init__(self) -> None:
        self.now = 0
        self.leader_of_term: dict[int, int] = {}
        self.newest_leader_term = 0
        self.elections: list[tuple[int, int]] = []  # (term, node) in order of election
        # Log Matching: (index, term) -> (kind, data, term of the previous entry).
        self._entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        # The term of every committed index, position = index (index 0 is the empty prefix),
        # and an upper bound on the term in which it committed.
        self.committed_terms: list[int] = [0]
        self.committed_in_term: list[int] = [0]
        # State Machine Safety: index -> (term, kind, data) applied there, and the hash after.
        self._applied: dict[int, tuple[int, int, bytes]] = {}
        self._applied_hash: dict[int, str] = {}
        # Per running node: the commit index last seen (reset by a restart).
        self._commit_seen: dict[int, int] = {}
        # Per node currently leading: (its node, term, last index, entry there) as last seen.
        self._leaders: dict[int, tuple[RaftNode, int, int, Entry | None]] = {}
        self.acknowledged: dict[int, int] = {}  # index -> term of writes acked to clients
        # Called with (term, leader) when a leader is first seen (the fault injector's hook).
        self.election_listeners: list[Callable[[int, int], None]] = []
        # Every node's log as an election would see it; set by the simulation.
        self.log_views: Callable[[], list[LogView]] | None = None
        # Called with each entry the first time any node applies its index.
        self.apply_listeners: list[Callable[[Entry], None]] = []

    def fail(self, invariant: str, detail: str) -> InvariantViolation:
        return InvariantViolation(invariant, detail, self.now)

    @property
    def committed_index(self) -> int:
        return len(self.committed_terms) - 1

    # --- lifecycle ----------------------------------------------------------------------
    def on_start(self, node_id: int) -> None:
        """A node (re)started: its commit index may legitimately be older than before."""
        self._commit_seen[node_id] = 0
        self._leaders.pop(node_id, None)

    def on_crash(self, node_id: int) -> None:
        self._commit_seen.pop(node_id, None)
        self._leaders.pop(node_id, None)

    # --- after every tick and step ------------------------------------------------------
    def observe(self, node_id: int, node: RaftNode) -> None:
        # Runs after every tick, step and Ready: the common case (nothing new) does a few
        # attribute tests and calls nothing.
        log = node.log
        leaders = self._leaders
        if node.role is _LEADER:
            entries = log.entries
            last = log.snapshot_index + len(entries)
            last_entry = entries[-1] if entries else None
            seen = leaders.get(node_id)
            if (
                seen is None
                or seen[2] != last
                or seen[3] is not last_entry
                or seen[1] != node.term
                or seen[0] is not node
            ):
                # Otherwise the record as last seen stands: nothing to check or rewrite.
                if seen is None or seen[1] != node.term:
                    self._on_new_leader(node_id, node)
                elif last != seen[2]:
                    self._check_append_only(node_id, node, seen[2], seen[3])
                leaders[node_id] = (node, node.term, last, last_entry)
        elif node_id in leaders:
            del leaders[node_id]
        if log.committed != self._commit_seen.get(node_id, 0):
            self._on_commit(node_id, node)

    def _on_new_leader(self, node_id: int, node: RaftNode) -> None:
        term = node.term
        holder = self.leader_of_term.get(term)
        if holder is not None and holder != node_id:
            raise self.fail(
                "Election Safety", f"nodes {holder} and {node_id} both leaders of term {term}"
            )
        if holder is None:
            self.leader_of_term[term] = node_id
            self.elections.append((term, node_id))
            self.newest_leader_term = max(self.newest_leader_term, term)
            for listener in self.election_listeners:
                listener(term, node_id)
        # Leader Completeness: the newest entry committed in an earlier term (so, by Log
        # Matching, every one before it).
        index = self.committed_index
        committed_in_term = self.committed_in_term
        while index > 0 and committed_in_term[index] >= term:
            index -= 1
        log = node.log
        if index > log.last_index:
            raise self.fail(
                "Leader Completeness",
                f"node {node_id} leads term {term} with last index {log.last_index}"
                f" but index {index} committed in term {committed_in_term[index]} or before",
            )
        expected = self.committed_terms[index]
        if index > log.snapshot_index and expected != UNKNOWN_TERM:
            actual = log.term(index)
            if actual != expected:
                raise self.fail(
                    "Leader Completeness",
                    f"node {node_id} leads term {term} with term {actual} at index {index}"
                    f" where term {expected} is committed",
                )

    def check_lease(self, node_id: int, node: RaftNode, usable: bool) -> None:
        """A leader of an older term than the newest elected one must not hold a lease it
        may use (`usable`: the core's lease_valid(), unless the driver distrusts it)."""
        if usable and node.term < self.newest_leader_term:
            raise self.fail(
                "Lease safety",
                f"node {node_id} still holds a valid lease as leader of term {node.term},"
                f" but node {self.leader_of_term[self.newest_leader_term]} was elected"
                f" leader of term {self.newest_leader_term}: a lease read would be stale",
            )

    def _check_append_only(
        self, node_id: int, node: RaftNode, last_index: int, last_entry: Entry | None
    ) -> None:
        log = node.log
        if log.last_index < last_index:
            raise self.fail(
                "Leader Append-Only",
                f"leader {node_id} (term {node.term}) shrank its log from {last_index}"
                f" to {log.last_index}",
            )
        if log.last_index == last_index or last_entry is None:
            return
        if last_index > log.snapshot_index and log.entry(last_index) != last_entry:
            raise self.fail(
                "Leader Append-Only",
                f"leader {node_id} (term {node.term}) replaced its entry at {last_index}:"
                f" {last_entry} -> {log.entry(last_index)}",
            )
        first_new = max(last_index + 1, log.snapshot_index + 1)
        for index in range(first_new, log.last_index + 1):
            if log.entry(index).term != node.term:
                raise self.fail(
                    "Leader Append-Only",
                    f"leader {node_id} of term {node.term} appended an entry of term"
                    f" {log.entry(index).term} at {index}",
                )

    def _on_commit(self, node_id: int, node: RaftNode) -> None:
        log = node.log
        committed = log.committed
        previous = self._commit_seen.get(node_id, 0)
        if committed < previous:
            raise self.fail(
                "Commit monotonic",
                f"node {node_id}'s commit index went back from {previous} to {committed}"
                " without a crash",
            )
        self._commit_seen[node_id] = committed
        terms = self.committed_terms
        known = len(terms) - 1
        # Agreement on the newest index both know covers the common prefix (Log Matching).
        probe = min(committed, known)
        if probe > log.snapshot_index:
            term = log.term(probe)
            if terms[probe] != UNKNOWN_TERM and term != terms[probe]:
                raise self.fail(
                    "State Machine Safety",
                    f"node {node_id} committed term {term} at index {probe}"
                    f" where term {terms[probe]} was committed before",
                )
        for index in range(known + 1, committed + 1):
            term = log.term(index)
            terms.append(UNKNOWN_TERM if term is None else term)
            self.committed_in_term.append(node.term)
            if term is not None:
                self._check_current_leaders_hold(index, term, node.term)
        newest_term = terms[committed] if committed > known else UNKNOWN_TERM
        if newest_term != UNKNOWN_TERM and self.log_views is not None:
            self._check_no_electable_node_lacks(node_id, committed, newest_term)

    def _check_no_electable_node_lacks(self, node_id: int, index: int, term: int) -> None:
        views = self.log_views() if self.log_views is not None else []
        majority = len(views) // 2 + 1
        for candidate in views:
            if candidate.holds(index, term):
                continue
            # The nodes that would vote for it (§5.4.1). A method call, not a comparison of
            # (term, index) tuples: compiled, that builds two tuples and compares generically.
            voters = [view.node_id for view in views if candidate.at_least_as_up_to_date_as(view)]
            if len(voters) >= majority:
                raise self.fail(
                    "Leader Completeness",
                    f"node {node_id} committed {index}/{term}, but node {candidate.node_id}"
                    f" (last {candidate.last_index}/{candidate.last_term}) lacks it and could"
                    f" still be elected with the votes of nodes {voters}",
                )

    def _check_current_leaders_hold(self, index: int, term: int, committed_in: int) -> None:
        for leader_id, (leader, leader_term, _, _) in self._leaders.items():
            if (
                leader_term > committed_in
                and leader.role is Role.LEADER
                and leader.term == leader_term
            ):
                log = leader.log
                if index > log.snapshot_index and log.term(index) != term:
                    raise self.fail(
                        "Leader Completeness",
                        f"entry {index}/{term} committed in term {committed_in} or before, but"
                        f" leader {leader_id} of later term {leader_term} holds term"
                        f" {log.term(index)} there",
                    )

    # --- from the driver ----------------------------------------------------------------
    def on_entries(self, node_id: int, previous_term: int, entries: list[Entry]) -> None:
        """`entries` entered node `node_id`'s log right after an entry of `previous_term`."""
        known = self._entries
        for entry in entries:
            key = (entry.index, entry.term)
            identity = (entry.kind, entry.data, previous_term)
            seen = known.get(key)
            if seen is None:
                known[key] = identity
            elif seen != identity:
                what = "content" if seen[:2] != identity[:2] else "previous term"
                raise self.fail(
                    "Log Matching",
                    f"node {node_id} holds entry {entry.index}/{entry.term} whose {what}"
                    f" differs from another log's (previous term {previous_term}"
                    f" vs {seen[2]})",
                )
            previous_term = entry.term

    def on_apply(self, node_id: int, entry: Entry, applied_hash: str) -> None:
        index = entry.index
        applied = (entry.term, entry.kind, entry.data)
        seen = self._applied.get(index)
        if seen is None:
            self._applied[index] = applied
            self._applied_hash[index] = applied_hash
            for listener in self.apply_listeners:
                listener(entry)
            return
        if seen != applied:
            raise self.fail(
                "State Machine Safety",
                f"node {node_id} applied term {entry.term} at index {index}"
                f" where term {seen[0]} was applied before ({seen[2]!r} vs {entry.data!r})",
            )
        if self._applied_hash[index] != applied_hash:
            raise self.fail(
                "State Machine Safety",
                f"node {node_id}'s state hash after index {index} differs from another node's",
            )

    def on_restore(self, node_id: int, index: int, applied_hash: str) -> None:
        """A node's state machine was replaced by a snapshot ending at `index`."""
        seen = self._applied_hash.get(index)
        if seen is None:
            self._applied_hash[index] = applied_hash
        elif seen != applied_hash:
            raise self.fail(
                "State Machine Safety",
                f"node {node_id} restored a snapshot at {index} whose state hash differs"
                " from the state other nodes reached there",
            )

    def on_acknowledged(self, index: int, term: int) -> None:
        """A client was told its write committed as entry (index, term)."""
        applied = self._applied.get(index)
        if applied is None or applied[0] != term:
            raise self.fail(
                "Acknowledged writes",
                f"write acknowledged at {index}/{term} but index {index} holds {applied}",
            )
        self.acknowledged[index] = term

    def applied_commands(self) -> list[tuple[int, bytes]]:
        """Every state machine command applied as an entry by some node, in index order:
        the committed log, less configurations (what a watch checker replays)."""
        return [(index, data) for index, (_, _, data) in sorted(self._applied.items())]

    def applied_term(self, index: int) -> int | None:
        applied = self._applied.get(index)
        return None if applied is None else applied[0]
