"""The end of a run without processes: a history with a stale read is reported as an anomaly
(exit 1, the checker's explanation printed and in the report); a clean one passes; usage
errors exit 2."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest

from raftkv.chaos.cli import EXIT_ANOMALY, EXIT_OK, EXIT_USAGE, conclude, main
from raftkv.chaos.verdict import ReplicaAgreement
from raftkv.check import History
from tests.check.builders import get, put

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AGREE = ReplicaAgreement(True, "agree at index 9 (3 nodes, hash abc)")
EVENTS: list[dict[str, object]] = [
    {"time": 1.5, "event": "start", "kind": "partition", "node": 2},
    {"time": 3.5, "event": "end", "kind": "partition"},
]


def finish(out: Path, history: History, replicas: ReplicaAgreement = AGREE) -> int:
    return conclude(
        out,
        history,
        EVENTS,
        replicas,
        seed=5,
        nodes=3,
        clients=2,
        kinds=["partition"],
        links="proxy",
        began=time.monotonic(),
    )


def assert_self_contained_report(out: Path) -> str:
    for name in ("latency.png", "throughput.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in images)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "//" not in text and "url(" not in text  # nothing fetched from anywhere
    return page


def test_a_stale_read_is_an_anomaly_with_the_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = History(
        (
            put("c1", 0, 1, "old"),
            put("c2", 2, 3, "new"),
            get("c3", 4, 5, "old"),  # after "new" was acknowledged
        )
    )
    assert finish(tmp_path, stale) == EXIT_ANOMALY
    printed = capsys.readouterr().out
    assert "NOT LINEARIZABLE n=3 keys=1" in printed
    assert "#2 c3 get 'k' [call 4, return 5] -> 'old'" in printed
    assert "ANOMALY" in printed
    page = assert_self_contained_report(tmp_path)
    assert "ANOMALY" in page and "NOT LINEARIZABLE" in page


def test_a_clean_history_passes_and_differing_replicas_do_not(tmp_path: Path) -> None:
    clean = History((put("c1", 0, 1, "a"), get("c2", 2, 3, "a")))
    assert finish(tmp_path, clean) == EXIT_OK
    assert "PASS" in assert_self_contained_report(tmp_path)
    differ = ReplicaAgreement(False, "DIFFER at index 9: 1=aaa 2=bbb")
    assert finish(tmp_path, clean, differ) == EXIT_ANOMALY


@pytest.mark.parametrize(
    "arguments",
    [
        ["--nemesis", "flood"],
        ["--nodes", "0"],
        ["--seconds", "-1"],
        ["--bogus"],
        ["--nodes", "2", "--nemesis", "kill"],
    ],
)
def test_usage_errors_exit_2(arguments: list[str], tmp_path: Path) -> None:
    assert main([*arguments, "--out", str(tmp_path)]) == EXIT_USAGE
