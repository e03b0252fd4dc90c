"""The dashboard's gathering (server/dashboard.py) on real servers over the memory transport:
the forwarded `status` request any node answers, the shared gathering loop (started by the
first viewer, stopped after the last, at most VIEWERS_MAX), a stopped peer shown down within
2 s; and the two routes: `/ui` self-contained, both needing the read role, `?token=` taken
for them only."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from raftkv.server.auth import AccessPolicy, Identity, Role, TokenTable
from raftkv.server.dashboard import Dashboard, Timeline, ask_peer_status, encode_event
from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import Request, Response, StreamResponse
from raftkv.server.runtime import RaftServer
from tests.server.test_memory_stores import NODE_IDS, MemoryNode, leader_of, put, run_cluster
from tests.waiting import wait_until

DOWN_WITHIN_SECONDS = 2.0


def decode_event(event: bytes) -> dict[str, Any]:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and event.count(b"\n") == 2
    snapshot = json.loads(event[len(b"data: ") :])
    assert isinstance(snapshot, dict)
    return snapshot


def test_an_event_is_one_data_line_of_json() -> None:
    snapshot = {"text": "two\nlines", "nodes": []}
    assert decode_event(encode_event(snapshot)) == snapshot


def test_the_timeline_keeps_the_newest_events_only() -> None:
    timeline = Timeline(events_max=3)
    for term in range(5):
        timeline.role_changed("leader", term, 1)
    timeline.membership_changed(9, [1, 2], [3])
    events = timeline.events()
    assert [event.get("term") for event in events] == [3, 4, None]
    assert events[-1]["members"] == [1, 2] and events[-1]["learners"] == [3]


def test_every_node_answers_a_forwarded_status_request(tmp_path: Path) -> None:
    nodes = [MemoryNode(node_id) for node_id in NODE_IDS]

    async def ask_each_other(servers: list[RaftServer]) -> None:
        await wait_until(lambda: leader_of(servers) is not None, "a leader")
        leader = leader_of(servers)
        assert leader is not None
        status, _ = await put(leader, "k", "v")
        assert status == 200
        follower = next(server for server in servers if server is not leader)
        # A follower asks the leader, and the leader a follower: any node answers.
        await wait_until(lambda: follower.node.log.committed >= 2, "the write committed")
        about_leader = await ask_peer_status(follower.forwarding.ask, leader.id, 5.0)
        about_follower = await ask_peer_status(leader.forwarding.ask, follower.id, 5.0)
        assert (about_leader["id"], about_leader["role"]) == (leader.id, "leader")
        assert (about_follower["id"], about_follower["role"]) == (follower.id, "follower")
        assert about_leader["term"] == leader.node.term
        assert about_leader["log_tail"][-1] == [leader.node.log.last_index, leader.node.term]
        assert {peer["id"] for peer in about_leader["progress"]} == set(NODE_IDS) - {leader.id}
        assert about_follower["progress"] == []  # only a leader has progress to show
        assert about_leader["counters"]["writes"] >= 1
        roles = [event for event in about_leader["timeline"] if event["kind"] == "role"]
        assert roles[-1]["role"] == "leader" and roles[-1]["leader"] == leader.id

    asyncio.run(run_cluster(nodes, tmp_path, ask_each_other))


async def next_snapshot(stream: AsyncIterator[bytes]) -> dict[str, Any]:
    while True:
        event = await anext(stream)
        if event.startswith(b"data: "):
            return decode_event(event)


def test_the_gathering_shows_the_cluster_and_a_stopped_peer_down_within_2_s(
    tmp_path: Path,
) -> None:
    nodes = [MemoryNode(node_id) for node_id in NODE_IDS]

    async def watch(servers: list[RaftServer]) -> None:
        await wait_until(lambda: leader_of(servers) is not None, "a leader")
        leader = leader_of(servers)
        assert leader is not None
        for n in range(5):
            assert (await put(leader, f"k{n}", "v"))[0] == 200
        dashboard = leader.dashboard
        assert not dashboard.gathering
        stream = dashboard.open_stream()
        assert stream is not None and dashboard.gathering and dashboard.viewers == 1
        snapshot = await next_snapshot(stream)
        assert snapshot["served_by"] == leader.id and snapshot["leader"] == leader.id
        assert [node["id"] for node in snapshot["nodes"]] == list(NODE_IDS)
        assert all(node["status"] == "up" for node in snapshot["nodes"])
        assert {peer["id"] for peer in snapshot["progress"]} == set(NODE_IDS) - {leader.id}
        assert any(event["kind"] == "role" for event in snapshot["timeline"])

        follower = next(server for server in servers if server is not leader)
        await follower.stop()
        stopped_at = asyncio.get_running_loop().time()
        latest: dict[str, Any] = {}

        async def follower_down() -> bool:
            latest.update(await next_snapshot(stream))
            by_id = {node["id"]: node for node in latest["nodes"]}
            return bool(by_id[follower.id]["status"] == "down")

        await wait_until(follower_down, "the stopped follower shown down", DOWN_WITHIN_SECONDS)
        assert asyncio.get_running_loop().time() - stopped_at < DOWN_WITHIN_SECONDS
        assert latest["leader"] == leader.id  # two of three: still leading

        await stream.aclose()  # the last viewer leaves: the gathering stops
        assert dashboard.viewers == 0 and not dashboard.gathering

    asyncio.run(run_cluster(nodes, tmp_path, watch))


class _OneNode:
    id = 1

    def dashboard_report_dict(self) -> dict[str, Any]:
        return {"id": 1, "role": "leader", "term": 3, "commit_index": 0}

    def dashboard_peers(self) -> list[int]:
        return []

    def peer_connected(self, peer: int) -> bool:
        return False


async def _never_asked(peer: int, timeout_seconds: float) -> dict[str, Any]:
    raise AssertionError("no peers")


def test_viewers_share_one_gathering_and_are_limited() -> None:
    async def watch() -> None:
        dashboard = Dashboard(_OneNode(), _never_asked, viewers_max=2)
        first, second = dashboard.open_stream(), dashboard.open_stream()
        assert first is not None and second is not None
        assert dashboard.open_stream() is None  # the third is refused
        assert (await next_snapshot(first))["leader"] == 1
        assert (await next_snapshot(second))["leader"] == 1
        await first.aclose()
        assert dashboard.gathering  # one viewer still watches
        third = dashboard.open_stream()
        assert third is not None
        # At once on connect: the comment, then the latest snapshot without a gathering.
        rounds = dashboard.rounds
        assert (await anext(third)).startswith(b":")
        assert decode_event(await anext(third))["served_by"] == 1
        assert dashboard.rounds == rounds
        await second.aclose()
        await third.aclose()
        assert not dashboard.gathering and dashboard.viewers == 0

    asyncio.run(watch())


# --- the routes ---------------------------------------------------------------------------
READ_TOKEN = "read-token-0123456789"


class _Streams:
    def __init__(self) -> None:
        self.opened = 0

    def open_stream(self) -> AsyncIterator[bytes] | None:
        self.opened += 1

        async def events() -> AsyncIterator[bytes]:
            yield b"data: {}\n\n"

        return events()


class _Backend:
    id = 1
    storage_failure = None

    def __init__(self) -> None:
        self.dashboard = _Streams()


def _api(tokens: bool) -> ClientApi:
    table = TokenTable(
        [(Identity("reader", Role.READ), hashlib.sha256(READ_TOKEN.encode()).digest())]
    )
    access = AccessPolicy(table) if tokens else AccessPolicy()
    return ClientApi(_Backend(), value_bytes_max=1 << 20, access=access)  # type: ignore[arg-type]


def _get(api: ClientApi, target: str, authorization: str = "") -> Response | StreamResponse:
    path, _, query = target.partition("?")
    request = Request("GET", path, dict(parse_qsl(query)), b"", True, authorization=authorization)
    return asyncio.run(api.handle(request))


def test_ui_is_one_self_contained_page() -> None:
    response = _get(_api(tokens=False), "/ui")
    assert isinstance(response, Response)
    assert (response.status, response.content_type) == (200, "text/html; charset=utf-8")
    page = response.body.decode()
    for external in ("<script src=", "http://", "https://", "<link"):
        assert external not in page
    for stable_id in ('id="leader"', 'id="timeline"', 'id="throughput"', 'id="latency"'):
        assert stable_id in page
    assert "window.dashboard" in page and "/v1/ui/events" in page
    assert any(line.startswith("Content-Security-Policy:") for line in response.headers)


def test_ui_events_is_an_event_stream() -> None:
    response = _get(_api(tokens=False), "/v1/ui/events")
    assert isinstance(response, StreamResponse)
    assert (response.status, response.content_type) == (200, "text/event-stream")


@pytest.mark.parametrize("path", ["/ui", "/v1/ui/events"])
def test_the_dashboard_routes_need_the_read_role_by_header_or_query(path: str) -> None:
    api = _api(tokens=True)
    assert _get(api, path).status == 401
    assert _get(api, f"{path}?token=wrong-token").status == 401
    assert _get(api, path, f"Bearer {READ_TOKEN}").status == 200
    assert _get(api, f"{path}?token={READ_TOKEN}").status == 200


def test_a_token_in_the_query_is_refused_on_every_other_route() -> None:
    api = _api(tokens=True)
    assert _get(api, f"/v1/status?token={READ_TOKEN}").status == 401


def test_a_refused_viewer_is_told_overloaded() -> None:
    api = _api(tokens=False)
    backend = api.server
    assert isinstance(backend, _Backend)
    backend.dashboard.open_stream = lambda: None  # type: ignore[method-assign]
    response = _get(api, "/v1/ui/events")
    assert isinstance(response, Response) and response.status == 503
    assert json.loads(response.body)["error"] == "overloaded"


def test_a_stream_closed_before_its_first_event_lets_its_viewer_go() -> None:
    async def watch() -> None:
        dashboard = Dashboard(_OneNode(), _never_asked, viewers_max=1)
        stream = dashboard.open_stream()
        assert stream is not None and dashboard.viewers == 1
        await stream.aclose()  # a HEAD request: never iterated
        assert dashboard.viewers == 0 and not dashboard.gathering

    asyncio.run(watch())


class _FailingOnce(_OneNode):
    def __init__(self) -> None:
        self.calls = 0

    def dashboard_report_dict(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in a report")
        return super().dashboard_report_dict()


def test_a_failing_round_is_logged_and_the_next_one_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def watch() -> None:
        dashboard = Dashboard(_FailingOnce(), _never_asked, gather_seconds=0.01)
        stream = dashboard.open_stream()
        assert stream is not None
        assert (await next_snapshot(stream))["leader"] == 1
        await stream.aclose()

    asyncio.run(watch())
    assert "gathering the dashboard's snapshot failed" in caplog.text


def test_closing_the_dashboard_ends_every_stream() -> None:
    async def watch() -> None:
        dashboard = Dashboard(_OneNode(), _never_asked)
        stream = dashboard.open_stream()
        assert stream is not None
        await next_snapshot(stream)
        dashboard.close()
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        await stream.aclose()
        assert dashboard.viewers == 0 and not dashboard.gathering

    asyncio.run(watch())
