"""`raft-client lock NAME [--ttl S] [-- CMD ...]`: hold a lease-backed lock while CMD runs, as
`etcdctl lock` does (SPEC §6, "Leases").

The lock is the key `NAME/<lease id>`, created only if absent and attached to a lease this
command keeps alive; its holder is the key under `NAME/` created first (the lowest
`create_index`). So waiters queue in the order they arrived, and a holder that dies loses
the lock when its lease expires. CMD runs once the lock is held; the lease is revoked (the
key deleted, the next waiter's turn) when CMD exits, or on Ctrl-C or SIGTERM. If the lease is
lost while CMD runs (not renewed for a TTL, say behind a partition) someone else may hold the
lock: CMD is terminated and the command exits 1 with `lock_lost`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from types import FrameType

from raftkv import errors
from raftkv.client import LeaseKeeper, RaftClient, RequestError

LOCK_TTL_DEFAULT_SECONDS = 10
# How often the holder looks whether CMD ended or the lease was lost.
CHILD_POLL_SECONDS = 0.05
# CMD's time to end after SIGTERM, before SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0
LOCK_KEY_VARIABLE = "RAFT_LOCK_KEY"
EXIT_LOCK_LOST = 1


class LockLost(RequestError):
    """The lock's lease was lost while its holder ran: another may hold the lock now."""

    code = "lock_lost"


def _lost(message: str, **fields: object) -> LockLost:
    return LockLost(message, {"message": message, **fields})


class _Terminated(BaseException):
    """SIGTERM arrived: unwind as Ctrl-C does, releasing the lock on the way."""


def _ttl(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"a TTL is a positive whole number of seconds: {text!r}")
    return int(text)


def add_lock_command(lock: argparse.ArgumentParser) -> None:
    lock.add_argument("name", metavar="NAME")
    lock.add_argument(
        "--ttl",
        type=_ttl,
        default=LOCK_TTL_DEFAULT_SECONDS,
        metavar="S",
        help=f"the lock's lease TTL in seconds (default {LOCK_TTL_DEFAULT_SECONDS})",
    )
    # CMD is everything after the first `--` (split off before parsing: see
    # `split_command`), so its own options are never taken for raft-client's.


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`lock NAME ... -- CMD ...`: the arguments before the first `--`, and CMD after it
    (None when there is no `--`)."""
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def lock_command(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    command: list[str] = list(getattr(args, "cmd", None) or [])
    with _sigterm_unwinds():
        try:
            return _hold(client, args.name, args.ttl, command)
        except _Terminated:
            return 128 + signal.SIGTERM


def _hold(client: RaftClient, name: str, ttl: int, command: list[str]) -> int:
    lease = client.lease_grant(ttl).id
    keeper: LeaseKeeper | None = None
    child: subprocess.Popen[bytes] | None = None
    try:
        keeper = client.keep_lease_alive(lease, ttl)
        key = f"{name}/{lease}"
        _create(client, key, lease)
        _wait_for_turn(client, name, key, keeper)
        if not command:
            print(key, flush=True)
            _hold_until_lost(keeper)
        child = subprocess.Popen(command, env={**os.environ, LOCK_KEY_VARIABLE: key})
        while True:
            try:
                status = child.wait(timeout=CHILD_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                if keeper.lost.is_set():
                    _stop(child)
                    raise _lost(
                        f"the lock's lease {lease} was lost ({keeper.reason}); CMD was terminated",
                        lease=lease,
                        key=key,
                    ) from None
                continue
            return status if status >= 0 else 128 - status
    finally:
        if child is not None and child.poll() is None:
            _stop(child)
        if keeper is not None:
            keeper.close()
        with contextlib.suppress(errors.ClientError):
            client.lease_revoke(lease)


def _create(client: RaftClient, key: str, lease: int) -> None:
    """Create the lock's key with the lease, only if absent (a retry of the same write is
    applied once, so this never meets its own key)."""
    result = client.txn(
        compare=[{"key": key, "target": "create_index", "op": "==", "value": 0}],
        success=[{"op": "put", "key": key, "value": "", "lease": lease}],
    )
    if not result.succeeded:
        message = f"the lock key {key} exists already"
        raise RequestError(message, {"message": message, "key": key})


def _wait_for_turn(client: RaftClient, name: str, key: str, keeper: LeaseKeeper) -> None:
    """Until `key` is the oldest (lowest create_index) under `NAME/`: read the range, and
    while another key is older, watch the range from the index read (so no change between
    the read and the watch is missed) until a key of it is deleted, then read again. Our
    own key's deletion (the lease expired or was revoked) ends the wait as a lost lock."""
    while True:
        if keeper.lost.is_set():
            raise _lost(f"the lock's lease was lost while waiting ({keeper.reason})", key=key)
        oldest: tuple[int, str] | None = None
        read_at: int | None = None
        for page in client.range_pages(f"{name}/", keys_only=True):
            read_at = page.index if read_at is None else min(read_at, page.index)
            for kv in page.kvs:
                if oldest is None or kv.create_index < oldest[0]:
                    oldest = (kv.create_index, kv.key)
        if oldest is None:
            raise _lost(f"the lock key {key} vanished while waiting", key=key)
        if oldest[1] == key:
            return
        for event in client.watch(f"{name}/", from_index=read_at):
            if event.type == "delete":
                break


def _hold_until_lost(keeper: LeaseKeeper) -> None:
    """No CMD: hold the lock until interrupted; losing it is an error."""
    keeper.lost.wait()
    raise _lost(f"the lock's lease was lost ({keeper.reason})")


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
