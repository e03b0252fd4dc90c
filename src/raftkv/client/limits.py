"""Every timing and limit of the client, in one place."""

from __future__ import annotations

# The overall time one operation may take, retries and leader discovery included (SPEC §1).
DEFAULT_TIMEOUT_SECONDS = 5.0
# A node that does not accept the connection within this is treated as down, so a black-holed
# node costs about a second of the overall timeout before the next node is asked.
CONNECT_TIMEOUT_SECONDS = 1.0
# One attempt may take this share of the overall timeout (but at least the floor below), so a
# node that accepts and then hangs (a partitioned old leader) still leaves time to ask another.
ATTEMPT_TIMEOUT_SHARE = 0.5
ATTEMPT_TIMEOUT_SECONDS_MIN = 1.0
# No attempt but the first is begun with less than this left of the overall timeout, and a
# pause that would leave less lasts to the deadline instead: an attempt cut off before a node
# could answer tells nothing, and for a write it turns a refusal (never appended) into an
# outcome unknown.
LAST_ATTEMPT_SECONDS_MIN = 0.02
# Pause between rounds of failed attempts: short at first (an election takes a few hundred
# milliseconds), doubling up to the cap, jittered so many clients do not retry in lockstep.
BACKOFF_INITIAL_SECONDS = 0.02
BACKOFF_MAX_SECONDS = 0.5
# The largest answer read from a node. Values are at most 1 MiB by default; JSON escaping can
# grow one up to six times, and an operator may raise the value limit.
RESPONSE_BYTES_MAX = 64 << 20
# The largest backup read from a node (`GET /v1/snapshot`): the whole state machine, held in
# memory on both sides; the bound only stops a damaged or hostile answer.
BACKUP_BYTES_MAX = 16 << 30
# `check`: how many times fresh statuses are fetched when a node no longer remembers the hash
# at the common index (it keeps only a window of recent hashes, or restored a snapshot).
CHECK_ATTEMPTS_MAX = 5
# Nodes asked at once by `statuses()` and `check` (one thread or task each); a larger cluster
# is asked in waves.
FAN_OUT_NODES_MAX = 16
# Connections the asyncio client keeps open at once, over all nodes.
ASYNC_CONNECTIONS_MAX = 100
# `check`: the pause before fetching fresh statuses, doubling per attempt.
CHECK_RETRY_PAUSE_SECONDS = 0.05
# A write refused `session_expired` with no attempt that may have been applied is sent again
# under a new session at most this many times (each refusal is a committed log entry).
SESSION_RESENDS_MAX = 3
# The most keys a node answers per range page (SPEC §6, "Ranges").
RANGE_PAGE_KEYS_MAX = 10_000
