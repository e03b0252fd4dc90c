"""A leader answering a forwarded request with an index the asking follower will wait to
apply (a proposal's, a read's, a membership change's) asks its core to tell the followers
as soon as that index commits (`RaftNode.announce_commit`): with commits told lazily
(RaftConfig.defer_commit_notices) the follower would otherwise wait for the next write's
entries or the leader's next tick."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raftkv.core.messages import Forward, ForwardKind, ForwardReply
from raftkv.server.forwarding import Forwarding


class _Node:
    role = "leader"
    leader_id = 1

    def __init__(self) -> None:
        self.announced: list[int] = []
        self.log = type("Log", (), {"committed": 11})()

    def propose(self, _payload: bytes) -> tuple[int, int]:
        return 7, 2

    def announce_commit(self, index: int) -> bool:
        self.announced.append(index)
        return True


class _Requests:
    async def read_index(self) -> int:
        return 9


class _Members:
    async def add(self, _member: int, _address: str) -> dict[str, Any]:
        return {"index": 13}

    async def remove(self, _member: int) -> dict[str, Any]:
        return {"index": 14}

    async def transfer_leadership(self, target: int, _timeout: float | None = None) -> int:
        return target


class _Host:
    id = 1

    def __init__(self, lease: bool) -> None:
        self.node = _Node()
        self.requests = _Requests()
        self.members = _Members()
        self.sent: list[ForwardReply] = []
        self.wakes = 0
        self._lease = lease

    def send(self, message: ForwardReply) -> None:
        self.sent.append(message)

    def lease_usable(self) -> bool:
        return self._lease

    def wake(self) -> None:
        self.wakes += 1


@pytest.mark.parametrize(
    ("kind", "payload", "lease", "index"),
    [
        ("propose", b"put", False, 7),
        ("read_index", b"", False, 9),
        ("lease_read", b"", True, 11),  # the lease holds: the leader's commit index
        ("lease_read", b"", False, 9),  # it does not: a ReadIndex round
        ("add", b'{"id": 4, "address": "h:1"}', False, 13),
        ("remove", b'{"id": 3}', False, 14),
    ],
)
def test_the_index_a_follower_will_wait_for_is_announced(
    kind: ForwardKind, payload: bytes, lease: bool, index: int
) -> None:
    host = _Host(lease)
    forwarding = Forwarding(host)  # type: ignore[arg-type]

    async def main() -> None:
        forwarding.received(
            Forward(to=1, term=0, from_id=2, request_id=5, kind=kind, payload=payload)
        )
        await asyncio.gather(*forwarding._serving)

    asyncio.run(main())
    [reply] = host.sent
    assert (reply.error, reply.index) == ("", index)
    assert host.node.announced == [index]
    assert host.wakes >= 1


def test_a_transfer_announces_nothing() -> None:
    host = _Host(False)
    forwarding = Forwarding(host)  # type: ignore[arg-type]

    async def main() -> None:
        forwarding.received(
            Forward(to=1, term=0, from_id=2, request_id=5, kind="transfer", payload=b'{"to": 3}')
        )
        await asyncio.gather(*forwarding._serving)

    asyncio.run(main())
    [reply] = host.sent
    assert reply.index == 3
    assert host.node.announced == []
