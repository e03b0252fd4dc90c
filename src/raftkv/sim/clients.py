"""Simulated clients: each issues one KV operation at a time to the node it believes leads,
retries on the way, and records the call and its outcome in a `HistoryRecorder` (the format
of docs/history-format.md) for the linearizability checker.

A write is acknowledged when the entry (index, term) that propose() returned is applied on
the node it was proposed to; another term at that index means it was lost (it can never
commit), so the client retries it. Writes carry a client session (client_id, seq; thesis
§6.3), so an attempt whose fate is unknown (its node crashed, or no answer came in time) is
retried with the same request: the state machine applies it at most once. A read goes
through ReadIndex (thesis §6.4) or, sometimes, the leader lease (§6.4.1), and is served once
the node has applied the read index.

Like the client library (raftkv.client.sessions), every attempt of a write also carries
`after_index`: the highest committed index the client had seen complete before the write
began. A session the store forgot refuses the write `session_expired`; if no attempt of it
may still take effect (each was refused or seen overwritten) the client opens a new session
and sends the write again, otherwise the write's outcome is unknown.

Outcomes are recorded the way a real client would know them: "ok"; "fail" when the
operation certainly had no effect (refused, or lost as above, until its deadline);
"unknown" when the deadline passed after some attempt was appended (it may still commit),
or when the store refused a retry as of a forgotten session (an earlier attempt may have
been applied).

An execution ledger (a replica of the store fed each index once) checks that no (client_id,
seq) is executed twice: the at-most-once promise the sessions make.

Beyond the checker's verdict, the clients check the real-time order cheaply as they go: all
replicas apply one log, so an operation that starts after another completed must see the log
at least that far (a read's state index) or land beyond it (a write's index).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final

import msgspec

from raftkv.check import HistoryRecorder
from raftkv.check.history import Operation, OperationKind, Status
from raftkv.core.messages import Entry, EntryKind
from raftkv.core.ready import ReadState
from raftkv.errors import NotLeader, ProposalDropped
from raftkv.kv.commands import Command, Result, encode_command
from raftkv.kv.store import KVStore
from raftkv.sim import draws
from raftkv.sim.multi_key_ops import MultiKeyMix, MultiKeyPlan, range_answer, write_answer

if TYPE_CHECKING:
    from raftkv.sim.cluster import Simulation

CLIENTS = 3
KEYS: Final = ("x", "y", "z")
# Chance per tick that an idle client starts its next operation.
OPERATION_PROBABILITY_PER_TICK: Final = 0.25
# The operation mix (the rest are puts).
READ_SHARE: Final = 0.35
DELETE_SHARE: Final = 0.1
CAS_SHARE: Final = 0.15  # compare-and-set on a value the client saw, or on absence
CONDITIONAL_PUT_SHARE: Final = 0.05  # put only if absent (SPEC §3)
CAS_IF_ABSENT_SHARE: Final = 0.25  # of the cas operations
LEASE_READ_SHARE: Final = 0.25  # of the reads
# An attempt unanswered this long is retried (a real client's RPC timeout): a few election
# timeouts, so a leader change during the attempt usually still answers it.
ATTEMPT_TIMEOUT_TICKS: Final = 60
# Pause before retrying after a definite refusal, so a leaderless cluster is not hammered.
RETRY_BACKOFF_TICKS: Final = 3
# An operation not acknowledged this long is given up: "fail" if no attempt was ever appended,
# else "unknown".
OPERATION_DEADLINE_TICKS: Final = 300
# History times are tick + sequence / this, so events within one tick keep their order.
HISTORY_EVENTS_PER_TICK_MAX: Final = 10_000


class _Operation:
    """One client operation, from invocation to its answer (a plain class, not a
    dataclass: mypyc compiles this __init__, and one runs per operation)."""

    def __init__(
        self,
        handle: int,  # the recorder's handle
        kind: OperationKind,  # "put" | "del" | "get" | "cas", or "range" | "delrange" | "txn"
        key: str,  # "" for a multi-key operation
        value: str | None,
        invoked_tick: int,
        must_see: int,
    ) -> None:
        self.handle = handle
        self.kind = kind
        self.key = key
        self.value = value
        self.invoked_tick = invoked_tick
        # The furthest log index an operation completed before this one was invoked had
        # reached.
        self.must_see = must_see
        # The attempt in flight, if any.
        self.node_id = 0
        self.started_tick = 0
        self.index = 0  # a write's entry, or a read's index once known
        self.term = 0
        self.request_id = 0
        self.in_flight = False
        self.retry_tick = 0
        self.seq = 0  # the write's session sequence number
        self.after_index = 0  # the committed index the client had seen when the write began
        self.appended = False  # some attempt was appended to a log: it may take effect
        # Some attempt was appended and then abandoned unanswered (no answer in time, its
        # node crashed): it may still take effect. Attempts seen overwritten or refused do
        # not count.
        self.maybe_applied = False
        # cas and conditional puts: write only if the value is `if_value`, or absent.
        self.if_value: str | None = None
        self.if_absent = False
        self.plan: MultiKeyPlan | None = None  # range, delrange, txn (multi_key_ops)

    @property
    def reads(self) -> bool:
        """Served from a node's state (ReadIndex or lease), not proposed."""
        return self.kind in ("get", "range")

    def describe(self) -> str:
        if self.plan is None:
            return f"{self.kind} {self.key}{'=' + self.value if self.value else ''}"
        shown = " ".join(f"{name}={value!r}" for name, value in self.plan.fields.items())
        return f"{self.kind} {shown}"


class Client:
    def __init__(self, client_id: int, target: int) -> None:
        self.id = client_id
        self.target = target
        self.generation = 0  # bumped after an unknown outcome: a new process (Knossos)
        self.operation: _Operation | None = None
        self.session = f"c{client_id}"
        self.seq = 0
        self.sessions_opened = 1
        # The highest log index this client saw in a completed operation's answer.
        self.committed_index = 0
        # The last value this client saw or wrote per key: what its cas operations expect.
        self.seen: dict[str, str] = {}
        # Where this client's last acknowledged put or cas of a key landed: what its
        # transactions' mod_index compares name.
        self.mod_index: dict[str, int] = {}

    def open_session(self) -> None:
        """The store forgot the session: writes go on under a new client id."""
        self.sessions_opened += 1
        self.session = f"c{self.id}s{self.sessions_opened}"
        self.seq = 0

    @property
    def name(self) -> str:
        return f"c{self.id}" if self.generation == 0 else f"c{self.id}.{self.generation}"


class Workload:
    def __init__(
        self,
        rng: random.Random,
        simulation: Simulation,
        enabled: bool,
        multi_key_rng: random.Random | None = None,
    ) -> None:
        """`enabled`: three clients issue operations; otherwise there are no clients.
        `multi_key_rng`: turns some operations into ranges, delete-ranges and transactions
        (multi_key_ops); None: single-key operations only."""
        self._rng = rng
        # Bound once for the per-tick draws: a method call on a Random (not compiled) looks
        # the method up every time.
        self._random = rng.random
        self._mix = None if multi_key_rng is None else MultiKeyMix(multi_key_rng, KEYS)
        self._simulation = simulation
        self.recorder = HistoryRecorder()
        self.issuing = enabled
        node_ids = simulation.node_ids
        self.clients = (
            [Client(number, rng.choice(node_ids)) for number in range(1, CLIENTS + 1)]
            if enabled
            else []
        )
        self._writes: dict[tuple[int, int], Client] = {}  # (node, index) -> waiting client
        self._reads: dict[int, Client] = {}  # request id -> waiting client
        self._next_request_id = 1
        self._next_value = 1
        self._history_tick = -1
        self._history_sequence = 0
        self.completed_index_max = 0
        self.sessions_expired = 0  # writes refused session_expired
        self.ledger = _ExecutionLedger(simulation)
        if enabled:
            simulation.checker.apply_listeners.append(self.ledger.first_applied)

    @property
    def idle(self) -> bool:
        return all(client.operation is None for client in self.clients)

    def _time(self) -> float:
        now = self._simulation.now
        if now != self._history_tick:
            self._history_tick, self._history_sequence = now, 0
        self._history_sequence += 1
        assert self._history_sequence < HISTORY_EVENTS_PER_TICK_MAX
        return now + self._history_sequence / HISTORY_EVENTS_PER_TICK_MAX

    # --- per tick -----------------------------------------------------------------------
    def tick(self, now: int) -> None:
        for client in self.clients:
            operation = client.operation
            if operation is None:
                if self.issuing and self._random() < OPERATION_PROBABILITY_PER_TICK:
                    self._invoke(client, now)
                continue
            if now - operation.invoked_tick > OPERATION_DEADLINE_TICKS:
                self._give_up(client, operation)
            elif operation.in_flight:
                if operation.reads and operation.index:
                    self._maybe_serve(client, operation)
                elif now - operation.started_tick > ATTEMPT_TIMEOUT_TICKS:
                    self._abandon_attempt(client, operation)
            elif now >= operation.retry_tick:
                self._attempt(client, operation, now)

    def _invoke(self, client: Client, now: int) -> None:
        rng = self._rng
        key = draws.choice(rng, KEYS)
        draw = rng.random()
        value: str | None = None
        if_value: str | None = None
        if_absent = False
        kind: OperationKind
        if draw < READ_SHARE:
            kind = "get"
        elif draw < READ_SHARE + DELETE_SHARE:
            kind = "del"
        else:
            kind = "put"
            value = f"{client.id}.{self._next_value}"
            self._next_value += 1
            draw -= READ_SHARE + DELETE_SHARE
            if draw < CAS_SHARE:
                kind = "cas"
                seen = client.seen.get(key)
                if seen is None or rng.random() < CAS_IF_ABSENT_SHARE:
                    if_absent = True
                else:
                    if_value = seen
            elif draw < CAS_SHARE + CONDITIONAL_PUT_SHARE:
                if_absent = True
        plan = self._multi_key_plan(client, kind)
        if plan is not None:
            # The draws above are made all the same, so the client's stream is unchanged.
            kind, key, value, if_value, if_absent = plan.kind, "", None, None, False
            handle = self.recorder.invoke_operation(
                Operation(client=client.name, op=kind, call_time=self._time(), **plan.fields)
            )
        else:
            handle = self._record_invoke(client, kind, key, value, if_value, if_absent)
        operation = _Operation(handle, kind, key, value, now, self.completed_index_max)
        operation.if_value, operation.if_absent, operation.plan = if_value, if_absent, plan
        if not operation.reads:
            client.seq += 1
            operation.seq = client.seq
            operation.after_index = client.committed_index
        client.operation = operation
        self._attempt(client, operation, now)

    def _multi_key_plan(self, client: Client, kind: OperationKind) -> MultiKeyPlan | None:
        """Maybe a range for a get, or a delete-range or transaction for a write."""
        if self._mix is None:
            return None
        if kind == "get":
            return self._mix.read()

        def new_value() -> str:
            value = f"{client.id}.{self._next_value}"
            self._next_value += 1
            return value

        return self._mix.write(client.seen, client.mod_index, new_value)

    def _record_invoke(
        self,
        client: Client,
        kind: OperationKind,
        key: str,
        value: str | None,
        if_value: str | None,
        if_absent: bool,
    ) -> int:
        return self.recorder.invoke(
            client.name,
            kind,
            key,
            time=self._time(),
            value=value,
            if_value=if_value,
            if_absent=if_absent,
        )

    def _attempt(self, client: Client, operation: _Operation, now: int) -> None:
        simulation = self._simulation
        driver = simulation.nodes[client.target]
        node = driver.node
        operation.node_id = client.target
        operation.started_tick = now
        operation.index = operation.term = 0
        try:
            if node is None or driver.paused(now):
                raise NotLeader(None)  # refused or no answer: try someone else
            if operation.reads:
                if self._rng.random() < LEASE_READ_SHARE and driver.lease_usable():
                    operation.index = node.log.committed
                else:
                    operation.request_id = self._next_request_id
                    self._next_request_id += 1
                    node.read_index(operation.request_id)
                    self._reads[operation.request_id] = client
            else:
                command = self._command(client, operation)
                operation.index, operation.term = node.propose(encode_command(command))
                operation.appended = True
                self._writes[(client.target, operation.index)] = client
                simulation.checker.observe(client.target, node)
        except NotLeader as error:
            client.target = (
                error.leader_id
                if error.leader_id is not None and error.leader_id != client.target
                else draws.choice(self._rng, simulation.node_ids)
            )
            operation.retry_tick = (
                now + 1 if error.leader_id is not None else now + RETRY_BACKOFF_TICKS
            )
            return
        except ProposalDropped:
            # No leader, or a leadership transfer: a real client tries elsewhere after a pause.
            operation.retry_tick = now + RETRY_BACKOFF_TICKS
            client.target = draws.choice(self._rng, simulation.node_ids)
            return
        operation.in_flight = True
        if operation.reads and operation.index:
            self._maybe_serve(client, operation)

    @staticmethod
    def _command(client: Client, operation: _Operation) -> Command:
        """The write's command under the client's session, for this attempt."""
        if operation.plan is not None:
            assert operation.plan.command is not None
            return msgspec.structs.replace(
                operation.plan.command,
                client_id=client.session,
                seq=operation.seq,
                after_index=operation.after_index,
            )
        return Command(
            op=operation.kind,
            key=operation.key,
            value=operation.value,
            if_value=operation.if_value,
            if_absent=operation.if_absent,
            client_id=client.session,
            seq=operation.seq,
            after_index=operation.after_index,
        )

    def _abandon_attempt(self, client: Client, operation: _Operation) -> None:
        """The attempt in flight gets no answer: retry, and a write's attempt may yet apply."""
        if not operation.reads:
            operation.maybe_applied = True
        self._retry_later(client, operation)

    def _retry_later(self, client: Client, operation: _Operation) -> None:
        """Try again, maybe elsewhere: the attempt had no effect, or a write's session makes
        a second application impossible."""
        self._forget_attempt(operation)
        operation.in_flight = False
        operation.retry_tick = self._simulation.now + RETRY_BACKOFF_TICKS
        client.target = draws.choice(self._rng, self._simulation.node_ids)

    def _forget_attempt(self, operation: _Operation) -> None:
        if operation.reads:
            self._reads.pop(operation.request_id, None)
        else:
            self._writes.pop((operation.node_id, operation.index), None)

    def _give_up(self, client: Client, operation: _Operation) -> None:
        """The deadline passed: a read or a never-appended write had no effect."""
        if operation.in_flight:
            self._forget_attempt(operation)
        if not operation.reads and operation.appended:
            self._complete(client, "unknown")
        else:
            self._complete(client, "fail", error="timeout")

    def _complete(
        self,
        client: Client,
        status: Status,
        *,
        result: str | None = None,
        error: str | None = None,
        current: str | msgspec.UnsetType | None = msgspec.UNSET,
        index: int = 0,
        **answer: Any,
    ) -> None:
        operation = client.operation
        assert operation is not None
        client.committed_index = max(client.committed_index, index)
        name = client.name
        stats = self._simulation.stats
        time = None if status == "unknown" else self._time()
        self.recorder.complete(
            operation.handle, status, time=time, result=result, error=error, current=current,
            **answer,
        )  # fmt: skip
        if status == "ok" and operation.plan is None:
            seen = current if error == "cas_failed" else result
            if operation.kind == "get" or error == "cas_failed":
                if isinstance(seen, str):
                    client.seen[operation.key] = seen
                else:
                    client.seen.pop(operation.key, None)
            elif operation.kind == "del":
                client.seen.pop(operation.key, None)
            elif operation.value is not None:
                client.seen[operation.key] = operation.value
                if error is None:
                    client.mod_index[operation.key] = index
        client.operation = None
        if status == "ok":
            stats.client_ok += 1
            stats.reads_ok += operation.reads
            self.completed_index_max = max(self.completed_index_max, index)
        elif status == "fail":
            stats.client_failed += 1
        else:
            stats.client_unknown += 1
            client.generation += 1
        transcript = self._simulation.transcript
        if transcript.enabled:
            shown = f" -> {result!r}" if operation.kind == "get" and status == "ok" else ""
            if answer and status == "ok":
                shown = f" -> {answer}"
            transcript.line(
                self._simulation.now,
                f"client {name}: {operation.describe()} {status}{shown}"
                f"{' at ' + str(index) if index else ''}",
            )

    # --- from the nodes -----------------------------------------------------------------
    def on_applied(self, node_id: int, entry: Entry, result: Any) -> None:
        client = self._writes.pop((node_id, entry.index), None)
        if client is None:
            return
        operation = client.operation
        assert operation is not None and operation.index == entry.index
        if entry.term != operation.term:
            self._retry_later(client, operation)  # overwritten: it never commits
            return
        simulation = self._simulation
        if entry.index <= operation.must_see:
            raise simulation.checker.fail(
                "Linearizability",
                f"client {client.name}'s {operation.kind} {operation.key} committed at"
                f" {entry.index}, but the log had reached {operation.must_see} when it began",
            )
        simulation.checker.on_acknowledged(entry.index, entry.term)
        error = result.error if isinstance(result, Result) and not result.ok else None
        if error == "session_expired":
            self._session_expired(client, operation, entry.index)
            return
        if error == "stale_request":
            raise simulation.checker.fail(
                "Client sessions",
                f"client {client.name}'s request seq {operation.seq} was refused as stale at"
                f" {entry.index}, but it is the client's newest request",
            )
        if error == "cas_failed" and isinstance(result, Result):
            # An observation: the value found (None: absent) made the condition false.
            self._complete(client, "ok", error=error, current=result.current, index=entry.index)
            return
        answer = write_answer(result) if operation.plan and isinstance(result, Result) else {}
        self._complete(client, "ok", error=error, index=entry.index, **answer)

    def _session_expired(self, client: Client, operation: _Operation, index: int) -> None:
        """The store no longer knows the write's session: this attempt was not applied."""
        self.sessions_expired += 1
        client.committed_index = max(client.committed_index, index)
        client.open_session()
        if operation.maybe_applied:
            # An earlier attempt may have been applied: nobody can tell any more.
            self._complete(client, "unknown")
            return
        # Nothing of it was applied: the same write under the new session, at the next tick
        # (not from inside the node's apply loop).
        client.seq += 1
        operation.seq = client.seq
        operation.after_index = client.committed_index
        operation.in_flight = False
        operation.retry_tick = self._simulation.now

    def on_read_state(self, node_id: int, read_state: ReadState) -> None:
        client = self._reads.pop(read_state.request_id, None)
        if client is None or client.operation is None:
            return
        operation = client.operation
        operation.index = read_state.index
        self._maybe_serve(client, operation)

    def _maybe_serve(self, client: Client, operation: _Operation) -> None:
        driver = self._simulation.nodes[operation.node_id]
        if driver.applied_index < operation.index or driver.paused(self._simulation.now):
            return
        state_index = driver.applied_index
        if state_index < operation.must_see:
            raise self._simulation.checker.fail(
                "Linearizability",
                f"client {client.name}'s read of {operation.key} on node {operation.node_id}"
                f" saw the log up to {state_index}, but {operation.must_see} had completed"
                " before it began (stale read)",
            )
        if operation.plan is not None:
            assert operation.plan.spec is not None
            answer = range_answer(driver.kv, operation.plan.spec)
            self._complete(client, "ok", index=state_index, **answer)
            return
        self._complete(client, "ok", result=driver.kv.get(operation.key), index=state_index)

    def on_crash(self, node_id: int) -> None:
        for client in self.clients:
            operation = client.operation
            if operation is not None and operation.in_flight and operation.node_id == node_id:
                self._abandon_attempt(client, operation)  # the connection broke: ask again

    def finish(self) -> None:
        """The run is over: what is still in flight may or may not have happened."""
        for client in self.clients:
            operation = client.operation
            if operation is not None:
                self._give_up(client, operation)


class _ExecutionLedger(KVStore):
    """A replica of the store fed each index once, the first time any node applies it (in
    index order: see raftkv.sim.stale_reads), recording every session write it executes."""

    def __init__(self, simulation: Simulation) -> None:
        super().__init__(decode=simulation.decoder)
        self._simulation = simulation
        self._enabled = True
        self._last_index = 0
        self._executed_at: dict[tuple[str, int], int] = {}

    def first_applied(self, entry: Entry) -> None:
        if not self._enabled:
            return
        if entry.index != self._last_index + 1:
            self._enabled = False  # cannot happen; stop checking rather than guess
            return
        self._last_index = entry.index
        if entry.kind == EntryKind.NORMAL:
            self.apply(entry.index, entry.data)

    def execute(self, command: Command) -> Result:
        if command.client_id:
            write = (command.client_id, command.seq)
            first = self._executed_at.setdefault(write, self.applied_index)
            if first != self.applied_index:
                raise self._simulation.checker.fail(
                    "Client sessions",
                    f"{command.op} {command.key} of session {command.client_id} seq"
                    f" {command.seq} was executed at {first} and again at {self.applied_index}",
                )
        return super().execute(command)
