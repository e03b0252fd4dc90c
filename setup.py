"""Build hook: compiles the simulator's hot path with mypyc (docs: mypyc.readthedocs.io), and
builds the modules written in C (src/raftkv/kv/snapshot_native.c,
src/raftkv/kv/untracked_strings.c, src/raftkv/server/idle_spin.c).

`RAFTKV_PURE=1 pip install -e .` skips compilation (pure Python everywhere), and so does a
machine without a C compiler or Python's headers.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

# Modules compiled to C extensions (the rest stay interpreted).
MYPYC_MODULES = [
    # The sans-IO core. Not config.py nor ready_records.py: their frozen dataclasses
    # (RaftConfig, SoftState, ReadState, PeerStatus) could no longer be copied or pickled
    # once compiled (mypyc's __setstate__ assigns fields, which a frozen dataclass refuses).
    # Not entries.py, wire.py nor membership.py: msgspec Structs must stay interpreted (see
    # kv/store_records.py and kv/snapshot_format.py).
    "src/raftkv/core/follower.py",
    "src/raftkv/core/log.py",
    "src/raftkv/core/messages.py",  # native classes: a field read is a load (docstring)
    "src/raftkv/core/node.py",
    "src/raftkv/core/progress.py",
    "src/raftkv/core/quorum.py",
    "src/raftkv/core/ready.py",  # the Ready batch; its records are in ready_records.py
    "src/raftkv/core/replication.py",
    # The simulator's hot path. Not options.py: `--jobs` pickles SimulationOptions.
    "src/raftkv/sim/clients.py",
    "src/raftkv/sim/cluster.py",
    "src/raftkv/sim/draws.py",  # random.choice and randint, compiled (same numbers)
    "src/raftkv/sim/driver.py",
    "src/raftkv/sim/faults.py",
    "src/raftkv/sim/invariants.py",
    "src/raftkv/sim/multi_key_ops.py",  # the kv workload's ranges and transactions
    "src/raftkv/sim/network.py",
    "src/raftkv/sim/operator.py",
    "src/raftkv/sim/runner.py",
    "src/raftkv/sim/stale_reads.py",
    # Not store_records.py (RangePage, a frozen dataclass), snapshot_format.py (the
    # snapshot's msgspec Struct) nor session_records.py (SessionRecord, a msgspec Struct).
    # Not command_records.py (Command, Result: msgspec Structs), nor frozen_keys.py (a
    # collections.abc.Mapping, which a compiled class cannot inherit).
    "src/raftkv/kv/commands.py",  # decode_command: every replica, every entry
    "src/raftkv/kv/key_map.py",  # the store's keys: every read and write of a key
    "src/raftkv/kv/sessions.py",  # every replica's apply goes through its table
    "src/raftkv/kv/store.py",
    "src/raftkv/kv/txn.py",  # compare_holds, well_typed; its Structs are in txn_records.py
    "src/raftkv/sim/stats.py",
    "src/raftkv/sim/transcript.py",
    "src/raftkv/storage/memory.py",
    # A node's request path: every client request goes through its HTTP connection, its
    # handler and the request tracker (at C=64, 40-43 µs of the leader's CPU per write
    # against 49-50 interpreted: raft-bench --breakdown, two alternating pairs). Not
    # http_messages.py (Request and Response: msgspec Structs).
    "src/raftkv/server/http_server.py",
    "src/raftkv/server/http_api.py",
    # Reading a request's key, body and session: every write, every read (its errors are
    # in api_errors.py, which a compiled module cannot subclass from).
    "src/raftkv/server/api_requests.py",
    "src/raftkv/server/requests.py",
    # The Ready loop and the read path (session 15, three alternating pairs of raft-bench:
    # writes at C=64 median 14,028 → 17,033/s, linearizable reads 44,279 → 47,394/s).
    # Tests that replace RaftServer's methods are marked `interpreted`.
    "src/raftkv/server/runtime.py",
    "src/raftkv/server/ready_durability.py",  # the Ready loop's syncs (from runtime.py)
    # Every message between nodes and every write's trip through the WAL: the TCP transport
    # (its links, frames and send queues; TransportBase admits the interpreted
    # MemoryTransport as a subclass), the message codec, the file log and its records,
    # cache and index, and the Ready's bookkeeping (session 35, two clusters side by side,
    # eight alternating rounds each, twice: writes at C=64 16,491 and 17,579/s against
    # 15,987 and 16,985, members' CPU per write 85 and 80 µs against 89 and 82; C=1 p50
    # 0.750 ms against 0.772). Not streams.py nor async_cleanup.py: an `await` in a
    # `finally` must run interpreted (async_cleanup.py says why; tests/test_compiled_modules.py
    # checks every module listed here). Not sync_thread.py nor deferred_syncs.py: mypyc's C
    # for them names a `__thread`, which gcc reads as its keyword.
    "src/raftkv/transport/shared.py",
    "src/raftkv/transport/tcp.py",
    "src/raftkv/transport/tcp_peer.py",
    "src/raftkv/transport/framing.py",
    "src/raftkv/transport/send_queue.py",
    "src/raftkv/core/codec.py",
    "src/raftkv/storage/file_log.py",
    "src/raftkv/storage/wal_records.py",
    "src/raftkv/storage/wal_cache.py",
    "src/raftkv/storage/wal_index.py",
    "src/raftkv/server/stalls.py",
    "src/raftkv/server/write_stages.py",
    "src/raftkv/server/snapshots.py",  # tests that patch it are marked `interpreted`
    "src/raftkv/server/watch_history.py",
    # The linearizability check every seed ends with: validating the history, splitting it
    # into components, the map model and its search. Not checker_records.py (KeyResult,
    # CheckResult: public frozen dataclasses) nor history_records.py (Operation, History and
    # StepResult are msgspec Structs; IndexedOperation is in the public results). Not the
    # failure paths (explain.py, minimize.py, map_minimize.py), which a passing seed never
    # runs, nor the register model (model.py): the sims' histories are one multi-key
    # component.
    "src/raftkv/check/checker.py",
    "src/raftkv/check/components.py",
    "src/raftkv/check/history.py",
    "src/raftkv/check/history_multi_key.py",
    "src/raftkv/check/map_model.py",
    "src/raftkv/check/map_search.py",
    "src/raftkv/check/recorder.py",
    "src/raftkv/check/search.py",
    "src/raftkv/check/search_pruning.py",
    "src/raftkv/check/search_tables.py",
    "src/raftkv/check/witness.py",
]


def _can_compile() -> str | None:
    """Why the extensions cannot be built here, or None: mypyc needs a C compiler and
    Python's headers (a distribution's python3-dev), which a fresh machine may lack."""
    import shutil
    import sysconfig

    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    headers = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(headers, "Python.h")):
        return f"no Python headers in {headers}"
    return None


ext_modules = []
if os.environ.get("RAFTKV_PURE", "") in ("", "0"):
    missing = _can_compile()
    if missing is None:
        from mypyc.build import mypycify

        ext_modules = mypycify(
            ["--config-file", "pyproject.toml", *MYPYC_MODULES],
            opt_level=os.environ.get("RAFTKV_MYPYC_OPT", "3"),
        )
        # A snapshot's key map encoded without holding the GIL (kv/snapshot_format.py;
        # without it, msgspec encodes it, the same bytes, the event loop waiting meanwhile).
        ext_modules.append(
            Extension("raftkv.kv.snapshot_native", ["src/raftkv/kv/snapshot_native.c"])
        )
        # The state's lists and sets of keys kept out of the cyclic collector's walk
        # (kv/untracking.py; without it, a full collection visits every key, all requests
        # waiting).
        ext_modules.append(
            Extension("raftkv.kv.untracked_strings", ["src/raftkv/kv/untracked_strings.c"])
        )
        # The idle-priority thread that keeps the event loop's CPU out of halt for a window
        # after each Ready, without the GIL (server/idle_poll.py).
        ext_modules.append(
            Extension("raftkv.server.idle_spin", ["src/raftkv/server/idle_spin.c"])
        )
    else:
        # Still a working install, only slower (the simulator about 2x): say so.
        print(f"raftkv: {missing}; installing pure Python (not compiled with mypyc)")

setup(ext_modules=ext_modules)
