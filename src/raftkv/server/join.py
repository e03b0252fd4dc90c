"""`raft-node --join HOST:PORT`: ask a running cluster (any member's client address) for its
cluster id and membership, and to add this node; the add is idempotent."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import TYPE_CHECKING, Any

from raftkv.addresses import format_address, parse_host_port
from raftkv.errors import RaftError
from raftkv.tls import url_scheme

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger("raftkv.node")

JOIN_ATTEMPTS_MAX = 20
JOIN_RETRY_SECONDS = 0.5
JOIN_REQUEST_TIMEOUT_SECONDS = 5.0


class JoinFailed(RaftError):
    pass


class JoinRefused(JoinFailed):
    """The cluster refused our credentials (401, 403): trying again cannot help."""


UNAUTHORIZED_STATUSES = (401, 403)


class ClusterInfo:
    def __init__(
        self, cluster_id: str, peers: dict[int, tuple[str, int]], joined_index: int = 0
    ) -> None:
        self.cluster_id = cluster_id
        self.peers = peers
        # The index of a configuration holding this node, from the add's answer.
        self.joined_index = joined_index


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    async with session.request(method, url, json=body) as response:
        payload = answer_payload(await response.text())
        if response.status in UNAUTHORIZED_STATUSES:
            raise JoinRefused(
                f"{url} answered {response.status}: {payload} (--join needs an admin token:"
                " --join-token or RAFTKV_JOIN_TOKEN)"
            )
        return response.status, payload


def answer_payload(text: str) -> dict[str, Any]:
    """An answer's JSON object; anything else (not JSON, nested past the recursion limit,
    not an object) as a `bad_response` object quoting its start."""
    try:
        payload = json.loads(text) if text else {}
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return {"error": "bad_response", "text": text[:200]}
    return payload


def cluster_info(members: dict[str, Any], answer: dict[str, Any], node_id: int) -> ClusterInfo:
    """The cluster that `GET /v1/members` (`members`) and a successful add (`answer`)
    describe; JoinFailed for a members list that is not the API's."""
    try:
        peers = {
            int(member["id"]): parse_host_port(member["address"])
            for member in members.get("members", [])
            if member.get("address") and int(member["id"]) != node_id
        }
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise JoinFailed(f"malformed members list: {error!r}") from None
    joined_index = answer.get("index")
    return ClusterInfo(
        str(members.get("cluster_id", "")),
        peers,
        joined_index if isinstance(joined_index, int) and not isinstance(joined_index, bool) else 0,
    )


async def join_cluster(
    contact: tuple[str, int],
    node_id: int,
    peer_address: tuple[str, int],
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ClusterInfo:
    """Learn the cluster and have the leader add us as a learner (following leader hints).
    `token`: the bearer token to present (a cluster with `--auth-tokens` asks an admin's).
    With `ssl_context` (`raftkv.tls.join_context`) the contact is asked over HTTPS."""
    # Imported here: only a joining node needs an HTTP client, and aiohttp is a tenth of a
    # second and tens of thousands of objects at every node's start.
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=JOIN_REQUEST_TIMEOUT_SECONDS)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # Without TLS, aiohttp's default connector: plain HTTP, exactly as before TLS existed.
    connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context is not None else None
    async with aiohttp.ClientSession(
        timeout=timeout, headers=headers, connector=connector
    ) as session:
        target = f"{url_scheme(ssl_context is not None)}://{format_address(contact)}"
        last_error = "no attempt made"
        for _ in range(JOIN_ATTEMPTS_MAX):
            try:
                status, members = await _request(session, "GET", f"{target}/v1/members")
                if status != 200:
                    raise JoinFailed(f"{target} answered {status}: {members}")
                status, answer = await _request(
                    session,
                    "POST",
                    f"{target}/v1/members",
                    {"id": node_id, "address": format_address(peer_address)},
                )
                if status == 421 and answer.get("leader_url"):
                    target = str(answer["leader_url"])
                    continue
                if status != 200:
                    raise JoinFailed(f"{target} refused to add node {node_id}: {answer}")
                info = cluster_info(members, answer, node_id)
                logger.info("joined cluster %s through %s", info.cluster_id, target)
                return info
            except JoinRefused:
                raise
            except (aiohttp.ClientError, TimeoutError, JoinFailed, ValueError) as error:
                last_error = str(error) or type(error).__name__
                logger.info("join attempt failed: %s", last_error)
            await asyncio.sleep(JOIN_RETRY_SECONDS)
        raise JoinFailed(f"could not join through {format_address(contact)}: {last_error}")
