"""The deterministic fault-injecting simulator (SPEC §2, docs/simulator.md).

A whole cluster of sans-IO cores runs in one process on virtual time, over a network that
loses, duplicates and reorders messages, partitions and heals, with nodes that crash (also
between the steps of a Ready) and restart from their stores. The Raft safety properties are
checked after every step, liveness once the faults heal, and the client history for
linearizability at the end.
"""

from raftkv.sim.cluster import Simulation
from raftkv.sim.driver import CrashPoint, SimNode
from raftkv.sim.invariants import InvariantChecker, InvariantViolation
from raftkv.sim.options import FAULT_KINDS, SimulationOptions, parse_faults
from raftkv.sim.runner import SimulationResult, run_simulation

__all__ = [
    "FAULT_KINDS",
    "CrashPoint",
    "InvariantChecker",
    "InvariantViolation",
    "SimNode",
    "Simulation",
    "SimulationOptions",
    "SimulationResult",
    "parse_faults",
    "run_simulation",
]
