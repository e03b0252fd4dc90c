"""`make demo`: a real 3-node cluster on loopback with a scripted workload.

Starts three raft-node processes, waits for a leader, writes x=1, y=2, deletes x, sends a
burst of writes, SIGKILLs the leader and shows a new one take over with no acknowledged write
lost, restarts the old leader and shows it catch up, prints `raft-client status` and
`raft-client check`, and stops everything. Fixed seeds; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from raftkv.client import RaftClient

BIN = Path(sys.executable).parent
BURST_WRITES = 200
DEADLINE_SECONDS = 30
_pause = threading.Event()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids = [1, 2, 3]
        self.peer_ports = {n: free_port() for n in self.ids}
        self.client_ports = {n: free_port() for n in self.ids}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.environment = dict(
            os.environ,
            RAFT_CLUSTER=",".join(f"{n}=127.0.0.1:{self.client_ports[n]}" for n in self.ids),
        )

    def start(self, node_id: int, bootstrap: bool) -> None:
        command = [
            str(BIN / "raft-node"),
            "--id",
            str(node_id),
            "--data-dir",
            str(self.root / f"node-{node_id}"),
            "--listen",
            f"127.0.0.1:{self.peer_ports[node_id]}",
            "--client-listen",
            f"127.0.0.1:{self.client_ports[node_id]}",
            "--seed",
            str(node_id),
        ]
        if bootstrap:
            peers = ",".join(
                f"{n}=127.0.0.1:{self.peer_ports[n]}" for n in self.ids if n != node_id
            )
            command += ["--peers", peers]
        log = open(self.root / f"node-{node_id}.log", "ab")  # noqa: SIM115
        self.processes[node_id] = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()

    def client(self, *arguments: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "raft-client"), "--timeout", "5", *arguments],
            capture_output=True,
            text=True,
            env=self.environment,
            timeout=60,
        )
        if show:
            print(f"$ raft-client {' '.join(arguments)}")
            for line in (result.stdout + result.stderr).rstrip().splitlines():
                print(f"  {line}")
        return result

    def statuses(self) -> list[dict[str, object]]:
        result = self.client("status", "--json", show=False)
        if result.returncode != 0:
            return []
        return [s for s in json.loads(result.stdout) if isinstance(s, dict) and "role" in s]

    def wait_leader(self, exclude: int | None = None) -> int:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            for status in self.statuses():
                if status.get("role") == "leader" and status.get("id") != exclude:
                    return int(status["id"])  # type: ignore[call-overload]
            _pause.wait(0.05)
        raise SystemExit("demo: no leader within the deadline")

    def kill(self, node_id: int, signal_number: int) -> None:
        process = self.processes.get(node_id)
        if process is not None and process.poll() is None:
            process.send_signal(signal_number)
            process.wait(timeout=30)

    def stop_all(self) -> None:
        for node_id in self.ids:
            self.kill(node_id, signal.SIGTERM)
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="raftkv-demo-"))
    demo = Demo(root)
    try:
        print(f"== starting 3 nodes (data and logs in {root})")
        for node_id in demo.ids:
            demo.start(node_id, bootstrap=True)
        leader = demo.wait_leader()
        print(f"== leader elected: node{leader}")
        print("== scripted workload")
        demo.client("put", "x", "1")
        demo.client("put", "y", "2")
        demo.client("del", "x")
        demo.client("get", "y")
        print(f"== a burst of {BURST_WRITES} writes")
        acknowledged: dict[str, str] = {"y": "2"}
        addresses = {n: ("127.0.0.1", demo.client_ports[n]) for n in demo.ids}
        library = RaftClient(addresses, timeout=10)
        started = time.monotonic()
        for k in range(BURST_WRITES):
            key, value = f"key-{k % 50}", f"value-{k}"
            library.put(key, value)
            acknowledged[key] = value
            if (k + 1) % 50 == 0:
                rate = (k + 1) / (time.monotonic() - started)
                print(f"  {k + 1}/{BURST_WRITES} acknowledged ({rate:.0f} writes/s, one at a time)")
        print(f"== SIGKILL the leader, node{leader}")
        demo.kill(leader, signal.SIGKILL)
        killed_at = time.monotonic()
        new_leader = demo.wait_leader(exclude=leader)
        print(f"== node{new_leader} took over after {time.monotonic() - killed_at:.2f} s")
        demo.client("put", "after-failover", "yes")
        lost = [key for key, value in acknowledged.items() if library.get(key).value != value]
        library.close()
        print(
            f"== {len(acknowledged)} acknowledged keys checked on the new leader: "
            f"{'none lost' if not lost else f'LOST {lost}'}"
        )
        print(f"== restarting node{leader} (no flags needed: its data dir knows the cluster)")
        demo.start(leader, bootstrap=False)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            statuses = {s["id"]: s for s in demo.statuses()}
            rejoined = statuses.get(leader)
            leader_status = statuses.get(new_leader)
            if (
                rejoined
                and leader_status
                and rejoined["last_applied"] == leader_status["commit_index"]
            ):
                print(f"== node{leader} caught up to index {rejoined['last_applied']}")
                break
            _pause.wait(0.1)
        demo.client("status")
        check = demo.client("check")
        return 0 if check.returncode == 0 and not lost else 1
    finally:
        print("== stopping the cluster")
        demo.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
