"""The `raft-sim --html` page: one self-contained file, the recorded run as embedded JSON
plus the inline CSS and JavaScript of `replay_page.html` (no network, no other files).

The bytes depend on the run only: no timestamps, JSON in recording order.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from raftkv.sim.replay import ReplayRecorder
from raftkv.sim.runner import SimulationResult

TEMPLATE_NAME = "replay_page.html"
# Where the template takes the data and the title; each occurs exactly once.
DATA_MARK = "__REPLAY_DATA__"
TITLE_MARK = "__REPLAY_TITLE__"


def embed_json(data: Any) -> str:
    """JSON that cannot end the <script> element holding it: every `<` is escaped (so no
    `</script>` or `<!--`), which JSON.parse reads back unchanged."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def render_page(data: dict[str, Any]) -> str:
    template = resources.files("raftkv.sim").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    return template.replace(TITLE_MARK, html.escape(str(data["title"]))).replace(
        DATA_MARK, embed_json(data)
    )


def replay_data(recorder: ReplayRecorder, result: SimulationResult) -> dict[str, Any]:
    options = result.options
    return recorder.replay_data(
        title=options.replay_command(),
        node_ids=range(1, options.nodes + 1),
        summary=result.report_lines(),
        violation=result.violation,
    )


def write_replay(path: Path, recorder: ReplayRecorder, result: SimulationResult) -> int:
    """Write the page; returns its size in bytes."""
    page = render_page(replay_data(recorder, result)).encode("utf-8")
    path.write_bytes(page)
    return len(page)
