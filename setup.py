"""Build hook: compiles the simulator's hot path with mypyc (docs: mypyc.readthedocs.io).

`RAFTKV_PURE=1 pip install -e .` skips compilation (pure Python everywhere).
"""

from __future__ import annotations

import os

from setuptools import setup

# Modules compiled to C extensions (the rest stay interpreted).
MYPYC_MODULES = [
    # The sans-IO core. Not config.py nor ready_records.py: their frozen dataclasses
    # (RaftConfig, SoftState, ReadState, PeerStatus) could no longer be copied or pickled
    # once compiled (mypyc's __setstate__ assigns fields, which a frozen dataclass refuses).
    # Not messages.py nor membership.py: msgspec Structs must stay interpreted (see
    # kv/store_records.py and kv/snapshot_format.py).
    "src/raftkv/core/follower.py",
    "src/raftkv/core/log.py",
    "src/raftkv/core/node.py",
    "src/raftkv/core/progress.py",
    "src/raftkv/core/quorum.py",
    "src/raftkv/core/ready.py",  # the Ready batch; its records are in ready_records.py
    "src/raftkv/core/replication.py",
    # The simulator's hot path. Not options.py: `--jobs` pickles SimulationOptions.
    "src/raftkv/sim/clients.py",
    "src/raftkv/sim/cluster.py",
    "src/raftkv/sim/driver.py",
    "src/raftkv/sim/faults.py",
    "src/raftkv/sim/invariants.py",
    "src/raftkv/sim/network.py",
    "src/raftkv/sim/operator.py",
    "src/raftkv/sim/runner.py",
    "src/raftkv/sim/stale_reads.py",
    # Not store_records.py (RangePage, a frozen dataclass), snapshot_format.py (the
    # snapshot's msgspec Struct) nor sessions.py (tests patch its module constant and
    # methods).
    "src/raftkv/kv/store.py",
    "src/raftkv/sim/stats.py",
    "src/raftkv/sim/transcript.py",
    "src/raftkv/storage/memory.py",
    # The linearizability search every seed ends with (not checker.py: its results are
    # public frozen dataclasses).
    "src/raftkv/check/recorder.py",
    "src/raftkv/check/search.py",
    "src/raftkv/check/search_pruning.py",
    "src/raftkv/check/search_tables.py",
    "src/raftkv/check/witness.py",
]

ext_modules = []
if os.environ.get("RAFTKV_PURE", "") not in ("1", "true", "yes"):
    from mypyc.build import mypycify

    ext_modules = mypycify(
        ["--config-file", "pyproject.toml", *MYPYC_MODULES],
        opt_level=os.environ.get("RAFTKV_MYPYC_OPT", "3"),
    )

setup(ext_modules=ext_modules)
