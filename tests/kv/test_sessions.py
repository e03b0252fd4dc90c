"""Client sessions in the KV store (Raft thesis §6.3): a retried write is applied at most once,
also after its session was forgotten (evicted) — then the request is refused
`session_expired`, never executed again. The rule is in `KVStore._may_open_session`."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv import Command, KVStore, Result, encode_command
from raftkv.kv.snapshot_format import Session as _Session

EXPIRED = Result(ok=False, error="session_expired")


class CountingStore(KVStore):
    """Records the (client_id, seq) and index of every write it executes."""

    def __init__(self, sessions_max: int | None = None) -> None:
        super().__init__(sessions_max)
        self.executed: list[tuple[str, int, int]] = []

    def execute(self, command: Command) -> Result:
        if command.client_id:
            self.executed.append((command.client_id, command.seq, self.applied_index))
        return super().execute(command)


def put(key: str, value: str, client_id: str, seq: int, after: int | None = None) -> bytes:
    return encode_command(
        Command(op="put", key=key, value=value, client_id=client_id, seq=seq, after_index=after)
    )


def put_if_absent(key: str, value: str, client_id: str, seq: int, after: int | None) -> bytes:
    command = Command(
        op="cas",
        key=key,
        value=value,
        if_absent=True,
        client_id=client_id,
        seq=seq,
        after_index=after,
    )
    return encode_command(command)


def delete(key: str, client_id: str = "", seq: int = 0) -> bytes:
    return encode_command(Command(op="del", key=key, client_id=client_id, seq=seq))


class Log:
    """Applies commands at consecutive indexes."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self.index = store.applied_index

    def apply(self, command: bytes) -> Result:
        self.index += 1
        result: Result = self.store.apply(self.index, command)
        return result

    def fill(self, sessions: int, prefix: str = "other") -> None:
        """`sessions` writes, each of a session of its own (so older ones are evicted)."""
        for number in range(sessions):
            assert self.apply(put("filler", str(number), f"{prefix}{number}", 1, self.index)).ok


def test_a_retry_of_a_forgotten_session_is_refused_not_applied_again() -> None:
    """The review's case: `cas if_absent` applied, the key deleted, the session evicted by
    newer ones; the retry of the same (client_id, seq) must not create the key again."""
    store = CountingStore(sessions_max=2)
    log = Log(store)
    first = put_if_absent("k", "v", "a", 1, after=0)
    assert log.apply(first).ok
    assert log.apply(delete("k")).ok
    log.fill(2)  # "a" is the least recently active of three: forgotten
    assert "a" not in store.sessions and store.evicted_through == 1
    assert log.apply(first) == EXPIRED  # the retry, with the same after_index
    assert store.get("k") is None
    assert [(client, seq) for client, seq, _ in store.executed].count(("a", 1)) == 1
    assert "a" not in store.sessions  # a refusal opens no session


def test_without_after_index_only_seq_1_opens_a_session() -> None:
    """A client that sends no after_index: seq 1 is a new session; a later seq with no
    session means the session was forgotten, and is refused."""
    store = KVStore(sessions_max=1)
    log = Log(store)
    assert log.apply(put("k", "1", "a", 1)).ok
    assert log.apply(put("k", "2", "a", 2)).ok
    log.fill(1)
    assert log.apply(put("k", "2", "a", 2)) == EXPIRED  # a retry of seq 2
    assert log.apply(put("k", "3", "a", 3)) == EXPIRED  # a later write of the session
    assert store.get("k") == "2"
    assert log.apply(put("k", "new", "b", 1)).ok  # a first request, no marker: a new session


def test_after_index_opens_a_session_only_if_no_session_after_it_was_forgotten() -> None:
    store = KVStore(sessions_max=2)
    log = Log(store)
    log.fill(3)  # other0 (index 1) evicted
    assert store.evicted_through == 1
    assert log.apply(put("k", "x", "late", 7, after=0)) == EXPIRED  # at 4: 0 < 1
    # Sent after index 1 was known committed: no attempt of it can have been applied and
    # forgotten, so it is executed, whatever its seq.
    assert log.apply(put("k", "x", "fresh", 7, after=1)).ok
    assert store.sessions["fresh"].seq == 7
    log.fill(2, prefix="more")  # evicts other2, then fresh (last active at 5)
    assert store.evicted_through == 5
    # A brand-new client that has seen nothing (after_index 0) cannot be told from a
    # forgotten one: refused, though nothing of it was applied. It learns the refusal's
    # index and may then open a session.
    refused_at = log.index + 1
    assert log.apply(put("k", "y", "new", 1, after=0)) == EXPIRED
    assert log.apply(put("k", "y", "new2", 1, after=refused_at)).ok


def test_the_watermark_is_the_largest_last_activity_forgotten() -> None:
    store = KVStore(sessions_max=2)
    log = Log(store)
    assert log.apply(put("k", "1", "a", 1, after=0)).ok  # a: 1
    assert log.apply(put("k", "2", "b", 1, after=0)).ok  # b: 2
    # A retry answered from the session is activity too: "a" moves to the newest end.
    assert log.apply(put("k", "1", "a", 1, after=0)).ok  # a: 3
    assert list(store.sessions) == ["b", "a"]
    assert log.apply(put("k", "3", "c", 1, after=0)).ok  # evicts b (last active at 2)
    assert list(store.sessions) == ["a", "c"] and store.evicted_through == 2
    assert log.apply(put("k", "4", "d", 1, after=0)) == EXPIRED  # 0 < 2
    assert log.apply(put("k", "4", "d", 1, after=2)).ok  # evicts a (last active at 3)
    assert store.evicted_through == 3
    assert [session.last_index for session in store.sessions.values()] == [4, 6]
    # A stale request is activity as well, and keeps its refusal.
    assert log.apply(put("k", "5", "c", 2, after=0)).ok
    assert log.apply(put("k", "6", "c", 1, after=0)) == Result(ok=False, error="stale_request")


def test_a_delayed_first_attempt_landing_after_its_retry_was_forgotten_is_refused() -> None:
    """The first attempt carries after_index too: sent, delayed in the network, retried; the
    retry is applied and its session forgotten; then the first attempt arrives. Had only
    retries carried the marker, this seq-1 request would look new and run again."""
    store = CountingStore(sessions_max=1)
    log = Log(store)
    log.fill(1)
    attempt = put("k", "v", "a", 1, after=1)  # both attempts: after_index 1
    assert log.apply(attempt).ok  # the retry lands first, at 2
    assert log.apply(delete("k", "b", 1)).ok  # evicts a (evicted_through 2)
    assert log.apply(attempt) == EXPIRED  # the first attempt, late
    assert store.get("k") is None
    assert sum(1 for client, _, _ in store.executed if client == "a") == 1


def _state(store: KVStore) -> tuple[object, ...]:
    sessions = list(store.sessions.values())
    return store.data, store.applied_index, store.applied_hash, sessions, store.evicted_through


def test_snapshots_keep_the_sessions_and_the_watermark() -> None:
    store = KVStore(sessions_max=2)
    log = Log(store)
    log.fill(5)
    assert store.evicted_through == 3
    for data in (store.snapshot(), store.prepare_snapshot()()):
        restored = KVStore(sessions_max=2)
        restored.restore(data)
        assert _state(restored) == _state(store)
        # And it decides as the original does.
        assert Log(restored).apply(put("k", "v", "late", 1, after=2)) == EXPIRED
        assert Log(restored).apply(put("k", "v", "late", 1, after=3)).ok


def test_a_snapshot_from_before_the_watermark_restores_with_none() -> None:
    class OldSnapshot(msgspec.Struct):
        data: dict[str, str]
        applied_index: int
        applied_hash: bytes
        sessions: list[_Session] = []

    session = _Session("a", 3, Result(ok=True), 7)
    old = msgspec.msgpack.encode(OldSnapshot({"k": "v"}, 9, b"\x01" * 16, [session]))
    store = KVStore()
    store.restore(old)
    assert store.evicted_through == 0
    assert store.get("k") == "v" and store.applied_index == 9
    assert store.sessions["a"].seq == 3
    assert Log(store).apply(put("k", "w", "a", 3)) == Result(ok=True)  # answered, not applied
    assert store.get("k") == "v"


# --- properties ------------------------------------------------------------------------
CLIENTS = 3
# Actions: 0 a new write, 1 a retry, 2 an attempt arrives, 3 a stranger's write, 4 give up.
ACTIONS = st.sampled_from([0, 0, 1, 1, 2, 2, 2, 3, 3, 4])
STEPS = st.lists(
    st.tuples(ACTIONS, st.integers(0, CLIENTS - 1), st.integers(0, 50)),
    min_size=30,
    max_size=150,
)


@settings(max_examples=500, deadline=None)
@given(STEPS)
def test_no_write_is_executed_twice_however_its_attempts_arrive(
    steps: list[tuple[int, int, int]],
) -> None:
    """Clients follow the library's rule (every attempt carries the highest committed index
    the client saw answered before the write's first attempt); attempts are delayed,
    duplicated and delivered in any order; strangers' sessions push the table (of 2) along.
    No (client_id, seq) is ever executed twice."""
    store = CountingStore(sessions_max=2)
    log = Log(store)
    client_ids = [f"c{n}" for n in range(CLIENTS)]
    seqs = [0] * CLIENTS
    seen = [0] * CLIENTS  # the highest index each client saw in an answer
    writing: list[tuple[int, int] | None] = [None] * CLIENTS  # (seq, after_index)
    in_network: list[tuple[int, str, int, int]] = []  # (client, client_id, seq, after_index)
    strangers = 0
    for action, client, choice in steps:
        if action == 0 and writing[client] is None:  # a new write: its first attempt
            seqs[client] += 1
            writing[client] = (seqs[client], seen[client])
            in_network.append((client, client_ids[client], seqs[client], seen[client]))
        elif action == 1 and (current := writing[client]) is not None:  # a retry of it
            seq, after = current
            in_network.append((client, client_ids[client], seq, after))
        elif action == 2 and in_network:  # an attempt arrives (or a late duplicate)
            sender, client_id, seq, after = in_network.pop(choice % len(in_network))
            result = log.apply(put("k", f"{client_id}/{seq}", client_id, seq, after))
            if client_id == client_ids[sender] and writing[sender] == (seq, after):
                seen[sender] = log.index  # the client gets this answer
                writing[sender] = None
                if result == EXPIRED:
                    client_ids[sender] += "'"  # a new session
                    seqs[sender] = 0
        elif action == 3:  # another client's session
            strangers += 1
            log.apply(put("other", str(strangers), f"stranger{strangers}", 1, log.index))
        elif action == 4 and writing[client] is not None:  # gives up: outcome unknown
            writing[client] = None
    writes = [(client_id, seq) for client_id, seq, _ in store.executed]
    assert len(writes) == len(set(writes))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 3), st.one_of(st.none(), st.integers(0, 40))),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 60),
)
def test_a_replica_restored_from_a_snapshot_decides_as_one_that_applied_the_log(
    commands: list[tuple[int, int, int | None]], cut: int
) -> None:
    log = [
        put("k", str(number), f"c{client}", seq, after)
        for number, (client, seq, after) in enumerate(commands)
    ]
    whole = KVStore(sessions_max=2)
    results = [whole.apply(index, command) for index, command in enumerate(log, 1)]
    cut = min(cut, len(log))
    first = KVStore(sessions_max=2)
    for index, command in enumerate(log[:cut], 1):
        first.apply(index, command)
    second = KVStore(sessions_max=2)
    second.restore(first.snapshot())
    later = [second.apply(index, log[index - 1]) for index in range(cut + 1, len(log) + 1)]
    assert later == results[cut:]
    assert second.snapshot() == whole.snapshot()


def test_a_put_without_a_value_is_refused_alike_everywhere_never_a_crash() -> None:
    replicas = [KVStore(), KVStore()]
    for op in ("put", "cas"):
        command = encode_command(Command(op=op, key="k", if_absent=op == "cas"))
        results = [replica.apply(1 if op == "put" else 2, command) for replica in replicas]
        assert all(r.error == "bad_request" for r in results)
    assert replicas[0].applied_hash == replicas[1].applied_hash
