"""`raft-node --join`'s reading of the contacted node's answers (server/join.py): any
answer text becomes a JSON object (`bad_response` for anything else), and any members
list becomes the cluster's peers or raises `JoinFailed` (the join is retried, then
refused with a message) — never an exception that ends raft-node with a traceback."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.server.join import ClusterInfo, JoinFailed, answer_payload, cluster_info

from .fuzzing import any_text, deep_json, edge_integers, fuzz, mutated, raises_only

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | edge_integers | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
members = (
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 9) | json_values,
            "address": st.sampled_from(["h:9001", "[::1]:9002", "h:\u00b2", "h"]) | json_values,
        }
    )
    | json_values
)
member_lists = st.fixed_dictionaries(
    {"members": st.lists(members, max_size=3) | json_values, "cluster_id": any_text | json_values}
)
answers = st.fixed_dictionaries({}, optional={"index": json_values, "ok": json_values})


@fuzz
@given(
    text=st.one_of(
        st.text(max_size=60),
        mutated(member_lists.map(json.dumps).map(str.encode)).map(
            lambda data: data.decode("utf-8", "replace")
        ),
        member_lists.map(json.dumps),
    )
)
@example(text='{"members": ' + deep_json(100_000).decode() + "}")
@example(text="[1, 2]")
def test_any_answer_text_is_an_object(text: str) -> None:
    assert isinstance(answer_payload(text), dict)


@fuzz
@given(listing=member_lists, answer=answers)
@example(listing={"members": [{"id": 1e400, "address": "h:1"}]}, answer={})
@example(listing={"members": ["x"]}, answer={})
@example(listing={"members": [{"id": 2, "address": 5}]}, answer={})
@example(listing={"members": [{"address": "h:1"}]}, answer={})
@example(listing={"members": 7}, answer={})
def test_any_members_list_gives_peers_or_join_failed(
    listing: dict[str, Any], answer: dict[str, Any]
) -> None:
    info = raises_only(cluster_info, JoinFailed, listing, answer, 1)
    if info is not None:
        assert isinstance(info, ClusterInfo) and 1 not in info.peers
        assert all(0 <= port <= 65535 for _host, port in info.peers.values())


@fuzz
@given(
    peers=st.dictionaries(st.integers(2, 99), st.integers(1, 65535), max_size=4),
    cluster_id=any_text,
    index=st.integers(0, 2**62),
)
def test_a_members_list_gives_its_peers(peers: dict[int, int], cluster_id: str, index: int) -> None:
    listing = {
        "members": [{"id": 1, "address": "self:1"}]
        + [{"id": node, "address": f"h:{port}"} for node, port in peers.items()],
        "cluster_id": cluster_id,
    }
    text = json.dumps(listing)
    info = cluster_info(answer_payload(text), {"index": index}, 1)
    assert info.peers == {node: ("h", port) for node, port in peers.items()}
    assert (info.cluster_id, info.joined_index) == (cluster_id, index)
