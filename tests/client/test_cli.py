"""`raft-client` against a fake cluster: SPEC §1 output forms and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.client.conftest import RunCli
from tests.client.fake_cluster import Answer, FakeCluster, free_port

SUBPROCESS_TIMEOUT_SECONDS = 20.0


def test_put_get_del_cas_text_forms(cluster: FakeCluster, run_cli: RunCli) -> None:
    base = ("--cluster", cluster.cluster_text())
    assert run_cli(*base, "put", "x", "1") == (0, "OK leader=1 index=2\n", "")
    assert run_cli(*base, "get", "x") == (0, "1\n", "")
    assert run_cli(*base, "cas", "x", "1", "2") == (0, "OK leader=1 index=3\n", "")
    assert run_cli(*base, "get", "x") == (0, "2\n", "")
    assert run_cli(*base, "del", "x") == (0, "OK leader=1 index=4\n", "")


def test_json_prints_the_server_answer(cluster: FakeCluster, run_cli: RunCli) -> None:
    base = ("--cluster", cluster.cluster_text(), "--json")
    code, out, _ = run_cli(*base, "put", "x", "1")
    assert (code, json.loads(out)) == (0, {"ok": True, "leader": 1, "index": 2})
    code, out, _ = run_cli(*base, "get", "x")
    assert (code, json.loads(out)) == (0, {"key": "x", "value": "1", "index": 2})
    # Options are accepted after the command too, as SPEC §1 writes `put x 2 --target 2`.
    code, out, _ = run_cli("del", "x", *base)
    assert (code, json.loads(out)) == (0, {"ok": True, "leader": 1, "index": 3})


def test_keys_and_values_with_odd_characters(cluster: FakeCluster, run_cli: RunCli) -> None:
    base = ("--cluster", cluster.cluster_text())
    key, value = "a/b c?d%2F#é", "-1 ünïcode"
    assert run_cli(*base, "put", key, value)[0] == 0
    assert cluster.data == {key: value}
    assert run_cli(*base, "get", key) == (0, value + "\n", "")


def test_not_found_and_cas_failed_exit_1(cluster: FakeCluster, run_cli: RunCli) -> None:
    base = ("--cluster", cluster.cluster_text())
    assert run_cli(*base, "get", "missing") == (1, "", '{"error":"not_found"}\n')
    assert run_cli(*base, "del", "missing") == (1, "", '{"error":"not_found"}\n')
    run_cli(*base, "put", "x", "1")
    code, out, err = run_cli(*base, "cas", "x", "0", "2")
    assert (code, out) == (1, "")
    assert json.loads(err) == {"error": "cas_failed", "current": "1"}


def test_target_follower_exits_3_with_the_exact_line(cluster: FakeCluster, run_cli: RunCli) -> None:
    code, out, err = run_cli("--cluster", cluster.cluster_text(), "put", "x", "2", "--target", "2")
    assert (code, out, err) == (3, "", '{"error":"not_leader","leader":"node1"}\n')
    assert cluster.data == {}
    # A follower that knows no leader: the leader is null.
    cluster.fail_next(2, Answer(421, {"error": "not_leader", "leader": None, "leader_id": None}))
    code, _, err = run_cli("--cluster", cluster.cluster_text(), "--target", "2", "get", "x")
    assert (code, err) == (3, '{"error":"not_leader","leader":null}\n')


def test_target_leader_and_stale_reads_from_a_follower(
    cluster: FakeCluster, run_cli: RunCli
) -> None:
    base = ("--cluster", cluster.cluster_text())
    assert run_cli(*base, "--target", "1", "put", "x", "1")[:2] == (0, "OK leader=1 index=2\n")
    assert run_cli(*base, "--target", "3", "get", "x", "--consistency", "stale")[:2] == (0, "1\n")
    assert [r.node_id for r in cluster.requests] == [1, 3]


def test_finds_the_leader_from_hints(cluster: FakeCluster, run_cli: RunCli) -> None:
    cluster.leader = 3
    code, out, _ = run_cli("--cluster", cluster.cluster_text(), "put", "x", "1")
    assert (code, out) == (0, "OK leader=3 index=2\n")
    # Node 1 (the first) was asked, pointed at 3, and 3 answered; node 2 was never asked.
    assert [r.node_id for r in cluster.requests] == [1, 3]


def test_all_nodes_down_exits_2_within_the_timeout(run_cli: RunCli) -> None:
    dead = ",".join(f"{node_id}=127.0.0.1:{free_port()}" for node_id in (1, 2, 3))
    started = time.monotonic()
    code, out, err = run_cli("--cluster", dead, "--timeout", "0.5", "put", "x", "1")
    elapsed = time.monotonic() - started
    assert (code, out) == (2, "")
    assert json.loads(err)["error"] == "timeout"
    assert err.count("\n") == 1
    assert 0.4 <= elapsed < 2.0


def test_no_leader_anywhere_exits_2(run_cli: RunCli) -> None:
    with FakeCluster(leader=None) as cluster:
        code, _, err = run_cli("--cluster", cluster.cluster_text(), "--timeout", "0.3", "get", "x")
    assert code == 2
    assert json.loads(err)["error"] == "no_leader"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["put", "x"],
        ["frobnicate"],
        ["--timeout", "-1", "get", "x"],
        ["--timeout", "soon", "get", "x"],
        ["--target", "zero", "get", "x"],
        ["--cluster", "1=nohost", "get", "x"],
        ["--target", "9", "get", "x"],
        ["members", "add", "x", "127.0.0.1:9004"],
        ["get", "x", "--consistency", "eventual"],
    ],
)
def test_bad_usage_exits_1_with_one_json_line(run_cli: RunCli, argv: list[str]) -> None:
    code, out, err = run_cli(*argv)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert json.loads(err)["error"] == "bad_usage"


def test_cluster_from_the_environment(
    cluster: FakeCluster, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAFT_CLUSTER", cluster.cluster_text())
    assert run_cli("put", "x", "1") == (0, "OK leader=1 index=2\n", "")


def test_status_table_with_an_unreachable_node(cluster: FakeCluster, run_cli: RunCli) -> None:
    cluster.nodes[1].last_applied = 1
    cluster_text = cluster.cluster_text(extra={4: free_port()})
    code, out, err = run_cli("--cluster", cluster_text, "--timeout", "1", "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "LAST_INDEX",
        "SNAPSHOT",
        "ENTRIES",
        "ADDRESS",
    ]
    assert lines[1].split()[:9] == ["1", "leader", "2", "1", "1", "1", "1", "0", "1"]
    assert lines[2].split()[:2] == ["2", "follower"]
    assert lines[4].split()[:9] == ["4", "unreachable", *["-"] * 7]
    # Aligned: the last column starts at the same place in every line.
    assert {line.rindex("127.0.0.1:") for line in lines[1:]} == {lines[0].index("ADDRESS")}


def test_status_json_lists_every_node(cluster: FakeCluster, run_cli: RunCli) -> None:
    cluster_text = cluster.cluster_text(extra={4: free_port()})
    code, out, _ = run_cli("--cluster", cluster_text, "--json", "status")
    statuses = json.loads(out)
    assert code == 0
    assert [status["id"] for status in statuses] == [1, 2, 3, 4]
    assert statuses[0]["role"] == "leader" and statuses[0]["cluster_id"] == "fake"
    assert statuses[3]["error"] == "unreachable"


def test_status_with_every_node_down_exits_2(run_cli: RunCli) -> None:
    code, out, err = run_cli("--cluster", f"1=127.0.0.1:{free_port()}", "status")
    assert code == 2
    assert "unreachable" in out
    assert json.loads(err)["error"] == "unreachable"


def test_members_list_add_remove(cluster: FakeCluster, run_cli: RunCli) -> None:
    base = ("--cluster", cluster.cluster_text())
    code, out, _ = run_cli(*base, "members")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["ID", "ROLE", "ADDRESS", "CLIENT_ADDRESS", "LEADER"]
    assert lines[1].split()[:3] == ["1", "voter", "127.0.0.1:9001"]
    assert lines[1].split()[-1] == "*"
    assert run_cli(*base, "members", "add", "4", "127.0.0.1:9004")[:2] == (
        0,
        "OK leader=1 index=2\n",
    )
    assert cluster.requests[-1].body == {"id": 4, "address": "127.0.0.1:9004"}
    assert run_cli(*base, "members", "remove", "4")[:2] == (0, "OK leader=1 index=3\n")
    assert (cluster.requests[-1].method, cluster.requests[-1].path) == ("DELETE", "/v1/members/4")


def test_transfer_leader(cluster: FakeCluster, run_cli: RunCli) -> None:
    base = ("--cluster", cluster.cluster_text())
    assert run_cli(*base, "transfer-leader", "2") == (0, "OK leader=2\n", "")
    assert cluster.requests[-1].body == {"to": 2}
    assert cluster.leader == 2


def test_help_exits_0(run_cli: RunCli) -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "put" in out


def test_as_a_subprocess(cluster: FakeCluster) -> None:
    environment = os.environ | {"RAFT_CLUSTER": cluster.cluster_text()}
    command = [sys.executable, "-m", "raftkv.cli.client"]
    put = subprocess.run(
        [*command, "put", "x", "1"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    )
    assert (put.returncode, put.stdout, put.stderr) == (0, "OK leader=1 index=2\n", "")
    follower = subprocess.run(
        [*command, "put", "x", "2", "--target", "2"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    )
    assert (follower.returncode, follower.stderr) == (
        3,
        '{"error":"not_leader","leader":"node1"}\n',
    )
