"""Leases on real processes (SPEC §6, "Leases"): a lease kept alive survives a SIGKILL of the
leader, one left alone expires on every node at the same index, leases survive a restart of
every node, `raft-client lease` end to end, and `raft-client lock` lets one holder run at a
time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from raftkv.client import LeaseNotFound, RaftClient
from tests.process.cluster import BIN, ProcessCluster, wait_for


def _addresses(cluster: ProcessCluster) -> dict[int, tuple[str, int]]:
    return {n: ("127.0.0.1", node.client_port) for n, node in cluster.nodes.items()}


def _present_on(cluster: ProcessCluster, node_id: int, key: str) -> bool:
    status, _ = cluster.request(node_id, "GET", f"/v1/kv/{key}?consistency=stale")
    assert status in (200, 404)
    return status == 200


def _live(cluster: ProcessCluster) -> list[int]:
    return [node_id for node_id, node in cluster.nodes.items() if node.alive]


def _consistent(cluster: ProcessCluster) -> None:
    checked = cluster.client("check", "--timeout", "30")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_kept_lease_survives_a_leader_kill_and_a_lapsed_one_expires_everywhere(
    cluster: ProcessCluster,
) -> None:
    with RaftClient(_addresses(cluster), timeout=30) as client:
        kept = client.lease_grant(2).id
        lapsed = client.lease_grant(4).id
        client.put("kept", "v", lease=kept)
        client.put("lapsed", "v", lease=lapsed)
        with client.keep_lease_alive(kept, 2) as keeper:
            old_leader = cluster.wait_leader()
            cluster.kill(old_leader)
            new_leader = cluster.wait_leader(among=_live(cluster))
            # The lapsed lease runs out 4 s (plus an election timeout) after the new leader
            # took over: by then the kept one's TTL of 2 s has passed twice.
            wait_for(
                lambda: not any(_present_on(cluster, n, "lapsed") for n in _live(cluster)),
                timeout=30,
                what="the lapsed lease's key to vanish from every live node",
            )
            assert all(_present_on(cluster, n, "kept") for n in _live(cluster))
            assert not keeper.lost.is_set(), keeper.reason
            info = client.lease_info(kept)
            assert info.keys == ["kept"] and info.remaining is not None
            assert new_leader != old_leader
        try:
            client.lease_info(lapsed)
            raise AssertionError("the lapsed lease is still there")
        except LeaseNotFound:
            pass
        _consistent(cluster)
        # The killed node comes back and catches up on the expiry from the log.
        cluster.start(old_leader)
        wait_for(
            lambda: (
                not _present_on(cluster, old_leader, "lapsed")
                and _present_on(cluster, old_leader, "kept")
            ),
            timeout=30,
            what="the restarted node to apply the expiry",
        )
        _consistent(cluster)


def test_leases_survive_a_restart_of_every_node(tmp_path: Path) -> None:
    # Small snapshots: the restart recovers the leases from a snapshot and the WAL.
    cluster = ProcessCluster(tmp_path, extra_args=["--snapshot-entries", "5"])
    try:
        cluster.start_all()
        cluster.wait_leader()
        with RaftClient(_addresses(cluster), timeout=30) as client:
            lease = client.lease_grant(600).id
            for number in range(12):
                client.put(f"k{number}", "v", lease=lease if number % 2 == 0 else None)
        for node_id in cluster.nodes:
            cluster.kill(node_id)
        cluster.start_all()
        cluster.wait_leader()
        with RaftClient(_addresses(cluster), timeout=30) as client:
            info = client.lease_info(lease)
            assert info.ttl == 600
            assert info.keys == sorted(f"k{number}" for number in range(0, 12, 2))
            assert client.lease_keep_alive(lease).ttl == 600
            assert client.lease_revoke(lease).deleted == 6
            assert [kv.key for kv in client.range("k").kvs] == sorted(
                f"k{number}" for number in range(1, 12, 2)
            )
        _consistent(cluster)
    finally:
        cluster.stop_all()


def test_raft_client_lease_commands(cluster: ProcessCluster) -> None:
    granted = cluster.client("lease", "grant", "30", "--timeout", "30")
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.startswith("OK id=") and " ttl=30 " in granted.stdout
    lease = granted.stdout.split()[1].removeprefix("id=")
    put = cluster.client("put", "svc/a", "addr", "--lease", lease, "--timeout", "30")
    assert put.returncode == 0, put.stderr
    info = cluster.client("lease", "info", lease, "--timeout", "30")
    assert info.returncode == 0, info.stderr
    first, *keys = info.stdout.splitlines()
    assert first.startswith(f"id={lease} ttl=30 remaining=") and first.endswith(" keys=1")
    assert keys == ["svc/a"]
    listing = cluster.client("lease", "list", "--timeout", "30")
    assert listing.returncode == 0 and lease in listing.stdout.split()
    once = cluster.client("lease", "keep-alive", lease, "--once", "--timeout", "30")
    assert (once.returncode, once.stdout) == (0, f"OK id={lease} ttl=30\n"), once.stderr
    revoked = cluster.client("lease", "revoke", lease, "--timeout", "30")
    assert revoked.returncode == 0 and revoked.stdout.endswith(" deleted=1\n"), revoked.stderr
    gone = cluster.client("get", "svc/a", "--timeout", "30")
    assert gone.returncode == 1 and '"not_found"' in gone.stderr
    again = cluster.client("lease", "keep-alive", lease, "--once", "--timeout", "30")
    assert again.returncode == 1 and '"lease_not_found"' in again.stderr
    unknown = cluster.client("put", "x", "y", "--lease", "999999", "--timeout", "30")
    assert unknown.returncode == 1 and '"lease_not_found"' in unknown.stderr


def _lock(cluster: ProcessCluster, name: str, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "raft-client"), "lock", name, "--ttl", "5", "--timeout", "30", "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, RAFT_CLUSTER=cluster.cluster_argument()),
    )


def test_two_lock_contenders_run_one_at_a_time(cluster: ProcessCluster, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    # Each holder notes its start, works for a while, notes its end, and exits 3.
    script = (
        f'echo "start $RAFT_LOCK_KEY" >> {journal}; sleep 1.5;'
        f' echo "end $RAFT_LOCK_KEY" >> {journal}; exit 3'
    )
    contenders = [_lock(cluster, "jobs", "sh", "-c", script) for _ in range(2)]
    try:
        for contender in contenders:
            _, stderr = contender.communicate(timeout=90)
            assert contender.returncode == 3, stderr  # CMD's own status
    finally:
        for contender in contenders:
            if contender.poll() is None:
                contender.kill()
                contender.wait()
    lines = journal.read_text().splitlines()
    assert len(lines) == 4
    (start_a, key_a), (end_a, end_key_a), (start_b, key_b), (end_b, end_key_b) = (
        line.split() for line in lines
    )
    assert (start_a, end_a, start_b, end_b) == ("start", "end", "start", "end"), lines
    assert key_a == end_key_a and key_b == end_key_b and key_a != key_b
    assert key_a.startswith("jobs/") and key_b.startswith("jobs/")
    # Both released: the lock's keys and leases are gone.
    with RaftClient(_addresses(cluster), timeout=30) as client:
        assert client.range("jobs/").count == 0
        assert client.leases().count == 0


def test_a_lock_holder_interrupted_releases_the_lock(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "holding"
    holder = _lock(cluster, "door", "sh", "-c", f"touch {marker}; exec sleep 600")
    try:
        wait_for(marker.exists, timeout=60, what="the holder to run its command")
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)
        assert holder.returncode == 128 + signal.SIGTERM
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with RaftClient(_addresses(cluster), timeout=30) as client:
        assert client.range("door/").count == 0
    started = time.monotonic()
    follower = _lock(cluster, "door", "true")
    assert follower.wait(timeout=60) == 0
    # Released by the revoke, not left to expire (its TTL is 5 s).
    assert time.monotonic() - started < 5


def test_a_lock_holder_whose_lease_is_lost_stops_its_command(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    ended = tmp_path / "ended"
    # CMD notes its key, then would run for ten minutes; it notes SIGTERM if it gets one.
    script = (
        "import os, pathlib, signal, sys, time\n"
        f"def stop(*_): pathlib.Path({str(ended)!r}).touch(); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"pathlib.Path({str(key_file)!r}).write_text(os.environ['RAFT_LOCK_KEY'])\n"
        "time.sleep(600)\n"
    )
    holder = _lock(cluster, "door", sys.executable, "-c", script)
    try:
        wait_for(lambda: key_file.exists() and key_file.read_text().strip(), 60, "the key")
        lease = key_file.read_text().strip().rsplit("/", 1)[1]
        revoked = cluster.client("lease", "revoke", lease, "--timeout", "30")
        assert revoked.returncode == 0, revoked.stderr
        _, stderr = holder.communicate(timeout=60)
        assert holder.returncode == 1
        assert '"lock_lost"' in stderr and "CMD was terminated" in stderr
        assert ended.exists()  # CMD was told to stop (SIGTERM), not left running
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
