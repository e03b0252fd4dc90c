"""The readable transcript of a run (`--verbose`, `--golden`): one line per event or RPC.

Lines are only formatted when a sink is attached, so a quiet run pays one attribute test
per event. A `TranscriptObserver` (the `--html` replay recorder) receives the same events
unformatted, through the same hooks: the simulator has one place that reports what happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from raftkv.core.messages import (
    AnyMessage,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.kv.commands import decode_command


def describe_message(message: AnyMessage) -> str:
    """`AppendEntries term=2 prev=1/1 entries=2..3 commit=1`: the type and its key fields."""
    match message:
        case AppendEntries():
            entries = message.entries
            span = f"{entries[0].index}..{entries[-1].index}" if entries else "-"
            text = (
                f"term={message.term} prev={message.prev_log_index}/{message.prev_log_term}"
                f" entries={span} commit={message.leader_commit}"
            )
        case AppendEntriesResponse():
            outcome = "ok" if message.success else "reject"
            text = f"term={message.term} {outcome} match={message.match_index}"
            if not message.success:
                text += f" hint={message.conflict_index}/{message.conflict_term}"
        case RequestVote():
            text = (
                f"term={message.term} last={message.last_log_index}/{message.last_log_term}"
                + (" pre-vote" if message.pre_vote else "")
                + (" transfer" if message.transfer else "")
            )
        case RequestVoteResponse():
            text = f"term={message.term} {'granted' if message.granted else 'refused'}" + (
                " pre-vote" if message.pre_vote else ""
            )
        case InstallSnapshot():
            text = (
                f"term={message.term}"
                f" snapshot={message.last_included_index}/{message.last_included_term}"
                f" offset={message.offset} bytes={len(message.data)}"
                + (" done" if message.done else "")
            )
        case InstallSnapshotResponse():
            text = (
                f"term={message.term} snapshot={message.last_included_index}"
                f" next={message.next_offset}" + (" done" if message.done else "")
            )
        case TimeoutNow():
            text = f"term={message.term}"
    return f"{type(message).__name__} {text}"


def describe_entry(entry: Entry) -> str:
    """`3/2 put x=1`: index/term and what the entry does."""
    if entry.kind == EntryKind.NOOP:
        what = "no-op"
    elif entry.kind == EntryKind.MEMBERSHIP:
        what = "membership"
    else:
        try:
            command = decode_command(entry.data)
        except msgspec.DecodeError:
            what = f"{len(entry.data)} bytes"
        else:
            what = f"{command.op} {command.key}" + (
                f"={command.value}" if command.value is not None else ""
            )
    return f"{entry.index}/{entry.term} {what}"


class TranscriptObserver(Protocol):
    """Receives every transcript event as it happens (see `raftkv.sim.replay`)."""

    def event(self, tick: int, text: str) -> None: ...

    def rpc(
        self, tick: int, message: AnyMessage, note: str, delivery_ticks: Sequence[int]
    ) -> None: ...

    def held(self, tick: int, message: AnyMessage, until: int) -> None:
        """`message`, due at `tick`, waits for its paused receiver until tick `until`."""


class Transcript:
    def __init__(
        self,
        sink: Callable[[str], None] | None = None,
        observer: TranscriptObserver | None = None,
    ) -> None:
        self.sink = sink
        self.observer = observer
        # The one flag the hot paths test: nothing is formatted or recorded when it is off.
        self.enabled = sink is not None or observer is not None

    def line(self, tick: int, text: str) -> None:
        if self.sink is not None:
            self.sink(f"{tick:>6}  {text}")
        if self.observer is not None:
            self.observer.event(tick, text)

    def rpc(
        self, tick: int, message: AnyMessage, note: str = "", delivery_ticks: Sequence[int] = ()
    ) -> None:
        """`delivery_ticks`: when each copy that left will arrive (none if it was lost)."""
        if self.sink is not None:
            suffix = f"  [{note}]" if note else ""
            self.sink(
                f"{tick:>6}  {message.sender} -> {message.to}  {describe_message(message)}{suffix}"
            )
        if self.observer is not None:
            self.observer.rpc(tick, message, note, delivery_ticks)

    def held(self, tick: int, message: AnyMessage, until: int) -> None:
        """No transcript line (the delivery shows when it happens); observers only."""
        if self.observer is not None:
            self.observer.held(tick, message, until)
