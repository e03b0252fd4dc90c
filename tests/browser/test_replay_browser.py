"""The simulator's replay page (`raft-sim --seed 7 --html FILE`) in a real headless Chromium,
opened from the file as a user would: its controls jump to an election and a fault, step
forward through a partition and the election it causes, and step back to exactly what was
shown before. Everything is read from the page's DOM."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

BIN = Path(sys.executable).parent
SEED = 7
# Seed 7's run (3000 ticks, all faults): node 3 is elected at tick 14; at tick 26 a partition
# cuts it off from nodes 1 and 2, which elect node 2 at tick 51 in term 3. Read from the
# page's embedded data below, so a change of the simulator fails here, by name.
FIRST_ELECTION = (14, "node 3: became leader at term 2")
PARTITION = (26, "fault: partition 3 | 1,2")
NEXT_ELECTION = (51, "node 2: became leader at term 3")
DATA = re.compile(r'<script type="application/json" id="replay-data">(.*?)</script>', re.DOTALL)

# Everything the page shows that depends on the step.
SHOWN_JS = """() => ({
    time: document.getElementById('time').innerText,
    step: document.getElementById('step').innerText,
    slider: document.getElementById('slider').value,
    table: document.getElementById('node-table').innerText,
    ring: [...document.querySelectorAll('#nodes g.node')].map((g) => [g.dataset.id,
        g.dataset.role, g.dataset.status, g.dataset.term,
        g.querySelector('text.name').textContent]),
    cuts: document.querySelectorAll('#links line.cut').length,
    messages: [...document.querySelectorAll('#msgs circle.msg')].map((c) => c.dataset.type),
    banner: document.getElementById('banner').textContent,
    events: document.getElementById('events').innerText,
    inflight: document.getElementById('inflight').innerText,
    clients: document.getElementById('clients').innerText,
    logs: document.getElementById('log-rows').innerText,
    invariants: document.getElementById('invariants').innerText,
})"""


@pytest.fixture(scope="module")
def replay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / f"replay-seed-{SEED}.html"
    completed = subprocess.run(
        # As the events below were read (before session 45's quorum-first replication).
        [str(BIN / "raft-sim"), "--seed", str(SEED), "--replication", "all", "--html", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"replay: {path}" in completed.stderr
    return path


def embedded(path: Path) -> dict[str, Any]:
    found = DATA.search(path.read_text(encoding="utf-8"))
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def shown(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(SHOWN_JS)
    return state


def table_rows(page: Page) -> dict[str, list[str]]:
    """The Nodes table: node id -> its cells (state, term, voted for, commit, ...)."""
    rows = page.eval_on_selector_all(
        "#node-table tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    return {row[0]: row[1:] for row in rows[1:]}


def test_the_replay_steps_forward_and_back(
    page: Page, replay_file: Path, screenshot: Callable[[str], Path]
) -> None:
    data = embedded(replay_file)
    events = [(tick, text) for tick, kind, text in data["events"] if kind != "client"]
    for tick, text in (FIRST_ELECTION, PARTITION, NEXT_ELECTION):
        assert any(t == tick and e.startswith(text) for t, e in events), (tick, text)
    ticks = [step["t"] for step in data["steps"]]

    page.goto(replay_file.as_uri())
    assert page.title() == f"Replay: {data['title']}"
    assert page.inner_text("#count") == str(len(ticks))
    start = shown(page)
    assert (start["step"], start["time"]) == ("0", str(ticks[0]))
    assert "All invariants hold" in start["invariants"]

    # "next" jumps to the first election of the run.
    page.select_option("#event-kind", "election")
    page.click("#next-event")
    assert page.inner_text("#time") == str(FIRST_ELECTION[0])
    assert FIRST_ELECTION[1] in shown(page)["banner"]
    assert table_rows(page)["3"][:2] == ["leader", "2"]

    # ... and with "fault" chosen, to the partition that follows it.
    page.select_option("#event-kind", "fault")
    page.click("#next-event")
    before = shown(page)
    assert before["time"] == str(PARTITION[0])
    assert "partition 3 | 1,2" in before["banner"]
    assert before["cuts"] == 2  # node 3's links to 1 and to 2
    rows = table_rows(page)
    assert rows["3"][:2] == ["leader", "2"] and rows["2"][:2] == ["follower", "2"]

    # Step forward one tick at a time until nodes 1 and 2 elect node 2.
    first = int(before["step"])
    steps = ticks.index(NEXT_ELECTION[0]) - first
    assert steps > 5
    for n in range(1, steps + 1):
        page.click("#forward")
        assert page.inner_text("#step") == str(first + n)
        assert page.inner_text("#time") == str(ticks[first + n])
    after = shown(page)
    assert NEXT_ELECTION[1] in after["banner"]
    rows = table_rows(page)
    assert rows["2"][:2] == ["leader", "3"]
    # Cut off from a majority, the old leader stepped down; it has not seen term 3.
    assert rows["3"][:2] == ["follower", "2"]
    ring = {node[0]: node for node in after["ring"]}
    assert ring["2"][1:4] == ["leader", "up", "3"] and ring["3"][1:4] == ["follower", "up", "2"]
    for key in ("time", "step", "table", "ring", "banner", "events", "logs"):
        assert after[key] != before[key], key
    screenshot(f"replay-seed-{SEED}")

    # Back, one step at a time, to exactly what was shown at the partition.
    for n in range(steps - 1, -1, -1):
        page.click("#back")
        assert page.inner_text("#step") == str(first + n)
    assert shown(page) == before

    # The arrow keys do the same (the page listens on the document; a focused button passes
    # them on).
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#step") == str(first + 3)
    assert shown(page) != before
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    assert shown(page) == before
