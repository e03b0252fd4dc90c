"""The report of a run: latency.png, throughput.png and report.html (a page that stands
alone: the plots are embedded as data URIs, nothing is fetched)."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, whatever the environment says

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from raftkv.check import History

OUTCOME_MARKERS = {"ok": "o", "fail": "x", "unknown": "^"}
OUTCOME_LABELS = {"ok": "ok", "fail": "fail", "unknown": "info (timeout)"}
KIND_COLOURS = {"get": "tab:blue", "put": "tab:green", "cas": "tab:orange", "del": "tab:red"}
FAULT_COLOURS = {
    "kill": "tab:red",
    "pause": "tab:purple",
    "partition": "tab:brown",
    "transfer": "tab:olive",
    "membership": "tab:cyan",
}


@dataclass(frozen=True)
class Summary:
    seed: int
    nodes: int
    clients: int
    nemesis: Sequence[str]
    links: str
    seconds_taken: float
    linearizable: str
    explanation: str
    replicas: str
    ok: bool


@dataclass(frozen=True)
class FaultWindow:
    kind: str
    start: float
    end: float
    label: str


def fault_windows(events: Sequence[dict[str, object]], run_end: float) -> list[FaultWindow]:
    """Pair each nemesis start with its end (a fault never ended lasts to the run's end)."""
    windows: list[FaultWindow] = []
    open_start: dict[str, object] | None = None
    for event in events:
        if event["event"] == "start":
            open_start = event
        elif event["event"] == "end" and open_start is not None:
            windows.append(_window(open_start, float(str(event["time"]))))
            open_start = None
    if open_start is not None:
        windows.append(_window(open_start, run_end))
    return windows


def _window(start: dict[str, object], end: float) -> FaultWindow:
    kind = str(start["kind"])
    label = f"{kind} {start['node']}" if "node" in start else kind
    return FaultWindow(kind, float(str(start["time"])), end, label)


def outcome_counts(history: History) -> Counter[str]:
    return Counter(o.status for o in history.operations)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _shade(axes: Axes, windows: Sequence[FaultWindow], origin: float) -> None:
    top = axes.get_ylim()[1]
    for window in windows:
        colour = FAULT_COLOURS.get(window.kind, "grey")
        axes.axvspan(window.start - origin, window.end - origin, color=colour, alpha=0.15)
        axes.text(
            window.start - origin,
            top,
            window.label,
            fontsize=7,
            rotation=90,
            va="top",
            ha="left",
            color=colour,
        )


def latency_plot(history: History, windows: Sequence[FaultWindow], origin: float) -> bytes:
    figure, axes = plt.subplots(figsize=(11, 5))
    for kind, colour in KIND_COLOURS.items():
        for status, marker in OUTCOME_MARKERS.items():
            points = [
                (o.call_time - origin, (o.return_time - o.call_time) * 1000)
                for o in history.operations
                if o.op == kind and o.status == status and o.return_time is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axes.scatter(
                    xs,
                    ys,
                    s=9,
                    c=colour,
                    marker=marker,
                    alpha=0.7,
                    label=f"{kind} {OUTCOME_LABELS[status]}",
                )
    axes.set_yscale("log")
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency per operation (faults shaded)")
    _shade(axes, windows, origin)
    axes.legend(fontsize=7, loc="upper right", ncol=2)
    figure.tight_layout()
    return _png(figure)


def throughput_plot(history: History, windows: Sequence[FaultWindow], origin: float) -> bytes:
    """Completed operations per second, by outcome."""
    figure, axes = plt.subplots(figsize=(11, 3.5))
    ends = [o for o in history.operations if o.return_time is not None]
    seconds = int(max((o.return_time or 0) - origin for o in ends)) + 1 if ends else 1
    for status in OUTCOME_MARKERS:
        per_second = [0] * seconds
        for o in ends:
            if o.status == status and o.return_time is not None:
                per_second[min(seconds - 1, max(0, int(o.return_time - origin)))] += 1
        axes.step(range(seconds), per_second, where="post", label=OUTCOME_LABELS[status])
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("operations/s")
    axes.set_title("Throughput (faults shaded)")
    _shade(axes, windows, origin)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    return _png(figure)


def write_report(
    out: Path, summary: Summary, history: History, events: Sequence[dict[str, object]]
) -> None:
    """latency.png, throughput.png and report.html in `out`."""
    times = [o.call_time for o in history.operations]
    origin = min(times) if times else 0.0
    run_end = max((o.return_time or o.call_time for o in history.operations), default=origin)
    windows = fault_windows(events, run_end)
    latency = latency_plot(history, windows, origin)
    throughput = throughput_plot(history, windows, origin)
    (out / "latency.png").write_bytes(latency)
    (out / "throughput.png").write_bytes(throughput)
    (out / "report.html").write_text(_page(summary, history, windows, origin, latency, throughput))


def _page(
    summary: Summary,
    history: History,
    windows: Sequence[FaultWindow],
    origin: float,
    latency: bytes,
    throughput: bytes,
) -> str:
    counts = outcome_counts(history)
    verdict = "PASS" if summary.ok else "ANOMALY"
    rows = [
        ("verdict", verdict),
        ("seed", str(summary.seed)),
        ("nodes", str(summary.nodes)),
        ("clients", str(summary.clients)),
        ("nemesis", ", ".join(summary.nemesis) or "none"),
        ("links cut with", summary.links),
        (
            "operations",
            f"{len(history.operations)}: ok {counts['ok']}, failed "
            f"{counts['fail']}, indeterminate {counts['unknown']}",
        ),
        ("linearizability", summary.linearizable),
        ("replica agreement", summary.replicas),
        ("time taken", f"{summary.seconds_taken:.1f} s"),
    ]
    table = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    faults = "\n".join(
        f"<tr><td>{w.start - origin:.2f}</td><td>{w.end - origin:.2f}</td>"
        f"<td>{html.escape(w.label)}</td></tr>"
        for w in windows
    )
    explanation = (
        f"<h2>Checker's explanation</h2><pre>{html.escape(summary.explanation)}</pre>"
        if summary.explanation
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>raft-chaos {verdict} seed {summary.seed}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:1em auto}}
th{{text-align:left;padding-right:1em}}td,th{{vertical-align:top}}img{{max-width:100%}}</style>
</head><body>
<h1>raft-chaos: {verdict}</h1>
<table>{table}</table>
{explanation}
<h2>Latency</h2><img alt="latency over time" src="{_data_uri(latency)}">
<h2>Throughput</h2><img alt="throughput over time" src="{_data_uri(throughput)}">
<h2>Faults (seconds since start)</h2>
<table><tr><th>start</th><th>end</th><th>fault</th></tr>{faults}</table>
</body></html>
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
