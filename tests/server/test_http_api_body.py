"""The body allowance (SPEC §6): a value (and an `if_value`) within the value limit is
accepted however JSON encodes it — newlines as `\\n`, control characters or anything else as
`\\uXXXX` — over a real HttpServer, as the node runs it; a value over the limit is still
`too_large`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from raftkv.client.protocol import put_request
from raftkv.kv import KVStore
from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import HttpServer

from .test_http_api_sessions import FakeServer

VALUE_MAX = 100_000
DEADLINE = 10.0


@dataclass(frozen=True)
class Session:
    client_id: str = "c"
    seq: int = 1
    after_index: int = 0


def escaped(text: str) -> str:
    """`text` as a JSON string with every character written as \\uXXXX (6 bytes each)."""
    return '"' + "".join(f"\\u{ord(c):04x}" for c in text) + '"'


async def send(port: int, body: bytes) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = b"PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
        writer.write(head + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        length = int(status_line.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answer = await asyncio.wait_for(reader.readexactly(length), DEADLINE)
        return int(status_line.split()[1]), json.loads(answer)
    finally:
        writer.close()


def run_put(body: bytes) -> tuple[int, dict[str, object], FakeServer]:
    async def main() -> tuple[int, dict[str, object], FakeServer]:
        backend = FakeServer(KVStore())
        api = ClientApi(backend, value_bytes_max=VALUE_MAX)
        server = HttpServer(api.handle, body_bytes_max=api.body_bytes_max)
        await server.start("127.0.0.1", 0)
        try:
            status, answer = await send(server.port, body)
        finally:
            await server.close(grace_seconds=1.0)
        return status, answer, backend

    return asyncio.run(main())


@pytest.mark.parametrize(
    "value", ["\n" * VALUE_MAX, "\x01" * VALUE_MAX, "\u2028" * (VALUE_MAX // 3)]
)
def test_a_value_within_the_limit_is_accepted_as_the_client_encodes_it(value: str) -> None:
    status, answer, backend = run_put(put_request("k", value, Session()).body or b"")
    assert (status, answer.get("ok")) == (200, True), answer
    assert backend.requests.store.get("k") == value


def test_a_value_and_if_value_at_the_limit_are_accepted_whatever_their_escaping() -> None:
    value, if_value = "a" * VALUE_MAX, "b" * VALUE_MAX
    session = '"client_id":"c","seq":1,"after_index":0'
    body = f'{{"value":{escaped(value)},"if_value":{escaped(if_value)},{session}}}'
    status, answer, backend = run_put(body.encode())
    assert (status, answer["error"]) == (409, "cas_failed"), answer  # read, decoded, applied
    assert backend.requests.index == 1


def test_a_value_over_the_limit_is_still_too_large() -> None:
    status, answer, backend = run_put(
        put_request("k", "x" * (VALUE_MAX + 1), Session()).body or b""
    )
    assert (status, answer["error"]) == (413, "too_large")
    assert backend.requests.index == 0
