"""Benchmark of the key-value API beyond single keys (not a test), on a real local 3-node
durable cluster (fsync on), driven with wrk:

- a range read of 10,000 keys (64-byte values; and keys only), linearizable, at C = 1:
  latency of the whole answer;
- transactions at C = 64 next to plain puts at C = 64, each request a new key: a txn
  compares the key's absence and puts it (`exists == false` → put), the write path plus
  the compare;

    .venv/bin/python bench/bench_kv_api.py [--seconds N] [--runs N]

Rows alternate (put, txn, put, txn, ...) and report medians, since this machine's speed
changes from minute to minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from raftkv.cli.bench import LocalCluster, http_json, run_wrk

RANGE_KEYS = 10_000
VALUE = "v" * 64
BATCH = 100  # puts per preload transaction (at most TXN_OPS_MAX)

PUT_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/put-" .. counter .. "-" .. math.random(1e9),
                    {["Content-Type"] = "application/json"}, '{"value":"0123456789abcdef"}')
end
"""

TXN_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local key = "txn-" .. counter .. "-" .. math.random(1e9)
  local body = '{"compare":[{"key":"' .. key .. '","target":"exists","op":"==","value":false}],'
    .. '"success":[{"op":"put","key":"' .. key .. '","value":"0123456789abcdef"}]}'
  return wrk.format("POST", "/v1/txn", {["Content-Type"] = "application/json"}, body)
end
"""


def preload(url: str) -> None:
    """RANGE_KEYS keys under `r/`, written in transactions of BATCH puts."""
    for first in range(0, RANGE_KEYS, BATCH):
        success = [
            {"op": "put", "key": f"r/{n:05d}", "value": VALUE}
            for n in range(first, min(RANGE_KEYS, first + BATCH))
        ]
        http_json(f"{url}/v1/txn", "POST", json.dumps({"success": success}).encode())
    answer = http_json(f"{url}/v1/kv?prefix=r/&limit=1&keys_only=true")
    assert isinstance(answer, dict) and answer["count"] == RANGE_KEYS, answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument("--runs", type=int, default=3, help="alternations of each row")
    arguments = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_kv_api needs wrk (apt-get install wrk)", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="raftkv-bench-kv-"))
    cluster = LocalCluster(root, [])
    try:
        cluster.start()
        url = cluster.leader_url()
        preload(url)
        scripts = {"put": root / "put.lua", "txn": root / "txn.lua"}
        scripts["put"].write_text(PUT_SCRIPT)
        scripts["txn"].write_text(TXN_SCRIPT)
        rows: dict[str, list[dict[str, float]]] = {}
        ranges = {
            "range 10,000 keys": f"{url}/v1/kv?prefix=r/&limit={RANGE_KEYS}",
            "range 10,000 keys_only": f"{url}/v1/kv?prefix=r/&limit={RANGE_KEYS}&keys_only=true",
        }
        for _ in range(arguments.runs):
            for name, range_url in ranges.items():
                rows.setdefault(f"{name} C=1", []).append(
                    run_wrk(range_url, 1, arguments.seconds, None)
                )
            for kind, script in scripts.items():
                rows.setdefault(f"{kind} C=64", []).append(
                    run_wrk(url, 64, arguments.seconds, script)
                )
        print(f"medians of {arguments.runs} alternating runs of {arguments.seconds} s")
        print(f"{'row':<30}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for name, results in rows.items():

            def median(field: str, results: list[dict[str, float]] = results) -> float:
                return statistics.median(result[field] for result in results)

            print(
                f"{name:<30}{median('rate'):>10.0f}{median('p50_ms'):>9.2f}"
                f"{median('p99_ms'):>9.2f}{median('errors'):>8.0f}"
            )
        return 0
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
