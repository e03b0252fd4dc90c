"""Real processes: a leader that was paused (SIGSTOP) while the others elected a new leader
and acknowledged a write must not answer a linearizable or lease read with the older value
when it wakes up (thesis §6.4: ReadIndex, and a lease guarded against paused clocks)."""

from __future__ import annotations

import signal

import pytest

from tests.process.cluster import ProcessCluster


@pytest.mark.parametrize("consistency", ["linearizable", "lease"])
def test_paused_old_leader_never_serves_a_stale_read(
    cluster: ProcessCluster, consistency: str
) -> None:
    for round_number in range(3):
        old_value = f"old-{round_number}"
        new_value = f"new-{round_number}"
        cluster.put_until_ok("x", old_value)
        old_leader = cluster.wait_leader()
        process = cluster.nodes[old_leader].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            others = [n for n in cluster.nodes if n != old_leader]
            new_leader = cluster.wait_leader(among=others)
            code, body = cluster.request(new_leader, "PUT", "/v1/kv/x", {"value": new_value})
            assert code == 200, body
        finally:
            process.send_signal(signal.SIGCONT)
        # The first request the old leader handles after waking up.
        code, body = cluster.request(old_leader, "GET", f"/v1/kv/x?consistency={consistency}")
        if code == 200:
            assert body["value"] == new_value, f"stale read of {body['value']!r}"
        else:
            assert body["error"] in ("not_leader", "no_leader", "timeout"), body
