"""raft-bench says why when a node of its cluster exits at start-up, instead of waiting out
the election deadline and blaming the election."""

import re
from pathlib import Path

import pytest

from raftkv.cli.bench import LocalCluster


def test_a_node_that_exits_at_start_up_is_named_with_its_log(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, ["--no-such-flag"], 3)
    cluster.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            cluster.leader_url()  # returns as soon as a node has exited, not after 30 s
    finally:
        for process in cluster.processes:
            process.kill()
            process.wait()
    message = str(stopped.value)
    # Whichever node's exit is seen first (all three refuse the flag).
    assert re.match(r"raft-bench: node [123] exited \(status 2\); the end of its log:", message)
    assert "--no-such-flag" in message  # argparse's own words, from the node's log
