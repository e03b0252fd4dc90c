"""Recording a run for `raft-sim --html` (the page itself: `sim/replay_html.py`).

`ReplayRecorder` is a `SimulationObserver`: the simulation hands it every transcript event
and RPC as it happens, and the whole cluster after every tick. A run without one pays
nothing beyond the transcript's one flag test per event, which it paid already.

What is kept, all plain JSON values in the order things happened (so the page is the same
bytes for the same arguments):

* one *step* per tick: each node's status (up, down, paused), role, term, vote, commit and
  applied index, election timer, a reference to its log's tail, and the cut links;
* every message: type, sender, receiver, term, key fields, the tick it left and the tick it
  arrives (or was lost), and its fate (dropped, blocked, receiver down, lost in flight);
* events: faults, elections, client outcomes, and the violation if there was one;
* the clients' calls (the history the linearizability check reads): call and return time,
  operation, status and what a read returned.

Logs repeat from tick to tick, so each distinct log tail is stored once (`logs`) and entry
labels once per (index, term) (`labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raftkv.core.messages import AnyMessage, Entry
from raftkv.core.node import RaftNode
from raftkv.sim.invariants import InvariantViolation
from raftkv.sim.transcript import describe_entry, describe_message

if TYPE_CHECKING:
    from raftkv.sim.cluster import Simulation
    from raftkv.sim.driver import SimNode

# Each node's log is recorded as its last LOG_TAIL_ENTRIES entries: enough to see appends,
# conflicts and commits, while a long run's page stays small (compaction keeps few anyway).
LOG_TAIL_ENTRIES = 40
# Steps (ticks) kept by default: a default run (3000 ticks plus healing) fits whole.
STEPS_DEFAULT = 5000
# The checks that run after every tick, step and Ready (docs/simulator.md "The checks"),
# and the ones at the end of the run.
CHECKS_CONTINUOUS = (
    "Election Safety",
    "Leader Append-Only",
    "Log Matching",
    "Leader Completeness",
    "State Machine Safety",
    "Lease safety",
    "Commit monotonic",
    "Acknowledged writes",
    "Client sessions",
    "Linearizability (as it happens)",
    "Ready contract",
)
CHECKS_AT_END = ("Liveness", "Final state", "Linearizability (history)")
# Transcript lines too frequent to be worth their bytes: the logs and commit marks show them.
_SKIPPED_EVENTS = (": applied ", ": took snapshot at ")
# Messages are forgotten by the lost-in-flight matcher once this many ticks overdue.
_PENDING_GRACE_TICKS = 100


def classify_event(text: str) -> str:
    """The kind a page can jump between: fault, election, client or node."""
    if text.startswith("fault:"):
        return "fault"
    if text.startswith("client "):
        return "client"
    if ": became leader at term" in text:
        return "election"
    return "node"


@dataclass
class ReplayRecorder:
    steps_max: int = STEPS_DEFAULT
    steps: list[dict[str, Any]] = field(default_factory=list)
    messages: list[list[Any]] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)
    operations: list[list[Any]] = field(default_factory=list)
    logs: list[list[Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cuts: list[list[list[int]]] = field(default_factory=list)
    _log_ids: dict[tuple[int, tuple[int, ...]], int] = field(default_factory=dict)
    _cut_ids: dict[tuple[tuple[int, int], ...], int] = field(default_factory=dict)
    # Per node, the log last recorded: (node, snapshot index, length, last entry, log id).
    _running_logs: dict[int, tuple[RaftNode, int, int, Entry | None, int]] = field(
        default_factory=dict
    )
    _durable_logs: dict[tuple[int, int], int] = field(default_factory=dict)
    # A message object -> the indexes of its records still in flight (a duplicate has two);
    # the object is kept so its id cannot be reused while it is matched.
    _pending: dict[int, tuple[AnyMessage, list[int]]] = field(default_factory=dict)

    # --- TranscriptObserver ----------------------------------------------------------
    def event(self, tick: int, text: str) -> None:
        if any(skipped in text for skipped in _SKIPPED_EVENTS):
            return
        self.events.append([tick, classify_event(text), text])

    def rpc(self, tick: int, message: AnyMessage, note: str, delivery_ticks: Sequence[int]) -> None:
        if note.startswith("lost: "):
            self._lost(tick, message, note[len("lost: ") :])
            return
        kind, _, detail = describe_message(message).partition(" ")
        if not delivery_ticks:  # never left: dropped, blocked, or nobody to receive it
            self.messages.append(
                [kind, message.sender, message.to, message.term, detail, tick, None, note]
            )
            return
        indexes = []
        for delivery in delivery_ticks:
            indexes.append(len(self.messages))
            self.messages.append(
                [kind, message.sender, message.to, message.term, detail, tick, delivery, ""]
            )
        pending = self._pending.get(id(message))
        if pending is None:
            self._pending[id(message)] = (message, indexes)
        else:
            pending[1].extend(indexes)

    def held(self, tick: int, message: AnyMessage, until: int) -> None:
        """The receiver is paused: the copy due at `tick` now arrives at `until`."""
        index = self._copy_due(tick, message)
        if index is not None:
            record = self.messages[index]
            record[6] = until
            record[7] = "held: receiver paused"

    def _lost(self, tick: int, message: AnyMessage, reason: str) -> None:
        index = self._copy_due(tick, message)
        if index is not None:
            record = self.messages[index]
            record[6] = tick
            record[7] = f"lost: {reason}"
            self._pending[id(message)][1].remove(index)

    def _copy_due(self, tick: int, message: AnyMessage) -> int | None:
        """The record of the copy of `message` the network is delivering at `tick`: the
        latest due by then (copies due earlier were delivered when they were due)."""
        pending = self._pending.get(id(message))
        if pending is None or pending[0] is not message:
            return None
        due = [index for index in pending[1] if self.messages[index][6] <= tick]
        return due[-1] if due else None

    # --- SimulationObserver ------------------------------------------------------------
    def after_tick(self, simulation: Simulation) -> None:
        now = simulation.now
        nodes = [self._node_state(simulation, node_id) for node_id in simulation.node_ids]
        step = {"t": now, "n": nodes, "cut": self._cut_id(simulation.network.blocked_links)}
        if self.steps and self.steps[-1]["t"] == now:
            self.steps[-1] = step  # the end of a run cut short inside this tick
        else:
            self.steps.append(step)
        if now % _PENDING_GRACE_TICKS == 0:
            self._forget_delivered(now)

    def after_run(self, simulation: Simulation) -> None:
        self.after_tick(simulation)  # the state at the end, which a violation may cut short
        # The clients' calls, from the same history the linearizability check reads; a call
        # still open (the run was cut short) has no return time.
        self.operations = [
            [
                operation.client,
                operation.op,
                operation.key,
                operation.value,
                operation.call_time,
                operation.return_time,
                operation.status,
                operation.result,
            ]
            for operation in simulation.workload.recorder.history().operations
        ]

    def _forget_delivered(self, now: int) -> None:
        messages = self.messages
        for key in list(self._pending):
            _, indexes = self._pending[key]
            if all(messages[index][6] < now - _PENDING_GRACE_TICKS for index in indexes):
                del self._pending[key]

    def _node_state(self, simulation: Simulation, node_id: int) -> list[Any]:
        """[status, role, term, voted for, commit, applied, timer left, timer total, log]."""
        driver = simulation.nodes[node_id]
        node = driver.node
        if node is None:
            return ["down", None, None, None, None, None, None, None, self._durable_log_id(driver)]
        status = "paused" if driver.paused(simulation.now) else "up"
        leading = node.role.value == "leader"
        timeout = node.randomized_election_timeout
        return [
            status,
            node.role.value,
            node.term,
            node.voted_for,
            node.log.committed,
            driver.applied_index,
            None if leading else max(0, timeout - node.election_elapsed),
            None if leading else timeout,
            self._running_log_id(node_id, node),
        ]

    def _running_log_id(self, node_id: int, node: RaftNode) -> int:
        log = node.log
        entries = log.entries
        # Most ticks change no log: the same node, compaction point, length and last entry
        # object mean the same tail (a rewritten suffix replaces the last entry).
        last_entry = entries[-1] if entries else None
        cached = self._running_logs.get(node_id)
        if (
            cached is not None
            and cached[0] is node
            and cached[1] == log.snapshot_index
            and cached[2] == len(entries)
            and cached[3] is last_entry
        ):
            return cached[4]
        tail = entries[-LOG_TAIL_ENTRIES:]
        labels = self.labels
        for entry in tail:
            key = f"{entry.index}/{entry.term}"
            if key not in labels:
                labels[key] = describe_entry(entry).partition(" ")[2]
        log_id = self._log_id(log.last_index - len(tail) + 1, tuple(e.term for e in tail))
        self._running_logs[node_id] = (node, log.snapshot_index, len(entries), last_entry, log_id)
        return log_id

    def _durable_log_id(self, driver: SimNode) -> int:
        """A crashed node's log is what its disk kept, fixed until it restarts."""
        key = (driver.id, driver.incarnation)
        log_id = self._durable_logs.get(key)
        if log_id is None:
            view = driver.log_view()
            start = max(view.snapshot_index + 1, view.last_index - LOG_TAIL_ENTRIES + 1)
            terms = tuple(view.term_at(index) or 0 for index in range(start, view.last_index + 1))
            log_id = self._durable_logs[key] = self._log_id(start, terms)
        return log_id

    def _log_id(self, start: int, terms: tuple[int, ...]) -> int:
        key = (start, terms)
        log_id = self._log_ids.get(key)
        if log_id is None:
            log_id = self._log_ids[key] = len(self.logs)
            self.logs.append([start, list(terms)])
        return log_id

    def _cut_id(self, links: list[tuple[int, int]]) -> int:
        key = tuple(links)
        cut_id = self._cut_ids.get(key)
        if cut_id is None:
            cut_id = self._cut_ids[key] = len(self.cuts)
            self.cuts.append([[sender, receiver] for sender, receiver in links])
        return cut_id

    def _only_logs_in(
        self, steps: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[list[Any]], dict[str, str]]:
        """The log tails and labels `steps` refer to, renumbered: the trimmed page does not
        carry the logs of the ticks it left out."""
        used = sorted({node[-1] for step in steps for node in step["n"]})
        renumbered = {old: new for new, old in enumerate(used)}
        logs = [self.logs[old] for old in used]
        wanted = {
            f"{first + offset}/{term}" for first, terms in logs for offset, term in enumerate(terms)
        }
        labels = {key: label for key, label in self.labels.items() if key in wanted}
        steps = [
            {**step, "n": [[*node[:-1], renumbered[node[-1]]] for node in step["n"]]}
            for step in steps
        ]
        return steps, logs, labels

    # --- the result ---------------------------------------------------------------------
    def replay_data(
        self,
        *,
        title: str,
        node_ids: Sequence[int],
        summary: Sequence[str],
        violation: InvariantViolation | None,
    ) -> dict[str, Any]:
        """Everything the page shows, as JSON values; at most `steps_max` steps, the last
        ones (a violation ends a run, so it always stays in view)."""
        events = list(self.events)
        if violation is not None:
            events.append([violation.tick, "violation", f"VIOLATION: {violation}"])
        steps = self.steps
        note = ""
        if len(steps) > self.steps_max:
            first_tick = steps[-self.steps_max]["t"]
            note = (
                f"Only the last {self.steps_max} of {len(steps)} ticks are recorded"
                f" (ticks {first_tick}-{steps[-1]['t']}); --html-steps N keeps more."
            )
            steps = steps[-self.steps_max :]
            events = [event for event in events if event[0] >= first_tick]
            messages = [
                message
                for message in self.messages
                if message[5] >= first_tick or (message[6] is not None and message[6] >= first_tick)
            ]
            steps, logs, labels = self._only_logs_in(steps)
            operations = [
                operation
                for operation in self.operations
                if operation[5] is None or operation[5] >= first_tick
            ]
        else:
            messages, logs, labels = self.messages, self.logs, self.labels
            operations = self.operations
        return {
            "format": "raftkv-replay/1",
            "title": title,
            "nodes": list(node_ids),
            "summary": list(summary),
            "note": note,
            "fields": [
                "status",
                "role",
                "term",
                "votedFor",
                "commit",
                "applied",
                "timerLeft",
                "timerTotal",
                "log",
            ],
            "logTail": LOG_TAIL_ENTRIES,
            "steps": steps,
            "logs": logs,
            "labels": labels,
            "cuts": self.cuts,
            "messageFields": ["type", "from", "to", "term", "detail", "sent", "arrives", "fate"],
            "messages": messages,
            "events": events,
            "operationFields": [
                "client",
                "op",
                "key",
                "value",
                "called",
                "returned",
                "status",
                "result",
            ],
            "operations": operations,
            "invariants": {
                "continuous": list(CHECKS_CONTINUOUS),
                "atEnd": list(CHECKS_AT_END),
                "violation": None
                if violation is None
                else {
                    "invariant": violation.invariant,
                    "detail": violation.detail,
                    "tick": violation.tick,
                },
            },
        }
