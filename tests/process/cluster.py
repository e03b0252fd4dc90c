"""Real raft-node processes on loopback for end-to-end tests: free ports, a temporary data
dir per node, and every process killed by pid at the end, even when a test fails."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

BIN = Path(sys.executable).parent
POLL_SECONDS = 0.05
_pause = threading.Event()  # never set: `wait` is an interruptible pause between polls


# Ports handed out by this process: the kernel may give a just-released port again, and
# two nodes of one cluster once got the same one (about 1 cluster in 700).
_ports_given: set[int] = set()
# Ports are drawn below the kernel's ephemeral range, a slice for each pytest-xdist worker:
# a port the kernel handed to bind(0) was free only until a node started, and meanwhile any
# connection's source port, or another worker's node, could take it (a node of
# test_damaged_snapshot once failed to start, "address already in use").
PORTS_FIRST = 10_000
WORKER_SLICES = 8


def _port_slice() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            ephemeral_first = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_first = PORTS_FIRST  # unknown: no slice, bind(0) as before
    width = (ephemeral_first - PORTS_FIRST) // WORKER_SLICES
    if width < 100:
        return range(0)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = PORTS_FIRST + width * (int(worker) % WORKER_SLICES if worker.isdigit() else 0)
    return range(first, first + width)


_slice = _port_slice()
_next_in_slice = 0


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    global _next_in_slice
    # Through this worker's slice in order (a port once given is not given again); bind(0)
    # when the slice is used up or the machine's ephemeral range leaves none.
    while _next_in_slice < len(_slice):
        port = _slice[_next_in_slice]
        _next_in_slice += 1
        if port not in _ports_given and _bindable(port):
            _ports_given.add(port)
            return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_for(condition: Callable[[], T | None], timeout: float, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # a node may be restarting; keep polling
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {last_error}")
        _pause.wait(POLL_SECONDS)


class NodeProcess:
    def __init__(self, node_id: int, root: Path, peer_host: str = "127.0.0.1") -> None:
        self.id = node_id
        self.peer_host = peer_host
        self.peer_port = free_port()
        self.client_port = free_port()
        self.data_dir = root / f"node-{node_id}"
        self.log_path = root / f"node-{node_id}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def peer_address(self) -> tuple[str, int]:
        return self.peer_host, self.peer_port

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ProcessCluster:
    def __init__(
        self,
        root: Path,
        node_ids: Iterable[int] = (1, 2, 3),
        extra_args: Iterable[str] = (),
        peer_hosts: Callable[[int], str] | None = None,
        peer_route: Callable[[int, NodeProcess], tuple[str, int]] | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        """`peer_route(sender, receiver)`: the address `sender` is told (in `--peers`) that
        `receiver` lives at; by default the receiver's own. Link proxies are put in with it.
        `client_tls`: the nodes serve HTTPS, and `request` uses this context."""
        self.root = root
        self._peer_hosts = peer_hosts or (lambda node_id: "127.0.0.1")
        self._peer_route = peer_route or (lambda sender, receiver: receiver.peer_address)
        self.nodes = {
            node_id: NodeProcess(node_id, root, self._peer_hosts(node_id)) for node_id in node_ids
        }
        self.extra_args = list(extra_args)
        # Sent with every request of `request` (an Authorization header, on a cluster
        # started with --auth-tokens).
        self.headers: dict[str, str] = {}
        self.client_tls = client_tls
        self._connections: dict[int, http.client.HTTPConnection] = {}

    # --- processes ----------------------------------------------------------------------
    def peers_argument(self, exclude: int) -> str:
        """The `--peers` of node `exclude`: every other node, at the address it should dial."""
        routes = {
            n.id: self._peer_route(exclude, n) for n in self.nodes.values() if n.id != exclude
        }
        return ",".join(f"{node_id}={host}:{port}" for node_id, (host, port) in routes.items())

    def peers_argument_among(self, node_id: int, members: Iterable[int]) -> str:
        return ",".join(f"{n}=127.0.0.1:{self.nodes[n].peer_port}" for n in members if n != node_id)

    def cluster_argument_among(self, members: Iterable[int]) -> str:
        return ",".join(f"{n}=127.0.0.1:{self.nodes[n].client_port}" for n in members)

    def cluster_argument(self) -> str:
        return ",".join(f"{n.id}=127.0.0.1:{n.client_port}" for n in self.nodes.values())

    def start(self, node_id: int, *arguments: str, bootstrap: bool = True) -> NodeProcess:
        node = self.nodes[node_id]
        command = [
            str(BIN / "raft-node"),
            "--id",
            str(node_id),
            "--data-dir",
            str(node.data_dir),
            "--listen",
            f"{node.peer_host}:{node.peer_port}",
            "--client-listen",
            f"127.0.0.1:{node.client_port}",
            "--seed",
            str(node_id),
            *self.extra_args,
            *arguments,
        ]
        if bootstrap and "--join" not in arguments:
            command += ["--peers", self.peers_argument(node_id)]
        log = open(node.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        node.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._connections.pop(node_id, None)
        return node

    def start_all(self) -> None:
        for node_id in self.nodes:
            self.start(node_id)

    def kill(self, node_id: int, signal_number: int = signal.SIGKILL) -> None:
        node = self.nodes[node_id]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal_number)
            node.process.wait(timeout=30)
        self._connections.pop(node_id, None)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=30)
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def add_node(self, node_id: int) -> NodeProcess:
        self.nodes[node_id] = NodeProcess(node_id, self.root, self._peer_hosts(node_id))
        return self.nodes[node_id]

    def log_text(self, node_id: int) -> str:
        path = self.nodes[node_id].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    # --- HTTP ---------------------------------------------------------------------------
    def request(
        self, node_id: int, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        node = self.nodes[node_id]
        connection = self._connections.get(node_id)
        if connection is None:
            if self.client_tls is not None:
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", node.client_port, timeout=10, context=self.client_tls
                )
            else:
                connection = http.client.HTTPConnection("127.0.0.1", node.client_port, timeout=10)
            self._connections[node_id] = connection
        payload = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        )
        try:
            connection.request(method, path, body=payload, headers=self.headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self._connections.pop(node_id, None)
            raise
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data.decode(errors="replace")

    def status(self, node_id: int) -> dict[str, Any]:
        code, body = self.request(node_id, "GET", "/v1/status")
        assert code == 200, body
        return dict(body)

    def leader(self, among: Iterable[int] | None = None) -> int | None:
        candidates = list(among) if among is not None else list(self.nodes)
        for node_id in candidates:
            if not self.nodes[node_id].alive:
                continue
            try:
                status = self.status(node_id)
            except (OSError, http.client.HTTPException, AssertionError):
                continue
            if status["role"] == "leader":
                return node_id
        return None

    def wait_leader(self, timeout: float = 20, among: Iterable[int] | None = None) -> int:
        ids = list(among) if among is not None else None
        return wait_for(lambda: self.leader(ids), timeout, "a leader")

    def wait_settled(self, timeout: float = 20) -> int:
        """Waits until every node answers on its client port and names one same leader: a
        leader known to two nodes says nothing of a third that is still starting."""

        def agreed() -> int | None:
            try:
                leaders = {self.status(node_id)["leader"] for node_id in self.nodes}
            except (OSError, http.client.HTTPException, AssertionError):
                return None
            (leader,) = leaders if len(leaders) == 1 else (None,)
            return leader if isinstance(leader, int) else None

        return wait_for(agreed, timeout, "every node answering with one leader")

    def put(self, key: str, value: str, **extra: Any) -> tuple[int, Any]:
        leader = self.wait_leader()
        return self.request(leader, "PUT", f"/v1/kv/{key}", {"value": value, **extra})

    def put_until_ok(self, key: str, value: str, timeout: float = 20, **extra: Any) -> Any:
        def attempt() -> Any:
            leader = self.leader()
            if leader is None:
                return None
            code, body = self.request(leader, "PUT", f"/v1/kv/{key}", {"value": value, **extra})
            return body if code == 200 else None

        return wait_for(attempt, timeout, f"put {key}={value}")

    # --- raft-client --------------------------------------------------------------------
    def client(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        environment = dict(os.environ, RAFT_CLUSTER=self.cluster_argument())
        return subprocess.run(
            [str(BIN / "raft-client"), *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )


@contextlib.contextmanager
def started_cluster(root: Path) -> Iterator[ProcessCluster]:
    """A 3-node cluster under `root`, every node up and agreeing on a leader; each process
    is killed by pid afterwards, pass or fail."""
    processes = ProcessCluster(root)
    try:
        processes.start_all()
        processes.wait_settled()
        yield processes
    finally:
        processes.stop_all()


LOG_LINES_SHOWN = 60


def attach_node_logs(report: Any, tmp_path: Path | None) -> None:
    """On a failed test's report, the end of each node's log under `tmp_path`: a failure on a
    loaded CI machine is often understood only from what the nodes said."""
    if not report.failed or tmp_path is None:
        return
    for log in sorted(Path(tmp_path).rglob("node-*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_LINES_SHOWN:]
        report.sections.append((f"{log.name} (last {len(lines)} lines)", "\n".join(lines)))
