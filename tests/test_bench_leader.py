"""raft-bench --compare etcd measures raftkv on whichever node leads at each measurement."""

from pathlib import Path

import pytest

from raftkv.cli.bench import LocalCluster


def test_a_measurement_goes_to_the_node_leading_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = LocalCluster(tmp_path, [], 3)
    cluster.client_ports = {1: 5001, 2: 5002, 3: 5003}
    monkeypatch.setattr(cluster, "leader_url", lambda: "http://127.0.0.1:5002")
    asked: list[str] = []

    def measure(
        url: str, connections: int, seconds: float, script: Path | None, threads: int = 1
    ) -> dict[str, float]:
        asked.append(url)
        return {"rate": 1.0}

    measure_on_leader = cluster.following_the_leader(measure)
    measure_on_leader("http://127.0.0.1:5001/v1/kv/bench-key", 1, 1.0, None)
    measure_on_leader("http://127.0.0.1:5001/v1/kv/bench-key", 16, 1.0, None)
    measure_on_leader("http://127.0.0.1:5002", 64, 1.0, None)
    measure_on_leader("http://127.0.0.1:2379/v3/kv/range", 64, 1.0, None)  # etcd's: as is
    measure_on_leader("http://127.0.0.1:50011/v3/kv/range", 1, 1.0, None)  # a longer port
    assert asked == [
        "http://127.0.0.1:5002/v1/kv/bench-key",
        "http://127.0.0.1:5002/v1/kv/bench-key",
        "http://127.0.0.1:5002",
        "http://127.0.0.1:2379/v3/kv/range",
        "http://127.0.0.1:50011/v3/kv/range",
    ]
    told = capsys.readouterr().err
    # Said once, though two rows were sent to the old leader.
    assert told.count("the leader is now http://127.0.0.1:5002 (was http://127.0.0.1:5001)") == 1
