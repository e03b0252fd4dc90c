"""`raft-bench --compare etcd`: raftkv and etcd side by side, in one run, alternating.

This machine's speed changes from day to day (an fdatasync took ~118 µs one day and
200-245 µs another), so a comparison is only valid between runs made together: both
3-member clusters run at once (each durable: raftkv fsyncs before acknowledging, etcd
always does), and every measurement is taken on both, alternating which goes first from
one repetition to the next, so a slow minute costs both alike. Each row prints the median
of the repetitions and the ratio raftkv / etcd.

etcd is driven through its JSON gateway (`POST /v3/kv/put`, `POST /v3/kv/range`, keys and
values base64-encoded, as the gateway wants), with the same wrk and the same request
shapes: writes of 16-byte values to a new key per request, and linearizable reads of one
key (etcd's default range is linearizable, as raftkv's GET is).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from raftkv.cli.bench import Measure, preload_in_rounds, stop_processes
from raftkv.cli.bench_breakdown import cpu_seconds
from raftkv.cli.bench_stalls import StallLogs

ETCD_STARTUP_SECONDS = 30
_pause = threading.Event()

# Keys and values are base64 in etcd's JSON gateway; wrk's LuaJIT has no base64, hence this.
LUA_BASE64 = """
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return alphabet:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
"""

# A new key per request, in both systems; each run numbers its keys from its own START, so
# a repetition never overwrites an earlier one's keys.
RAFTKV_NEW_KEY_SCRIPT = """
counter = START
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/k" .. counter,
                    {["Content-Type"] = "application/json"}, '{"value":"VALUE"}')
end
"""

ETCD_NEW_KEY_SCRIPT = (
    LUA_BASE64
    + """
counter = START
local value = b64("VALUE")
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"},
                    '{"key":"' .. b64("k" .. counter) .. '","value":"' .. value .. '"}')
end
"""
)

# The same with a value given already encoded (a large one: LuaJIT's gsub over a MB is slow).
ETCD_NEW_KEY_ENCODED_VALUE_SCRIPT = (
    LUA_BASE64
    + """
counter = START
local value = "ENCODED"
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"},
                    '{"key":"' .. b64("k" .. counter) .. '","value":"' .. value .. '"}')
end
"""
)

ETCD_READ_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"KEY"}'
"""

# The rows "... all members": wrk runs a thread per member, each connected to its own
# member (its share of the connections), as clients that spread over a cluster's members.
SPREAD_SCRIPT = """
local member_ports = {PORTS}
local threads_set_up = 0
setup = function(thread)
  threads_set_up = threads_set_up + 1
  local port = member_ports[(threads_set_up - 1) % #member_ports + 1]
  thread.addr = wrk.lookup("127.0.0.1", tostring(port))[1]
end
"""

# Preloading: keys preload-0 .. preload-(N-1), VALUE_BYTES bytes each.
ETCD_PRELOAD_SCRIPT = (
    LUA_BASE64
    + """
counter = START - 1
local value = b64(string.rep("v", VALUE_BYTES))
request = function()
  counter = counter + 1
  local key = b64("preload-" .. (counter % KEYS))
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"},
                    '{"key":"' .. key .. '","value":"' .. value .. '"}')
end
"""
)

VALUE = "0123456789abcdef"  # 16 bytes, as the table
# The large-value row: 1 MB values (under both systems' default request limits: raftkv's
# 1 MiB value, etcd's 1.5 MiB request with the value base64-encoded) from 4 connections.
LARGE_VALUE_BYTES = 1_000_000
LARGE_VALUE_CONNECTIONS = 4
READ_KEY = "bench-key"


def _post_json(url: str, body: object) -> object:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class EtcdCluster:
    """`members` etcd members on loopback, each with its own data dir under `root`."""

    def __init__(self, root: Path, ports: Callable[[], int], members: int = 3) -> None:
        self.root = root
        self.names = [f"m{n}" for n in range(1, members + 1)]
        self.client_ports = {name: ports() for name in self.names}
        self.peer_ports = {name: ports() for name in self.names}
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        initial = ",".join(
            f"{name}=http://127.0.0.1:{self.peer_ports[name]}" for name in self.names
        )
        # A token of its own: members of another cluster with the same names never join.
        token = "raftkv-bench-" + secrets.token_hex(4)
        for name in self.names:
            client_url = f"http://127.0.0.1:{self.client_ports[name]}"
            peer_url = f"http://127.0.0.1:{self.peer_ports[name]}"
            command = [
                "etcd",
                "--name", name,
                "--data-dir", str(self.root / f"etcd-{name}"),
                "--listen-client-urls", client_url,
                "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url,
                "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", initial,
                "--initial-cluster-token", token,
                "--initial-cluster-state", "new",
                "--log-level", "error",
            ]  # fmt: skip
            log = open(self.root / f"etcd-{name}.log", "ab")  # noqa: SIM115
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=log))
            log.close()

    def leader_url(self) -> str:
        """The client URL of the member that leads (etcd's gateway forwards writes from a
        follower, but each hop is latency, so both systems are driven at their leader)."""
        deadline = time.monotonic() + ETCD_STARTUP_SECONDS
        while time.monotonic() < deadline:
            for name in self.names:
                url = f"http://127.0.0.1:{self.client_ports[name]}"
                try:
                    status = _post_json(url + "/v3/maintenance/status", {})
                except OSError:
                    continue
                if not isinstance(status, dict):
                    continue
                header = status.get("header", {})
                if status.get("leader") and status.get("leader") == header.get("member_id"):
                    return url
            _pause.wait(0.05)
        raise SystemExit("raft-bench: etcd elected no leader (see its logs in the bench dir)")

    def put(self, url: str, key: str, value: str) -> None:
        _post_json(
            url + "/v3/kv/put",
            {"key": _b64(key), "value": _b64(value)},
        )

    def stop(self) -> None:
        stop_processes(self.processes)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_available() -> str | None:
    """Why etcd cannot be compared against, or None."""
    if shutil.which("etcd") is None:
        return "raft-bench --compare etcd needs etcd on PATH (Debian: apt-get install etcd-server)"
    return None


@dataclass(frozen=True)
class Workload:
    """One row: a name, wrk's connections, and per system the URL and the Lua script."""

    name: str
    connections: int
    raftkv: tuple[str, str | None]
    etcd: tuple[str, str | None]
    threads: int = 1  # wrk's; the connections are shared among them


def spread_script(ports: Sequence[int]) -> str:
    """A wrk script whose threads each connect to one of `ports` (on 127.0.0.1)."""
    return SPREAD_SCRIPT.replace("PORTS", ", ".join(str(port) for port in ports))


def workloads(
    raftkv_url: str,
    etcd_url: str,
    raftkv_ports: Sequence[int] = (),
    etcd_ports: Sequence[int] = (),
) -> list[Workload]:
    """The rows; with both clusters' client ports, also linearizable reads spread over
    every member (a follower asks its leader for the read index, in both systems)."""
    write_raftkv = RAFTKV_NEW_KEY_SCRIPT.replace("VALUE", VALUE)
    write_etcd = ETCD_NEW_KEY_SCRIPT.replace("VALUE", VALUE)
    read_etcd = ETCD_READ_SCRIPT.replace("KEY", _b64(READ_KEY))
    rows = [
        Workload(f"write C={c}", c, (raftkv_url, write_raftkv), (etcd_url, write_etcd))
        for c in (1, 16, 64)
    ]
    large = "v" * LARGE_VALUE_BYTES
    rows.append(
        Workload(
            f"write 1 MB C={LARGE_VALUE_CONNECTIONS}",
            LARGE_VALUE_CONNECTIONS,
            (raftkv_url, RAFTKV_NEW_KEY_SCRIPT.replace("VALUE", large)),
            (etcd_url, ETCD_NEW_KEY_ENCODED_VALUE_SCRIPT.replace("ENCODED", _b64(large))),
        )
    )
    rows += [
        Workload(
            f"read linearizable C={c}",
            c,
            (f"{raftkv_url}/v1/kv/{READ_KEY}", None),
            (f"{etcd_url}/v3/kv/range", read_etcd),
        )
        for c in (1, 64)
    ]
    if raftkv_ports and etcd_ports:
        connections = 64
        rows.append(
            Workload(
                f"read linearizable C={connections} all members",
                connections,
                (f"{raftkv_url}/v1/kv/{READ_KEY}", spread_script(raftkv_ports)),
                (f"{etcd_url}/v3/kv/range", spread_script(etcd_ports) + read_etcd),
                threads=len(raftkv_ports),
            )
        )
    return rows


def select_rows(rows: Sequence[Workload], wanted: str | None) -> list[Workload]:
    """The rows named in `wanted` (comma-separated row names, as the report prints them:
    "write C=64,read linearizable C=64"), in their usual order; all when it is None."""
    if wanted is None:
        return list(rows)
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    known = {row.name for row in rows}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        choices = ", ".join(repr(row.name) for row in rows)
        raise SystemExit(f"raft-bench: no row {', '.join(map(repr, unknown))}; rows: {choices}")
    return [row for row in rows if row.name in names]


def compare(
    rows: Sequence[Workload],
    measure: Measure,
    root: Path,
    *,
    seconds: float,
    repetitions: int,
    processes: Mapping[str, Callable[[], Sequence[int]]] | None = None,
    raftkv_stalls: StallLogs | None = None,
) -> list[tuple[Workload, dict[str, float], dict[str, float]]]:
    """Every row on both systems, `repetitions` times, alternating which goes first; the
    medians of each figure per system. `processes`: per system, the ids of its members'
    processes, whose CPU time each measurement adds up (`with_cpu`). `raftkv_stalls`: the
    raftkv nodes' logs, whose stall warnings each raftkv measurement takes for its row."""
    results = []
    for number, row in enumerate(rows):
        runs: dict[str, list[dict[str, float]]] = {"raftkv": [], "etcd": []}
        for repetition in range(repetitions):
            order = ("raftkv", "etcd") if repetition % 2 == 0 else ("etcd", "raftkv")
            for system in order:
                url, script_text = getattr(row, system)
                script = None
                if script_text is not None:
                    script = root / f"row{number}-{repetition}-{system}.lua"
                    start = (number * 1000 + repetition) * 10**9
                    script.write_text(script_text.replace("START", str(start)))
                members = processes[system]() if processes is not None else ()
                stalls = raftkv_stalls if system == "raftkv" else None
                if stalls is not None:
                    stalls.skip()
                before = members_cpu_seconds(members)
                result = measure(url, row.connections, seconds, script, row.threads)
                used = members_cpu_seconds(members) - before
                if stalls is not None:
                    stalls.take(row.name)
                runs[system].append(with_cpu(result, used))
        results.append((row, _medians(runs["raftkv"]), _medians(runs["etcd"])))
    return results


def members_cpu_seconds(pids: Sequence[int]) -> float:
    """The CPU time the processes `pids` used so far, added up; NaN when there are none or
    one is gone (a member that died mid-row has no meaningful share)."""
    if not pids:
        return float("nan")
    try:
        return sum(cpu_seconds(pid) for pid in pids)
    except OSError:
        return float("nan")


def with_cpu(result: dict[str, float], members_seconds: float) -> dict[str, float]:
    """`result` (one wrk run) with what the requests cost in CPU: µs per request of the
    system's members (`members_cpu_us`) and of wrk (`wrk_cpu_us`), and the cores the two
    kept busy (`cores`). Both systems share this machine's cores with wrk, so when both
    are CPU-bound their ratio of requests per second is their inverse ratio of CPU per
    request: this says how far a row is from the machine's limit, and what it spent."""
    nan = float("nan")
    requests = result.get("requests", 0.0)
    wrk_seconds = result.get("wrk_cpu_seconds", nan)
    elapsed = result.get("seconds", nan)
    per_request = 1e6 / requests if requests else nan
    return {
        **result,
        "members_cpu_us": members_seconds * per_request,
        "wrk_cpu_us": wrk_seconds * per_request,
        "cores": (members_seconds + wrk_seconds) / elapsed if elapsed else nan,
    }


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def preload_etcd(url: str, keys: int, value_bytes: int, measure: Measure, root: Path) -> None:
    """Write the keys preload-0 .. preload-(keys-1), `value_bytes` bytes each."""
    script = ETCD_PRELOAD_SCRIPT.replace("VALUE_BYTES", str(value_bytes)).replace("KEYS", str(keys))
    preload_in_rounds(url, keys, script, root / "etcd-preload.lua", measure)


def _name_width(results: list[tuple[Workload, dict[str, float], dict[str, float]]]) -> int:
    """The first column's width: 26, or wider for a longer row name."""
    return max([26, *(len(row.name) + 2 for row, _, _ in results)])


def report(results: list[tuple[Workload, dict[str, float], dict[str, float]]]) -> str:
    width = _name_width(results)
    lines = [
        f"{'operation':<{width}}{'raftkv/s':>10}{'etcd/s':>10}{'ratio':>8}"
        f"{'p50 ms raftkv/etcd':>22}{'p99 ms raftkv/etcd':>22}{'errors':>10}"
        f"{'p99.9 ms raftkv/etcd':>24}"
    ]
    for row, ours, theirs in results:
        ratio = ours["rate"] / theirs["rate"] if theirs["rate"] else float("nan")
        p50 = f"{ours['p50_ms']:.2f} / {theirs['p50_ms']:.2f}"
        p99 = f"{ours['p99_ms']:.2f} / {theirs['p99_ms']:.2f}"
        errors = f"{ours['errors']:.0f}/{theirs['errors']:.0f}"
        nan = float("nan")
        p999 = f"{ours.get('p999_ms', nan):.2f} / {theirs.get('p999_ms', nan):.2f}"
        lines.append(
            f"{row.name:<{width}}{ours['rate']:>10.0f}{theirs['rate']:>10.0f}{ratio:>7.2f}x"
            f"{p50:>22}{p99:>22}{errors:>10}{p999:>24}"
        )
    return "\n".join(lines)


def cpu_report(results: list[tuple[Workload, dict[str, float], dict[str, float]]]) -> str:
    """What each row cost in CPU (`with_cpu`), a table of its own under `report`'s."""
    width = _name_width(results)
    lines = [
        "CPU per request: user + system time of each system's members and of wrk (the load"
        " generator), and the cores they kept busy",
        f"{'operation':<{width}}{'µs/req raftkv/etcd':>22}{'etcd/raftkv':>13}"
        f"{'members µs raftkv/etcd':>26}{'wrk µs raftkv/etcd':>22}{'cores raftkv/etcd':>21}",
    ]
    nan = float("nan")
    for row, ours, theirs in results:
        total = [
            side.get("members_cpu_us", nan) + side.get("wrk_cpu_us", nan) for side in (ours, theirs)
        ]
        ratio = total[1] / total[0] if total[0] else nan
        members = f"{ours.get('members_cpu_us', nan):.0f} / {theirs.get('members_cpu_us', nan):.0f}"
        wrk = f"{ours.get('wrk_cpu_us', nan):.0f} / {theirs.get('wrk_cpu_us', nan):.0f}"
        cores = f"{ours.get('cores', nan):.2f} / {theirs.get('cores', nan):.2f}"
        lines.append(
            f"{row.name:<{width}}{f'{total[0]:.0f} / {total[1]:.0f}':>22}{ratio:>12.2f}x"
            f"{members:>26}{wrk:>22}{cores:>21}"
        )
    return "\n".join(lines)
