"""Benchmark of the client port's HTTP layer alone (not a test): what one request costs the
node's process, for raft-node's own server (`raftkv.server.http_server`) next to aiohttp's
web server (still a dependency: the asyncio client uses it) doing the same work.

Each server runs in its own process on uvloop, answering `PUT /v1/kv/{key}` with a JSON body
by decoding the body and encoding a small JSON answer — the HTTP part of a write, without
Raft. wrk drives it over 64 kept-alive connections; the server process's CPU time (from
/proc) divided by the requests answered gives CPU µs per request, which is what limits a
node on a machine whose cores are shared with other nodes and clients:

    .venv/bin/python bench/bench_http.py [--seconds N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVERS = ("raftkv", "aiohttp")
CONNECTIONS = 64
STARTUP_DEADLINE_SECONDS = 10.0
PUT_SCRIPT = """
wrk.method = "PUT"
wrk.body = '{"value":"0123456789abcdef"}'
wrk.headers["Content-Type"] = "application/json"
"""


def serve(kind: str, port: int) -> None:
    import msgspec
    import uvloop

    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder().decode
    answer = {"ok": True, "leader": 1, "index": 0}

    async def main() -> None:
        if kind == "raftkv":
            from raftkv.server.http_server import HttpServer, Request, Response

            async def handle(request: Request) -> Response:
                decode(request.body)
                return Response(200, encode(answer))

            server = HttpServer(handle, body_bytes_max=1 << 20)
            await server.start("127.0.0.1", port)
        else:
            from aiohttp import web

            async def put(request: web.Request) -> web.Response:
                decode(await request.read())
                return web.Response(body=encode(answer), content_type="application/json")

            app = web.Application(client_max_size=1 << 20)
            app.router.add_put("/v1/kv/{key:.+}", put)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()  # until the benchmark kills this process

    uvloop.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server on port {port} did not start") from None
            time.sleep(0.05)


def measure(kind: str, seconds: int, script: Path) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) for one run."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/v1/kv/key"
        before = cpu_seconds(server.pid)
        output = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
        cpu = cpu_seconds(server.pid) - before
    finally:
        server.kill()
        server.wait()
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not requests or not rate:
        raise SystemExit(f"could not read wrk's output:\n{output}")
    return float(rate.group(1)), 1e6 * cpu / int(requests.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve[0], int(arguments.serve[1]))
        return 0
    if shutil.which("wrk") is None:
        print("bench_http needs wrk (apt-get install wrk)", file=sys.stderr)
        return 1
    script = Path(tempfile.mkdtemp(prefix="raftkv-bench-http-")) / "put.lua"
    script.write_text(PUT_SCRIPT)
    print(f"PUT with a JSON body, {CONNECTIONS} connections, medians of {arguments.runs} runs")
    print(f"{'server':<10}{'requests/s':>12}{'CPU us/request':>16}")
    # Interleaved, so a noisy moment on the machine falls on both servers alike.
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in SERVERS}
    for _ in range(arguments.runs):
        for kind in SERVERS:
            results[kind].append(measure(kind, arguments.seconds, script))
    for kind in SERVERS:
        rate = statistics.median(r for r, _ in results[kind])
        cost = statistics.median(c for _, c in results[kind])
        print(f"{kind:<10}{rate:>12,.0f}{cost:>16.1f}")
    shutil.rmtree(script.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
