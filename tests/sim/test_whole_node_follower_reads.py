"""The whole-node simulator runs raft-node's follower reads (server/follower_reads.py): its
clients send reads to any node, and the linearizability check catches a follower that
reads without the leader's read index, or that lets a read take the answer of a forward
that left before it began. `--no-follower-reads` replays the seeds found before session 30
(tests/sim/test_whole_node_reach.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from raftkv.cli.sim import main
from raftkv.server.follower_reads import FollowerReads
from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node
from tests.sim import whole_node_defects as defects

# (the double, the options of the run that catches it)
REACH: dict[str, tuple[Callable[[], AbstractContextManager[None]], WholeNodeOptions]] = {
    # Caught at seed 7, which replicates quorum-first (and 27 more of seeds 1-40: 11 of the
    # 20 quorum-first ones, 17 of the others); at seed 4 (and 24 more) before session 45.
    "reads its own commit": (defects.follower_reads_its_own_commit, WholeNodeOptions(seed=7)),
    # Rarer: it needs a read queued at a follower behind a forward out, and a write
    # acknowledged in between; eight clients, caught at seed 76 (and 99, 100 of seeds 1-100;
    # at 16, 65, 76 ... before session 38's lazy commit notices; none of seeds 1-200 with
    # three clients).
    "shares the forward out": (
        defects.follower_reads_share_the_forward_out,
        WholeNodeOptions(seed=76, clients=8),
    ),
}


@pytest.mark.parametrize("defect", sorted(REACH))
def test_the_check_catches_the_defect_put_back(defect: str) -> None:
    double, options = REACH[defect]
    with double():
        result = run_whole_node(options)
    assert not result.ok
    assert "NOT LINEARIZABLE" in "\n".join(result.report_lines())


@pytest.mark.parametrize("defect", sorted(REACH))
def test_the_same_run_passes_with_the_fix(defect: str) -> None:
    _, options = REACH[defect]
    result = run_whole_node(options)
    assert result.ok, "\n".join(result.report_lines()[-3:])


@pytest.mark.parametrize(("follower_reads", "served"), [(True, True), (False, False)])
def test_followers_serve_reads_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, follower_reads: bool, served: bool
) -> None:
    calls = [0]
    original = FollowerReads.read_index

    async def read_index(reads: FollowerReads, kind: str) -> int:
        calls[0] += 1
        return await original(reads, kind)  # type: ignore[arg-type]

    monkeypatch.setattr(FollowerReads, "read_index", read_index)
    result = run_whole_node(WholeNodeOptions(seed=2, follower_reads=follower_reads))
    assert result.ok, "\n".join(result.report_lines()[-3:])
    assert (calls[0] > 0) == served, calls


def test_the_option_replays_and_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    options = WholeNodeOptions(seed=1, follower_reads=False)
    assert options.replay_command().endswith(" --no-follower-reads")
    assert "--no-follower-reads" not in WholeNodeOptions(seed=1).replay_command()
    with pytest.raises(SystemExit):
        main(["--seed", "1", "--no-follower-reads"])
    assert "--whole-node only" in capsys.readouterr().err
