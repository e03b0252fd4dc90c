"""Every limit of the linearizability checker, in one place.

The search is exponential in the worst case (Wing & Gong 1993; Lowe 2017), so each loop that
could run away has a bound here, and running out of one yields the verdict "unknown" rather than
a hang or a wrong answer.
"""

from __future__ import annotations

# Search (per key). One "state" is one configuration (set of linearized operations, register
# value) entered by the depth-first search and remembered in its cache; the cache's memory grows
# with it, so this bounds both time and memory.
SEARCH_STATES_MAX = 1_000_000
# The first search is cut short here (when SEARCH_STATES_MAX is larger) to try proving a failure
# from a window around where it got stuck, before spending the whole budget.
SEARCH_FIRST_ATTEMPT_STATES = 100_000

# How often (in states entered) the search looks at the clock when a time budget is set; the
# clock is not read on every step because the inner loop is the hot path.
SEARCH_CLOCK_CHECK_INTERVAL_STATES = 1024

# A configuration is skipped when one entered before subsumes it (same definite operations and
# value, a subset of the indeterminate ones taken); looking that up scans this many of the
# latest candidates with the same definite operations and value (exact matches always count).
SUBSUMPTION_CANDIDATES_MAX = 8

# Preprocessing: rounds of removing indeterminate writes that nothing could observe. Each round
# can only enable more removals through indeterminate compare-and-sets, so a handful suffice.
PRUNE_ROUNDS_MAX = 8

# Shrinking a failing key's history, or localising a failure the full search could not finish:
# each check is a bounded search of a weakened sub-history, and these bound all of them
# together (states, not seconds, so that a simulator seed replays the same report).
MINIMIZE_CHECKS_MAX = 400
MINIMIZE_STATES_MAX = 500_000
MINIMIZE_STATES_PER_CHECK_MAX = 100_000
# The first window tried around the stuck operation, in operations on each side; it doubles.
LOCALIZE_WINDOW_OPERATIONS_MIN = 16
# What windows may spend after the first search attempt, before the full search: a history
# that is merely hard (but linearizable) should not pay much for this attempt.
LOCALIZE_EARLY_STATES_MAX = 50_000

# Explanations: how much of a long linearizable prefix and of the pending operations to print.
EXPLAIN_PREFIX_TAIL_OPERATIONS = 8
EXPLAIN_PENDING_OPERATIONS_MAX = 12
EXPLAIN_MINIMAL_OPERATIONS_MAX = 60

# Input: a line longer than this is rejected instead of being decoded (values are up to 1 MiB by
# SPEC §3, plus room for the other fields).
HISTORY_LINE_BYTES_MAX = 4 * 1024 * 1024
