"""Replicated data structures ready to use ("batteries", as PySyncObj calls them):
`ReplCounter`, `ReplDict`, `ReplList`, `ReplSet`, `ReplQueue` and `ReplLock`.

    counter = ReplCounter()
    jobs = ReplQueue(maxsize=1000)
    with Node(1, listen=..., data_dir=..., peers=..., objects={"hits": counter, "jobs": jobs}):
        counter.inc()             # through the log: the new value, once applied here
        jobs.put({"id": 7})       # True, or False when full
        counter.get()             # local: what this replica holds now

Mutators are `@replicated` (replicated.py): called on any node they go through the log and
apply on every replica in log order, and the caller gets its own replica's result — or the
same built-in exception the Python type raises (`KeyError`, `IndexError`, `ValueError`,
`TypeError`), so the errors are the familiar ones. Every other method is a local read of
this replica: it may lag the leader; `node.read(lambda: d.get(key))` reads linearizably.
Reads return copies (a nested list read from a `ReplDict` is yours to change: changing it
changes nothing replicated).

Keys, items and values must be what embed/values.py carries: None, bool, int (within
-2**63 .. 2**64 - 1), float, str, bytes, and list, tuple, dict, set, frozenset of those
(dict keys and set members hashable: not list, dict or set). Anything else is refused
before it is proposed. A structure's initial contents, given to its constructor, must be
the same on every replica.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from raftkv.embed.replicated import replicated

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
D = TypeVar("D")

# A proposed call of a leader's duties: (method, args, kwargs).
LeaderCall = tuple[str, tuple[Any, ...], dict[str, Any]]

# MessagePack's integers: a counter must never hold an int the snapshots cannot carry.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
# How long a leader waits for an `expire` it proposed before proposing it again.
EXPIRE_RETRY_SECONDS = 1.0

_IMMUTABLE = (str, int, float, bool, bytes, type(None))


def _copy(value: T) -> T:
    """A copy of a stored value that shares nothing mutable with it."""
    if isinstance(value, _IMMUTABLE):
        return value
    return copy.deepcopy(value)


def _ordered(iterable: object, what: str) -> None:
    """Refuse an unordered argument where its order would become state: a set arrives on
    each replica as that process's own set, and sets of str/bytes/tuples iterate in an
    order that differs between processes (hash randomization)."""
    if isinstance(iterable, (set, frozenset)):
        raise TypeError(f"{what}: a set has no order the replicas share; pass a list")


def _number(value: object, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be an int or a float, not {type(value).__name__}")
    return value


class ReplCounter:
    """A replicated number (int, or float once a float is added): `add`, `sub`, `inc` and
    `set` are replicated and return the new value; `get` reads this replica."""

    def __init__(self, initial: int | float = 0) -> None:
        self._value: int | float = _number(initial, "the initial value")

    def _store(self, value: int | float) -> int | float:
        # Checked before storing: an int MessagePack cannot carry would break snapshots.
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise OverflowError(f"a ReplCounter holds ints from {INT_MIN} to {INT_MAX}")
        self._value = value
        return value

    @replicated
    def add(self, amount: int | float) -> int | float:
        """Add `amount`; the new value (`OverflowError` past the int range, unchanged)."""
        return self._store(self._value + _number(amount, "the amount"))

    @replicated
    def sub(self, amount: int | float) -> int | float:
        """Subtract `amount`; the new value."""
        return self._store(self._value - _number(amount, "the amount"))

    @replicated
    def inc(self) -> int | float:
        """Add one; the new value."""
        return self._store(self._value + 1)

    @replicated
    def set(self, value: int | float) -> int | float:
        """Set the value; returns it."""
        return self._store(_number(value, "the value"))

    def get(self) -> int | float:
        """This replica's value."""
        return self._value


class ReplDict(Generic[K, V]):
    """A replicated dict. Replicated, with `dict` semantics and errors: `set` (item
    assignment), `pop`, `popitem`, `setdefault`, `update`, `clear`. Local reads: `get`,
    `d[key]`, `key in d`, `len(d)`, iteration (over a copy of the keys), `keys`, `values`,
    `items` (lists), `copy` (a plain dict).

    Item assignment `d[key] = value` is not offered: with an `AsyncNode` a replicated call
    must be awaited, which an assignment cannot be. The order of keys is insertion order,
    the same on every replica."""

    def __init__(self, initial: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(initial or {})

    # --- replicated -----------------------------------------------------------------------
    @replicated
    def set(self, key: K, value: V) -> None:
        """`d[key] = value`."""
        self._data[key] = value

    @replicated
    def pop(self, key: K, *default: Any) -> Any:
        """Remove `key` and return its value, or `default` if given; `KeyError` if absent
        and no default."""
        return self._data.pop(key, *default)

    @replicated
    def popitem(self) -> tuple[K, V]:
        """Remove and return the last inserted (key, value); `KeyError` if empty."""
        return self._data.popitem()

    @replicated
    def setdefault(self, key: K, default: V | None = None) -> V | None:
        """The value of `key`, after setting it to `default` if it was absent."""
        data: dict[K, V | None] = self._data  # type: ignore[assignment]
        return data.setdefault(key, default)

    @replicated
    def update(self, other: Mapping[K, V] | Iterable[tuple[K, V]] = (), /, **kwargs: V) -> None:
        """As `dict.update`: a mapping or (key, value) pairs (a list, not a set: its order
        would differ between replicas), then keyword items."""
        _ordered(other, "update")
        data: dict[Any, Any] = self._data
        data.update(other, **kwargs)

    @replicated
    def clear(self) -> None:
        self._data.clear()

    # --- local reads ----------------------------------------------------------------------
    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: Any = None) -> Any:
        """The value of `key` (a copy), or `default` if absent."""
        return _copy(self._data.get(key, default))

    def __getitem__(self, key: K) -> V:
        return _copy(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def keys(self) -> list[K]:
        return list(self._data)

    def values(self) -> list[V]:
        return [_copy(value) for value in list(self._data.values())]

    def items(self) -> list[tuple[K, V]]:
        return [(key, _copy(value)) for key, value in list(self._data.items())]

    def copy(self) -> dict[K, V]:
        return {key: _copy(value) for key, value in list(self._data.items())}

    def __repr__(self) -> str:
        return f"ReplDict({self._data!r})"


class ReplList(Generic[T]):
    """A replicated list. Replicated, with `list` semantics and errors: `append`, `extend`,
    `insert`, `pop`, `remove`, `set` (item assignment), `clear`. Local reads: `l[i]` and
    `l[i:j]`, `get`, `len`, `in`, iteration (over a copy), `index`, `count`, `copy`."""

    def __init__(self, initial: Iterable[T] = ()) -> None:
        self._data: list[T] = list(initial)

    # --- replicated -----------------------------------------------------------------------
    @replicated
    def append(self, item: T) -> None:
        self._data.append(item)

    @replicated
    def extend(self, items: Iterable[T]) -> None:
        """Append the items of a list or tuple (not of a set: replicas would order it
        differently)."""
        _ordered(items, "extend")
        self._data.extend(items)

    @replicated
    def insert(self, index: int, item: T) -> None:
        self._data.insert(index, item)

    @replicated
    def pop(self, index: int = -1) -> T:
        """Remove and return the item at `index` (the last by default); `IndexError` if
        the list is empty or the index out of range."""
        return self._data.pop(index)

    @replicated
    def remove(self, item: T) -> None:
        """Remove the first item equal to `item`; `ValueError` if there is none."""
        self._data.remove(item)

    @replicated
    def set(self, index: int, item: T) -> None:
        """`l[index] = item`; `IndexError` if out of range."""
        self._data[index] = item

    @replicated
    def clear(self) -> None:
        self._data.clear()

    # --- local reads ----------------------------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return _copy(self._data[index])

    def get(self, index: int) -> T:
        return _copy(self._data[index])

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, item: object) -> bool:
        return item in self._data

    def __iter__(self) -> Iterator[T]:
        return iter(self.copy())

    def index(self, item: T) -> int:
        return self._data.index(item)

    def count(self, item: T) -> int:
        return self._data.count(item)

    def copy(self) -> list[T]:
        return [_copy(item) for item in list(self._data)]

    def __repr__(self) -> str:
        return f"ReplList({self._data!r})"


class ReplSet(Generic[T]):
    """A replicated set. Replicated, with `set` semantics and errors: `add`, `discard`,
    `remove` (`KeyError` if absent), `update`, `clear`. Local reads: `in`, `len`,
    iteration (over a copy), `copy` (a plain set).

    There is no `pop`: which member a set pops depends on the process's string hashing, so
    replicas would pop different ones. Iteration order may differ between replicas too
    (the members agree)."""

    def __init__(self, initial: Iterable[T] = ()) -> None:
        self._data: set[T] = set(initial)

    @replicated
    def add(self, item: T) -> None:
        self._data.add(item)

    @replicated
    def discard(self, item: T) -> None:
        self._data.discard(item)

    @replicated
    def remove(self, item: T) -> None:
        """Remove `item`; `KeyError` if it is not a member."""
        self._data.remove(item)

    @replicated
    def update(self, *others: Iterable[T]) -> None:
        """Add the members of each iterable (list, tuple, set, frozenset, dict keys)."""
        self._data.update(*others)

    @replicated
    def clear(self) -> None:
        self._data.clear()

    def __contains__(self, item: object) -> bool:
        return item in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._data))

    def copy(self) -> set[T]:
        return set(self._data)  # members are hashable values: immutable

    def __repr__(self) -> str:
        return f"ReplSet({self._data!r})"


class ReplQueue(Generic[T]):
    """A replicated FIFO queue. Replicated: `put` (False, and nothing added, when
    `maxsize` items are queued; `maxsize` 0 is unbounded), `get` (the oldest item;
    `IndexError` when empty — a replicated queue cannot block). Local reads: `qsize`,
    `len`, `empty`, `full`, `peek` (the oldest item, not removed)."""

    def __init__(self, maxsize: int = 0) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError("maxsize is an int >= 0 (0: unbounded)")
        self.maxsize = maxsize
        self._items: deque[T] = deque()

    # A deque is not a value snapshots carry: the queue says how to store itself.
    def __raft_state__(self) -> dict[str, Any]:
        return {"maxsize": self.maxsize, "items": list(self._items)}

    def __raft_restore__(self, state: Any) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("items"), list):
            raise ValueError("not the state of a ReplQueue")
        maxsize = state.get("maxsize", 0)
        if not isinstance(maxsize, int):
            raise ValueError("not the state of a ReplQueue")
        self.maxsize = maxsize
        self._items = deque(state["items"])

    @replicated
    def put(self, item: T) -> bool:
        """Queue `item`: True, or False (not queued) if the queue is full."""
        if self.maxsize and len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        return True

    @replicated
    def get(self) -> T:
        """Remove and return the oldest item; `IndexError` if the queue is empty."""
        if not self._items:
            raise IndexError("get from an empty ReplQueue")
        return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return bool(self.maxsize) and len(self._items) >= self.maxsize

    def peek(self) -> T:
        """The oldest item, left in the queue; `IndexError` if the queue is empty."""
        try:
            return _copy(self._items[0])
        except IndexError:
            raise IndexError("peek into an empty ReplQueue") from None

    def __repr__(self) -> str:
        return f"ReplQueue({list(self._items)!r}, maxsize={self.maxsize})"


class ReplLock:
    """Named locks that expire unless renewed, with expiry decided by the leader and
    replicated, so every replica agrees on who holds what.

    - `acquire(name, holder, ttl_seconds)`: True if `holder` now holds `name` (it was free,
      or `holder` already held it: a renewal, with the new ttl); False if another holds it.
    - `renew(name, holder)`: True if `holder` held it (renewed for its ttl), else False.
    - `release(name, holder)`: True if `holder` held it (now free), else False.
    - Local reads: `holder(name)`, `locks()` ({name: holder}).

    Holders and names are str, chosen by the caller (a holder id unique to each process,
    as PySyncObj's `host:pid:id`). A holder must renew well within its ttl.

    Expiry. Replicated state holds, per lock, (holder, ttl, revision): the revision is a
    number taken, from one counter of this object, by each acquire and renew. The clock
    appears in no replicated state and no result. The leader keeps local deadlines
    (`_raftkv_*` attributes: not in snapshots, kept across restores) through two hooks the
    node calls on it: `__raft_became_leader__(now)` sets every held lock's deadline to
    now + ttl, and `__raft_leader_duties__(now)`, called about every 0.1 s, sets the
    deadline of each lock acquired or renewed since its last call to now + ttl, and
    proposes `expire(name, holder, revision)` for each lock whose deadline has passed.
    `expire` frees the lock only if its holder and revision still match: a renewal applied
    between the duty and the expire wins.

    Guarantee, with D the interval between duty calls (and measured by the leader's
    monotonic clock, which is what decides): a lock is freed by expiry only once at least
    ttl has passed, on the clock of the leader that proposed the expire, since that leader
    applied the holder's last acquire or renew, or since it became leader if that was
    later. A call is applied after it was sent, so a holder whose acquire or renew was sent
    at t holds the lock until at least t + ttl. A holder that stops renewing, last applied
    by the leader at t, loses the lock by t + ttl + 2D + the time to commit the expire
    (D to notice the renewal, D between duties), if that leader stays. A leader change
    restarts the count from the new leader's election: the lock is then lost by
    b + ttl + 2D + the commit time, b being when the last leader took over — at most about
    one election timeout after the old leader failed, so a leader change may extend a lock
    by up to ttl + an election timeout (as etcd's leases; expiring earlier would need the
    old leader's clock, which the new leader does not have).
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[str, float, int]] = {}
        self._revision = 0
        # Local to this replica (used where it leads).
        self._raftkv_deadlines: dict[str, float] = {}
        # Locks acquired or renewed since the last duties: their deadline is set then.
        self._raftkv_renewed: set[str] = set()
        # Expires proposed and not yet applied: name -> (revision, when proposed).
        self._raftkv_expiring: dict[str, tuple[int, float]] = {}

    # --- replicated -----------------------------------------------------------------------
    def _grant(self, name: str, holder: str, ttl: float) -> None:
        self._revision += 1
        self._locks[name] = (holder, ttl, self._revision)
        self._raftkv_renewed.add(name)

    def _free(self, name: str) -> None:
        del self._locks[name]
        self._raftkv_deadlines.pop(name, None)
        self._raftkv_renewed.discard(name)
        self._raftkv_expiring.pop(name, None)

    @replicated
    def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """True if `holder` now holds `name` for `ttl_seconds` (a renewal if it held it
        already), False if another holder does. `ValueError` unless ttl_seconds is a
        positive finite number; `TypeError` unless name and holder are str."""
        _check_name(name, holder)
        ttl = _number(ttl_seconds, "ttl_seconds")
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl_seconds must be positive and finite")
        current = self._locks.get(name)
        if current is not None and current[0] != holder:
            return False
        self._grant(name, holder, float(ttl))
        return True

    @replicated
    def renew(self, name: str, holder: str) -> bool:
        """True if `holder` held `name` (held now for its ttl again), else False."""
        _check_name(name, holder)
        current = self._locks.get(name)
        if current is None or current[0] != holder:
            return False
        self._grant(name, holder, current[1])
        return True

    @replicated
    def release(self, name: str, holder: str) -> bool:
        """True if `holder` held `name` (free now), else False."""
        _check_name(name, holder)
        current = self._locks.get(name)
        if current is None or current[0] != holder:
            return False
        self._free(name)
        return True

    @replicated
    def expire(self, name: str, holder: str, revision: int) -> bool:
        """Proposed by the leader's duties: free `name` if `holder` still holds it at
        `revision` (not renewed since the leader saw its deadline pass). True if freed."""
        current = self._locks.get(name)
        if current is None or current[0] != holder or current[2] != revision:
            return False
        self._free(name)
        return True

    # --- leader hooks (local) -------------------------------------------------------------
    def __raft_became_leader__(self, now: float) -> None:
        """This replica now leads: every held lock gets a full ttl from `now` (monotonic
        seconds), never less, whatever the old leader's deadlines were."""
        self._raftkv_deadlines = {name: now + ttl for name, (_h, ttl, _r) in self._locks.items()}
        self._raftkv_renewed.clear()
        self._raftkv_expiring.clear()

    def __raft_leader_duties__(self, now: float) -> list[LeaderCall]:
        """The expires to propose at `now` (monotonic seconds), in log order of the locks."""
        deadlines = self._raftkv_deadlines
        expiring = self._raftkv_expiring
        for name in self._raftkv_renewed:
            lock = self._locks.get(name)
            if lock is not None:
                deadlines[name] = now + lock[1]
                expiring.pop(name, None)
        self._raftkv_renewed.clear()
        # Locks gone (released, expired, or not in a restored snapshot) leave no deadline.
        for name in [name for name in deadlines if name not in self._locks]:
            del deadlines[name]
        for name in [name for name in expiring if name not in self._locks]:
            del expiring[name]
        calls: list[LeaderCall] = []
        for name, (holder, ttl, revision) in self._locks.items():
            deadline = deadlines.get(name)
            if deadline is None:  # held with no deadline here (restored): a full ttl
                deadlines[name] = now + ttl
                continue
            if now < deadline:
                continue
            pending = expiring.get(name)
            if (
                pending is not None
                and pending[0] == revision
                and now < pending[1] + EXPIRE_RETRY_SECONDS
            ):
                continue  # proposed lately, not applied yet
            expiring[name] = (revision, now)
            calls.append(("expire", (name, holder, revision), {}))
        return calls

    # --- local reads ----------------------------------------------------------------------
    def holder(self, name: str) -> str | None:
        """Who holds `name` on this replica (None: free). A lock past its deadline is
        held until its expire is applied."""
        lock = self._locks.get(name)
        return None if lock is None else lock[0]

    def locks(self) -> dict[str, str]:
        """{name: holder} of the locks held on this replica."""
        return {name: lock[0] for name, lock in list(self._locks.items())}

    def __repr__(self) -> str:
        return f"ReplLock({self.locks()!r})"


def _check_name(name: object, holder: object) -> None:
    if not isinstance(name, str) or not isinstance(holder, str):
        raise TypeError("a lock's name and holder are str")
