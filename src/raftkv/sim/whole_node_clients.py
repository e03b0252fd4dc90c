"""The whole-node simulator's clients: key-value requests through a node's real HTTP
handlers (`ClientApi.handle`), with sessions, retries and leader hints as the client
libraries do, recorded for the linearizability check. Some gets become range reads and some
writes delete-ranges or transactions (multi_key_ops), through GET/DELETE /v1/kv and
POST /v1/txn."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from raftkv.check.history import Operation, OperationKind
from raftkv.sim.multi_key_ops import MultiKeyMix, MultiKeyPlan, RangeSpec, step_result

if TYPE_CHECKING:
    from raftkv.sim.whole_node import WholeNodeSimulation

KEYS = ("x", "y", "z")
# A client gives an attempt this long before it calls the outcome unknown and retries.
ATTEMPT_TIMEOUT_SECONDS = 1.0
# ...and an operation this long before it gives up on it.
OPERATION_TIMEOUT_SECONDS = 4 * ATTEMPT_TIMEOUT_SECONDS
THINK_SECONDS_MAX = 0.05
_METHODS = {"get": "GET", "put": "PUT", "del": "DELETE"}


class KvClient:
    """One client: one operation at a time, under its own session."""

    def __init__(
        self,
        simulation: WholeNodeSimulation,
        number: int,
        rng: random.Random,
        mix: MultiKeyMix | None = None,
    ) -> None:
        self.simulation = simulation
        self.number = number
        self.rng = rng
        self.mix = mix  # None: single-key operations only
        # What its transactions compare with: values it saw, where its puts landed.
        self.seen: dict[str, str] = {}
        self.mod_index: dict[str, int] = {}
        self.session = f"w{number}"
        self.seq = 0
        # A committed index this client knew before each write's first attempt: a server
        # that forgot the session runs the write only if it provably never ran (SPEC §3).
        self.seen_index = 0
        self.target = rng.choice(simulation.node_ids)
        # With follower reads, each read goes to a node drawn at random, as clients that
        # spread their reads over the members do; from a generator of its own, so that
        # without them every other draw is as before (the pinned seeds replay).
        self.read_rng = (
            random.Random(f"{simulation.options.seed}-reads-{number}")
            if simulation.options.follower_reads
            else None
        )

    def _first_target(self, reads: bool) -> int:
        """Where an operation's first attempt goes: the node the client follows, or for a
        read with follower reads on, any node."""
        if reads and self.read_rng is not None:
            return self.read_rng.choice(self.simulation.node_ids)
        return self.target

    async def run(self) -> None:
        simulation = self.simulation
        while simulation.issuing:
            await asyncio.sleep(self.rng.uniform(0.0, THINK_SECONDS_MAX))
            await self._one_operation()

    async def _one_operation(self) -> None:
        simulation, rng = self.simulation, self.rng
        key = rng.choice(KEYS)
        draw = rng.random()
        kind: OperationKind = "get" if draw < 0.4 else "del" if draw < 0.5 else "put"
        value = simulation.next_value(self.number) if kind == "put" else None
        plan = self._multi_key_plan(kind)
        if plan is not None:
            await self._multi_key_operation(plan)
            return
        handle = simulation.recorder.invoke(
            f"w{self.number}", kind, key, time=simulation.loop.time(), value=value
        )
        body: dict[str, object] = {}
        if kind != "get":
            self.seq += 1
            body = {"client_id": self.session, "seq": self.seq, "after_index": self.seen_index}
            if value is not None:
                body["value"] = value
        maybe_applied = False
        deadline = simulation.loop.time() + OPERATION_TIMEOUT_SECONDS
        target = self._first_target(kind == "get")
        while True:
            if simulation.loop.time() > deadline or not simulation.issuing:
                if maybe_applied:
                    simulation.complete(handle, "unknown")
                else:
                    simulation.complete(handle, "fail", error="timeout")
                return
            status, payload = await simulation.call(
                target, _METHODS[kind], f"/v1/kv/{key}", body, ATTEMPT_TIMEOUT_SECONDS
            )
            if status == 200:
                self.seen_index = max(self.seen_index, int(payload.get("index", 0)))
                result = payload.get("value") if kind == "get" else None
                simulation.complete(handle, "ok", result=result)
                self._saw(key, result if kind == "get" else value, kind, payload)
                return
            error = payload.get("error")
            if error == "not_found":
                self.seen_index = max(self.seen_index, int(payload.get("index", 0)))
                simulation.complete(handle, "ok", error="not_found")
                return
            if error == "session_expired":
                self.session, self.seq = f"{self.session}+", 0
                simulation.complete(handle, "unknown" if maybe_applied else "fail", error=error)
                return
            if error in (None, "timeout", "unreachable") or payload.get("outcome"):
                maybe_applied = maybe_applied or kind != "get"
            leader = payload.get("leader_id")
            self.target = leader if isinstance(leader, int) else rng.choice(simulation.node_ids)
            target = self.target
            await asyncio.sleep(rng.uniform(0.01, 0.05))

    def _saw(self, key: str, value: str | None, kind: str, payload: dict[str, Any]) -> None:
        if value is None:
            self.seen.pop(key, None)
        else:
            self.seen[key] = value
        if kind == "put":
            self.mod_index[key] = int(payload.get("index", 0))

    def _multi_key_plan(self, kind: OperationKind) -> MultiKeyPlan | None:
        """Maybe a range for a get, a delete-range or transaction for a write."""
        if self.mix is None:
            return None
        if kind == "get":
            return self.mix.read()
        simulation, number = self.simulation, self.number
        return self.mix.write(self.seen, self.mod_index, lambda: simulation.next_value(number))

    async def _multi_key_operation(self, plan: MultiKeyPlan) -> None:
        """A range, delete-range or transaction, retried as the single-key operations are."""
        simulation, rng = self.simulation, self.rng
        call = Operation(
            client=f"w{self.number}", op=plan.kind, call_time=simulation.loop.time(), **plan.fields
        )
        handle = simulation.recorder.invoke_operation(call)
        method, path, query, body = _request(plan)
        writes = plan.kind != "range"
        if writes:
            self.seq += 1
            body.update(client_id=self.session, seq=self.seq, after_index=self.seen_index)
        maybe_applied = False
        deadline = simulation.loop.time() + OPERATION_TIMEOUT_SECONDS
        target = self._first_target(not writes)
        while True:
            if simulation.loop.time() > deadline or not simulation.issuing:
                if maybe_applied:
                    simulation.complete(handle, "unknown")
                else:
                    simulation.complete(handle, "fail", error="timeout")
                return
            status, payload = await simulation.call(
                target, method, path, body, ATTEMPT_TIMEOUT_SECONDS, query
            )
            if status == 200:
                self.seen_index = max(self.seen_index, int(payload.get("index", 0)))
                simulation.complete(handle, "ok", **_answer(plan, payload))
                return
            error = payload.get("error")
            if error == "session_expired":
                self.session, self.seq = f"{self.session}+", 0
                simulation.complete(handle, "unknown" if maybe_applied else "fail", error=error)
                return
            if error in (None, "timeout", "unreachable") or payload.get("outcome"):
                maybe_applied = maybe_applied or writes
            leader = payload.get("leader_id")
            self.target = leader if isinstance(leader, int) else rng.choice(simulation.node_ids)
            target = self.target
            await asyncio.sleep(rng.uniform(0.01, 0.05))


def _range_query(fields: dict[str, Any]) -> dict[str, str]:
    spec = RangeSpec(**{name: fields.get(name) for name in ("prefix", "start", "end", "limit")})
    return {name: str(value) for name, value in spec.fields().items()}


def _request(plan: MultiKeyPlan) -> tuple[str, str, dict[str, str], dict[str, object]]:
    """The HTTP method, path, query and body of a multi-key operation (SPEC §6)."""
    if plan.kind == "range":
        return "GET", "/v1/kv", _range_query(plan.fields), {}
    if plan.kind == "delrange":
        return "DELETE", "/v1/kv", _range_query(plan.fields), {}
    body = {name: list(plan.fields[name]) for name in ("compare", "success", "failure")}
    return "POST", "/v1/txn", {}, dict(body)


def _answer(plan: MultiKeyPlan, payload: dict[str, Any]) -> dict[str, Any]:
    """The history fields of a multi-key operation's answer."""
    if plan.kind == "range":
        kvs = tuple((kv["key"], kv.get("value")) for kv in payload.get("kvs", ()))
        return {"kvs": kvs, "count": payload.get("count"), "more": payload.get("more")}
    if plan.kind == "delrange":
        return {"deleted": payload.get("deleted")}
    results = tuple(step_result(answer) for answer in payload.get("results", ()))
    return {"succeeded": payload.get("succeeded"), "results": results}


class LoadWriter:
    """Background load, outside the checked history: writes to a key of its own as fast as
    the cluster answers, so every node applies entries (and takes snapshots) all the time,
    as under real traffic, and a follower's own snapshot races the leader's InstallSnapshot.
    Its writes carry no session: what they do is never read back."""

    def __init__(self, simulation: WholeNodeSimulation, number: int, rng: random.Random) -> None:
        self.simulation = simulation
        self.key = f"load-{number}"
        self.rng = rng
        self.target = rng.choice(simulation.node_ids)
        self.count = 0

    async def run(self) -> None:
        simulation, rng = self.simulation, self.rng
        while simulation.issuing:
            await asyncio.sleep(rng.uniform(0.002, 0.01))
            self.count += 1
            status, payload = await simulation.call(
                self.target,
                "PUT",
                f"/v1/kv/{self.key}",
                {"value": str(self.count)},
                ATTEMPT_TIMEOUT_SECONDS,
            )
            if status != 200:
                leader = payload.get("leader_id")
                self.target = leader if isinstance(leader, int) else rng.choice(simulation.node_ids)
                await asyncio.sleep(rng.uniform(0.01, 0.05))
