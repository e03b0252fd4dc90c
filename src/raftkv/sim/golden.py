"""The golden path (`raft-sim --golden`): a fault-free, fixed-seed 3-node run that elects a
leader and commits `put x=1`, `put y=2`, `del x`, with its whole transcript and every node's
final state. tests/golden/golden.txt holds the expected bytes; regenerate it with
`raft-sim --golden > tests/golden/golden.txt` after a deliberate change of behaviour.
"""

from __future__ import annotations

import json
from functools import partial

from raftkv.kv.commands import Command, encode_command
from raftkv.sim.cluster import Simulation
from raftkv.sim.options import CoreTuning, SimulationOptions

GOLDEN_SEED = 1
GOLDEN_NODES = 3
GOLDEN_COMMANDS = (
    Command(op="put", key="x", value="1"),
    Command(op="put", key="y", value="2"),
    Command(op="del", key="x"),
)
# Pinned, so that changing the per-seed choices (options.CoreTuning) leaves the golden alone.
GOLDEN_TUNING = CoreTuning(
    message_bytes_max=1 << 20,
    inflight_messages_max=64,
    snapshot_chunk_bytes=1 << 18,
    snapshot_chunks_inflight_max=4,
)
# Generous bounds on a fault-free cluster: a few election timeouts each.
ELECTION_TICKS_MAX = 100
COMMIT_TICKS_MAX = 50


class GoldenPathFailed(Exception):
    pass


def describe_command(command: Command) -> str:
    if command.op == "put":
        return f"put {command.key}={command.value}"
    return f"{command.op} {command.key}"


def golden_lines() -> list[str]:
    lines: list[str] = [
        f"# raft-sim --golden: seed {GOLDEN_SEED}, {GOLDEN_NODES} nodes, no faults.",
        "# Columns: tick, then an event (node N: ...) or an RPC (from -> to  type  fields).",
    ]
    options = SimulationOptions(
        seed=GOLDEN_SEED,
        nodes=GOLDEN_NODES,
        ticks=0,
        faults=frozenset(),
        workload="none",
        verbose=True,
    )
    simulation = Simulation(options, sink=lines.append, tuning=GOLDEN_TUNING)
    transcript = simulation.transcript
    if not simulation.run_until(lambda: simulation.leader() is not None, ELECTION_TICKS_MAX):
        raise GoldenPathFailed("no leader elected")
    for command in GOLDEN_COMMANDS:
        leader = simulation.leader()
        assert leader is not None
        index, term = simulation.node(leader).propose(encode_command(command))
        transcript.line(
            simulation.now,
            f"client: {describe_command(command)} -> node {leader} (entry {index}/{term})",
        )
        simulation.nodes[leader].process_ready()
        if not simulation.run_until(
            partial(simulation.applied_everywhere, index), COMMIT_TICKS_MAX
        ):
            raise GoldenPathFailed(f"{describe_command(command)} was not applied everywhere")
        transcript.line(simulation.now, f"client: {describe_command(command)} committed")
    lines.append("# Final state")
    for node_id in simulation.node_ids:
        driver = simulation.nodes[node_id]
        node = simulation.node(node_id)
        log = node.log
        data = json.dumps(driver.kv.data, sort_keys=True)
        lines.append(
            f"node {node_id}: {node.role.value} term={node.term} leader={node.leader_id}"
            f" commit={log.committed} applied={driver.applied_index}"
            f" last={log.last_index}/{log.last_term} applied_hash={driver.kv.applied_hash}"
            f" data={data}"
        )
    hashes = {simulation.nodes[node_id].kv.applied_hash for node_id in simulation.node_ids}
    if len(hashes) != 1:
        raise GoldenPathFailed("nodes disagree on the applied state")
    return lines
