"""`raft-sim --html`: the replay page is produced, self-contained, deterministic, and holds the
run (nodes, steps, an election, faults; the violation of a failing seed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import quickjs

from raftkv.cli.sim import main
from raftkv.sim import Simulation, SimulationOptions, run_simulation
from raftkv.sim.replay import ReplayRecorder
from raftkv.sim.replay_html import embed_json, render_page, replay_data
from tests.sim.helpers import elect
from tests.sim.test_checks_fail import FORGOTTEN_VOTE_SEEDS, ForgetfulVoterDriver

SEED_ARGUMENTS = ("--seed", "7", "--ticks", "600")
# Caught by Election Safety with the vote forgotten (test_checks_fail.py's pinned range).
FAILING_SEED = FORGOTTEN_VOTE_SEEDS[-1]
VOID_ELEMENTS = {"meta", "input", "br", "hr", "img", "link"}
DATA_PATTERN = re.compile(
    r'<script type="application/json" id="replay-data">(.*?)</script>', re.DOTALL
)


def write_page(directory: Path, hash_seed: str) -> bytes:
    """Runs raft-sim in its own process, as a user would, and returns the page's bytes."""
    path = directory / f"replay-{hash_seed}.html"
    completed = subprocess.run(
        [sys.executable, "-m", "raftkv.cli.sim", *SEED_ARGUMENTS, "--html", str(path)],
        capture_output=True,
        env=dict(os.environ, PYTHONHASHSEED=hash_seed),
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout.decode() + completed.stderr.decode()
    assert f"replay: {path}".encode() in completed.stderr
    return path.read_bytes()


def embedded_data(page: str) -> dict[str, Any]:
    found = DATA_PATTERN.search(page)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    directory = tmp_path_factory.mktemp("replay")
    return write_page(directory, "1"), write_page(directory, "2")


@pytest.fixture(scope="module")
def page(pages: tuple[bytes, bytes]) -> str:
    return pages[0].decode("utf-8")


def test_same_arguments_give_the_same_bytes_under_any_hash_seed(
    pages: tuple[bytes, bytes],
) -> None:
    first, second = pages
    assert first == second
    assert len(first) > 10_000


class _TagBalance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID_ELEMENTS:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_the_page_is_well_formed_html_with_the_elements_a_browser_test_needs(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    parser = _TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.open == []
    ids = {attributes.get("id") for _, attributes in parser.tags}
    for wanted in ("step", "time", "invariants", "slider", "play", "replay-data", "ring"):
        assert wanted in ids
    assert "window.replay = {" in page
    for member in ("get step()", "count:", "goTo", "next", "prev"):
        assert member in page


def test_the_page_fetches_nothing(page: str) -> None:
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert not re.search(r"<link\b", page)
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!#)", page)
    assert "@import" not in page
    assert "fetch(" not in page


def test_the_embedded_run_has_nodes_steps_an_election_and_faults(page: str) -> None:
    data = embedded_data(page)
    assert data["format"] == "raftkv-replay/1"
    assert data["title"] == "raft-sim --seed 7 --nodes 3 --ticks 600 --faults all --workload kv"
    assert data["nodes"] == [1, 2, 3]
    steps = data["steps"]
    ticks = [step["t"] for step in steps]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # one step per tick
    assert ticks[0] == 0 and ticks[-1] > 600
    fields = data["fields"]
    role, status = fields.index("role"), fields.index("status")
    assert all(len(step["n"]) == 3 for step in steps)
    leader_steps = [
        number
        for number, step in enumerate(steps)
        if any(node[role] == "leader" for node in step["n"])
    ]
    assert leader_steps and leader_steps[0] > 0  # nobody leads at first, somebody does later
    kinds = {event[1] for event in data["events"]}
    assert {"fault", "election", "client"} <= kinds
    assert any(node[status] == "down" for step in steps for node in step["n"])
    for log_reference in {node[fields.index("log")] for step in steps for node in step["n"]}:
        first, terms = data["logs"][log_reference]
        assert first >= 1 and all(term >= 1 for term in terms)
    messages = data["messages"]
    assert messages
    assert all(message[6] is None or message[6] >= message[5] for message in messages)
    assert {"AppendEntries", "RequestVote"} <= {message[0] for message in messages}
    assert any(message[7] == "dropped" for message in messages)
    assert data["invariants"]["violation"] is None
    assert "Election Safety" in data["invariants"]["continuous"]
    operations = data["operations"]
    assert operations and data["operationFields"][4:6] == ["called", "returned"]
    assert {"put", "get"} <= {operation[1] for operation in operations}
    assert all(operation[5] is None or operation[5] >= operation[4] for operation in operations)


def test_recording_does_not_change_the_run() -> None:
    options = SimulationOptions(seed=7, ticks=400)
    recorded = run_simulation(options, observer=ReplayRecorder())
    assert recorded.report_lines() == run_simulation(options).report_lines()


def test_a_failing_seed_shows_the_violation() -> None:
    options = SimulationOptions(seed=FAILING_SEED, nodes=3)
    recorder = ReplayRecorder()
    result = run_simulation(options, driver_class=ForgetfulVoterDriver, observer=recorder)
    assert result.violation is not None
    data = replay_data(recorder, result)
    violation = data["invariants"]["violation"]
    assert violation["invariant"] == "Election Safety"
    assert violation["tick"] == result.violation.tick
    assert data["steps"][-1]["t"] == violation["tick"]  # the run ends where it broke
    assert data["events"][-1] == [
        violation["tick"],
        "violation",
        f"VIOLATION: {result.violation}",
    ]
    assert "VIOLATION: Election Safety" in render_page(data)


def test_pauses_crashes_and_lost_messages_are_recorded_as_they_happen() -> None:
    recorder = ReplayRecorder()
    simulation = Simulation(
        SimulationOptions(seed=1, nodes=3, ticks=0, faults=frozenset(), workload="none"),
        observer=recorder,
    )
    leader = elect(simulation)
    simulation.set_network(latency_ticks=1)
    follower, other = (node_id for node_id in simulation.node_ids if node_id != leader)
    simulation.run(3)
    simulation.pause(follower, 10)
    paused_at = simulation.now
    simulation.run(12)

    def message_on_its_way_to_other() -> bool:
        return any(
            message[2] == other and message[5] == simulation.now for message in recorder.messages
        )

    assert simulation.run_until(message_on_its_way_to_other, 50)
    simulation.crash(other)
    simulation.run(3)
    held = [message for message in recorder.messages if message[7] == "held: receiver paused"]
    assert held and all(message[2] == follower for message in held)
    assert all(message[6] == paused_at + 10 for message in held)  # arrives as it resumes
    lost = [message for message in recorder.messages if message[7] == "lost: receiver crashed"]
    assert lost and all(message[2] == other for message in lost)
    status = {step["t"]: step["n"] for step in recorder.steps}
    assert status[paused_at + 1][follower - 1][0] == "paused"
    assert status[simulation.now][other - 1][0] == "down"
    faults = [text for _, kind, text in recorder.events if kind == "fault"]
    assert faults == [
        f"fault: node {follower} pauses for 10 ticks",
        f"fault: node {follower} resumes from a pause",
        f"fault: node {other} crashes (between steps)",
    ]


def test_html_steps_keeps_the_last_ticks_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "short.html"
    assert main([*SEED_ARGUMENTS, "--html", str(path), "--html-steps", "100"]) == 0
    data = embedded_data(path.read_text(encoding="utf-8"))
    assert len(data["steps"]) == 100
    first_tick = data["steps"][0]["t"]
    assert "Only the last 100 of" in data["note"]
    referenced = {node[-1] for step in data["steps"] for node in step["n"]}
    assert referenced == set(range(len(data["logs"])))  # only the kept ticks' logs
    assert all(event[0] >= first_tick for event in data["events"])
    assert all(
        message[5] >= first_tick or (message[6] or 0) >= first_tick for message in data["messages"]
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["--sweep", "1-2", "--html", "x.html"],
        ["--golden", "--html", "x.html"],
        ["--seed", "1", "--whole-node", "--html", "x.html"],
        ["--seed", "1", "--html-steps", "10"],
        ["--seed", "1", "--html", "x.html", "--html-steps", "0"],
    ],
)
def test_html_is_refused_where_it_does_not_apply(arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2


def test_embedded_json_cannot_close_its_script_element() -> None:
    text = embed_json({"text": "</script><!-- x"})
    assert "</" not in text and "<!--" not in text
    assert json.loads(text) == {"text": "</script><!-- x"}


# Seconds the page's script may take through every step (about 4 s for 3,000 ticks).
PAGE_SCRIPT_SECONDS_MAX = 120


def run_page_script(page: str) -> dict[str, Any]:
    """The page's JavaScript against a stand-in DOM (tests/sim/replay_smoke.js), in the
    QuickJS engine, through every step and the controls; what it saw. A JavaScript error
    raises quickjs.JSException with the script's message and stack."""
    context = quickjs.Context()
    context.set_time_limit(PAGE_SCRIPT_SECONDS_MAX)
    context.set("page", page)
    smoke = Path(__file__).with_name("replay_smoke.js").read_text(encoding="utf-8")
    outcome: dict[str, Any] = json.loads(context.eval(smoke))
    assert outcome["count"] == len(embedded_data(page)["steps"])
    return outcome


def test_the_page_script_runs_through_every_step(page: str) -> None:
    outcome = run_page_script(page)
    assert outcome["leaderStep"] is not None and outcome["roles"]["leader"] > 0
    assert outcome["violated"] == []


def test_the_page_of_a_failing_seed_turns_red_at_the_violation() -> None:
    options = SimulationOptions(seed=FAILING_SEED, nodes=3)
    recorder = ReplayRecorder()
    result = run_simulation(options, driver_class=ForgetfulVoterDriver, observer=recorder)
    data = replay_data(recorder, result)
    outcome = run_page_script(render_page(data))
    step, text = outcome["violated"]
    assert step == len(data["steps"]) - 1  # green until the tick it broke
    assert "VIOLATION at tick" in text and "Election Safety" in text
