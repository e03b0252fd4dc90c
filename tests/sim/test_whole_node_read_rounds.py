"""The whole-node simulator runs raft-node's ReadIndex rounds (one in flight) unless
`--read-rounds-inflight-max` says otherwise: 0 replays the seed ranges found before
session 28 (a round per Ready), as the proofs of reach do (test_whole_node_reach.py)."""

from __future__ import annotations

import pytest

from raftkv.cli.sim import main
from raftkv.core.replication import Replication
from raftkv.sim.whole_node import WholeNodeOptions, run_whole_node


def limits_of_read_rounds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The leader's limit each time it started a read round."""
    seen: list[int] = []
    original = Replication._start_read_round

    def start_read_round(self: Replication) -> None:
        seen.append(self.node.config.read_rounds_inflight_max)
        original(self)

    monkeypatch.setattr(Replication, "_start_read_round", start_read_round)
    return seen


@pytest.mark.interpreted
@pytest.mark.parametrize(("given", "used"), [(None, 1), (0, 0), (3, 3)])
def test_the_nodes_get_the_limit_given(
    monkeypatch: pytest.MonkeyPatch, given: int | None, used: int
) -> None:
    seen = limits_of_read_rounds(monkeypatch)
    result = run_whole_node(WholeNodeOptions(seed=4, read_rounds_inflight_max=given))
    assert result.ok, "\n".join(result.report_lines())
    assert seen and set(seen) == {used}, seen


def test_the_option_replays_and_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    options = WholeNodeOptions(seed=1, read_rounds_inflight_max=0)
    assert options.replay_command().endswith(" --read-rounds-inflight-max 0")
    assert "--read-rounds" not in WholeNodeOptions(seed=1).replay_command()
    with pytest.raises(SystemExit):
        main(["--whole-node", "--seed", "1", "--read-rounds-inflight-max", "-1"])
    assert "expected 0 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--seed", "1", "--read-rounds-inflight-max", "1"])
    assert "--whole-node only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must not be negative"):
        WholeNodeOptions(seed=1, read_rounds_inflight_max=-1)
