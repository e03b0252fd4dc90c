"""When a snapshot is due (SnapshotTaker): every `snapshot_entries` entries for a small
state; for one whose last snapshot was `fraction_from_bytes` or more, also not before the
commands applied since add up to `log_fraction` of its size, so that a snapshot's cost
(in proportion to the state) per write stays the same however large the state grows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from raftkv.server.snapshots import SNAPSHOT_BYTES_DEFAULT, SnapshotTaker

MiB = 1 << 20


class Host:
    """Only what deciding needs: the applied index."""

    applied_index = 0


def taker(entries: int = 100, fraction: float = 0.25, from_bytes: int = MiB) -> SnapshotTaker:
    host: Any = Host()
    return SnapshotTaker(
        host,
        cast(Any, None),  # metrics: only taking one counts
        ThreadPoolExecutor(1),
        snapshot_entries=entries,
        trailing_entries_max=0,
        log_fraction=fraction,
        fraction_from_bytes=from_bytes,
    )


def applied(snapshots: SnapshotTaker, entries: int, command_bytes: int) -> bool:
    """Apply `entries` more entries of `command_bytes` each; whether a snapshot is due."""
    host: Any = snapshots.server
    host.applied_index += entries
    snapshots.note_applied_bytes(entries * command_bytes)
    return snapshots._due()


def test_a_small_state_snapshots_every_snapshot_entries() -> None:
    snapshots = taker()
    snapshots.last_bytes = MiB - 1
    assert not applied(snapshots, 99, 10)
    assert applied(snapshots, 1, 10)


def test_a_large_state_also_waits_for_a_fraction_of_its_size_in_commands() -> None:
    snapshots = taker()
    snapshots.last_bytes = 40 * MiB  # a quarter: 10 MiB of commands
    assert not applied(snapshots, 100, 100)
    assert not applied(snapshots, 100_000, 100)  # 9.6 MiB
    assert applied(snapshots, 5_000, 100)
    # ...and never before `snapshot_entries`, however big the commands.
    snapshots = taker()
    snapshots.last_bytes = 40 * MiB
    assert not applied(snapshots, 99, MiB // 2)


def test_no_fraction_means_entries_alone() -> None:
    snapshots = taker(fraction=0.0)
    snapshots.last_bytes = 400 * MiB
    assert applied(snapshots, 100, 1)


def test_64_mib_of_commands_is_always_enough() -> None:
    snapshots = taker(entries=0, fraction=10.0)  # never by entries
    snapshots.last_bytes = 1 << 40
    assert not applied(snapshots, 1_000, SNAPSHOT_BYTES_DEFAULT // 1_000 - 1)
    assert applied(snapshots, 1, MiB)


def test_the_size_comes_from_the_snapshot_loaded_at_start_up() -> None:
    snapshots = taker()
    snapshots.loaded(8 * MiB)
    assert snapshots.last_bytes == 8 * MiB
    assert not applied(snapshots, 100, 100)
