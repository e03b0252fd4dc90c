"""The clients of a chaos run: each a sequential process doing put/get/cas/del on a few keys,
recording every call and its outcome with wall time (check/recorder.py), so the checker can
judge the history and the report can plot it."""

from __future__ import annotations

import random
import threading
import time

from raftkv.check import HistoryRecorder
from raftkv.check.history import OperationKind, Status
from raftkv.client import AsyncRaftClient
from raftkv.client.errors import CasFailed, NotFound, RequestError

KEYS = ("k0", "k1", "k2")
# Short enough that a call stuck on a paused or cut-off node gives up within a fault, so
# the clients keep making progress (and indeterminate calls show as such).
CLIENT_TIMEOUT_SECONDS = 2.0
OPERATION_WEIGHTS: dict[OperationKind, int] = {"get": 4, "put": 4, "cas": 2, "del": 1}


async def client_process(
    name: str,
    addresses: dict[int, tuple[str, int]],
    recorder: HistoryRecorder,
    rng: random.Random,
    stop: threading.Event,
    read_from: str = "leader",
) -> None:
    """One client: a call at a time until `stop` (set from another thread); `read_from`:
    the client library's (`any`: its reads first ask a member drawn at random)."""
    async with AsyncRaftClient(
        addresses,
        timeout=CLIENT_TIMEOUT_SECONDS,
        read_from=read_from,
        rng=random.Random(f"{name}-client"),
    ) as client:
        counter = 0
        while not stop.is_set():
            counter += 1
            kind = rng.choices(list(OPERATION_WEIGHTS), list(OPERATION_WEIGHTS.values()))[0]
            # cas expects a value some client may have written, so some succeed.
            expected = f"c{rng.randrange(4)}-{rng.randrange(1, counter + 1)}"
            await perform(
                client, recorder, name, kind, rng.choice(KEYS), f"{name}-{counter}", expected
            )


async def perform(
    client: AsyncRaftClient,
    recorder: HistoryRecorder,
    name: str,
    kind: OperationKind,
    key: str,
    value: str,
    expected: str,
) -> None:
    """One call, recorded: ok (took effect, with what it saw), fail (certainly no effect) or
    unknown (timed out: a write may still take effect)."""
    handle = recorder.invoke(
        name,
        kind,
        key,
        time=time.time(),
        value=value if kind in ("put", "cas") else None,
        if_value=expected if kind == "cas" else None,
    )
    try:
        if kind == "get":
            try:
                read = await client.get(key)
                recorder.complete(handle, "ok", time=time.time(), result=read.value)
            except NotFound:
                recorder.complete(handle, "ok", time=time.time(), result=None)
        elif kind == "put":
            await client.put(key, value)
            recorder.complete(handle, "ok", time=time.time())
        elif kind == "cas":
            try:
                await client.cas(key, expected, value)
                recorder.complete(handle, "ok", time=time.time())
            except CasFailed as failed:
                current = failed.payload.get("current")
                recorder.complete(
                    handle,
                    "ok",
                    time=time.time(),
                    error="cas_failed",
                    current=current if isinstance(current, str) else None,
                )
        else:
            try:
                await client.delete(key)
                recorder.complete(handle, "ok", time=time.time())
            except NotFound:
                recorder.complete(handle, "ok", time=time.time(), error="not_found")
    except RequestError:
        # A read that failed had no effect; a write may or may not have. An unknown's
        # return time is when the client gave up (the report plots it); the checker lets
        # its effect fall anywhere after the call.
        status: Status = "fail" if kind == "get" else "unknown"
        recorder.complete(handle, status, time=time.time())


async def final_reads(
    addresses: dict[int, tuple[str, int]], recorder: HistoryRecorder, attempts: int = 10
) -> dict[str, str | None]:
    """After healing, read every key (retrying a read that fails), recorded like the rest."""
    values: dict[str, str | None] = {}
    async with AsyncRaftClient(addresses, timeout=CLIENT_TIMEOUT_SECONDS * 2) as client:
        for key in KEYS:
            for _ in range(attempts):
                before = len(recorder.history().operations)
                await perform(client, recorder, "final", "get", key, "", "")
                operation = recorder.history().operations[before]
                if operation.status == "ok":
                    values[key] = operation.result
                    break
    return values
