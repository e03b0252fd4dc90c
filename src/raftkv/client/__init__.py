"""Client library for a raftkv cluster (SPEC §3): `RaftClient` (blocking) and
`AsyncRaftClient` (asyncio), with the same methods.

    from raftkv.addresses import parse_address_list
    from raftkv.client import RaftClient

    with RaftClient(parse_address_list("1,2,3", client_ports=True), timeout=5.0) as client:
        client.put("x", "1")              # WriteResult(leader=1, index=5)
        client.get("x").value             # "1"
"""

from typing import TYPE_CHECKING, Any

from raftkv.client.check import CheckReport, check_cluster
from raftkv.client.errors import (
    BadRequest,
    BadResponse,
    CasFailed,
    CheckIncomplete,
    CorruptLog,
    Forbidden,
    Inconsistent,
    LeaseNotFound,
    NoLeader,
    NotFound,
    NotLeader,
    OutcomeUnknown,
    RequestError,
    SessionExpired,
    StorageFailed,
    Timeout,
    TooLarge,
    Unauthenticated,
    Unreachable,
    WatchCompacted,
)
from raftkv.client.leases import (
    AsyncLeaseKeeper,
    LeaseGrant,
    LeaseInfo,
    LeaseKeepAlive,
    LeaseKeeper,
    LeaseList,
    LeaseSummary,
)
from raftkv.client.limits import DEFAULT_TIMEOUT_SECONDS
from raftkv.client.protocol import CONSISTENCY_LEVELS, NodeHealth
from raftkv.client.results import (
    AdminResult,
    KeyValue,
    Member,
    Membership,
    NodeStatus,
    RangeResult,
    ReadResult,
    StatusReport,
    TxnResult,
    WriteResult,
)
from raftkv.client.sync import RaftClient
from raftkv.client.watching import WatchEvent

if TYPE_CHECKING:
    from raftkv.client.async_client import AsyncRaftClient


def __getattr__(name: str) -> Any:
    # aiohttp takes longer to import than the whole blocking client, so the `raft-client`
    # command (which uses the blocking client) only pays for it when the asyncio one is used.
    if name == "AsyncRaftClient":
        from raftkv.client.async_client import AsyncRaftClient

        return AsyncRaftClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONSISTENCY_LEVELS",
    "DEFAULT_TIMEOUT_SECONDS",
    "AdminResult",
    "AsyncLeaseKeeper",
    "AsyncRaftClient",
    "BadRequest",
    "BadResponse",
    "CasFailed",
    "CheckIncomplete",
    "CheckReport",
    "CorruptLog",
    "Forbidden",
    "Inconsistent",
    "KeyValue",
    "LeaseGrant",
    "LeaseInfo",
    "LeaseKeepAlive",
    "LeaseKeeper",
    "LeaseList",
    "LeaseNotFound",
    "LeaseSummary",
    "Member",
    "Membership",
    "NoLeader",
    "NodeHealth",
    "NodeStatus",
    "NotFound",
    "NotLeader",
    "OutcomeUnknown",
    "RaftClient",
    "RangeResult",
    "ReadResult",
    "RequestError",
    "SessionExpired",
    "StatusReport",
    "StorageFailed",
    "Timeout",
    "TooLarge",
    "TxnResult",
    "Unauthenticated",
    "Unreachable",
    "WatchCompacted",
    "WatchEvent",
    "WriteResult",
    "check_cluster",
]
