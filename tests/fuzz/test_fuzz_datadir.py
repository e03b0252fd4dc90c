"""The data dir's meta.json (storage/datadir.py), peers.json and removal_notices.json
(server/peers_file.py): whatever they hold, opening the data dir succeeds or raises
`StorageError` (`Corruption` for an unreadable meta.json, `DataDirMismatch` for another
node's or version's); `load_peer_addresses` and `load_removal_notices` return what they
hold or raise `ValueError`; all round-trip."""

from __future__ import annotations

import json
import os
import tempfile

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.errors import StorageError
from raftkv.server.peers_file import (
    PEERS_FILE_NAME,
    REMOVAL_NOTICES_FILE_NAME,
    load_peer_addresses,
    load_removal_notices,
    save_peer_addresses,
    save_removal_notices,
)
from raftkv.storage.datadir import DATA_DIR_FORMAT_VERSION, META_FILE_NAME, open_data_dir
from raftkv.storage.filesystem import OS_FILE_SYSTEM

from .fuzzing import any_text, deep_json, edge_integers, fuzz, mutated, raises_only

NODE_ID = 1

valid_meta = st.fixed_dictionaries(
    {
        "format_version": st.just(DATA_DIR_FORMAT_VERSION),
        "node_id": st.just(NODE_ID),
        "cluster_id": st.none() | any_text,
        "joined_index": st.integers(0, 2**62),
    }
).map(msgspec.json.encode)
odd_meta = (
    st.fixed_dictionaries(
        {
            "format_version": edge_integers | st.floats() | any_text,
            "node_id": edge_integers | st.none(),
            "cluster_id": st.none() | any_text | edge_integers,
            "joined_index": edge_integers | st.floats(allow_nan=False),
        }
    )
    .map(json.dumps)
    .map(str.encode)
)


def _open(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, META_FILE_NAME), "wb") as file:
            file.write(content)
        data_dir = raises_only(open_data_dir, StorageError, directory, NODE_ID)
        if data_dir is not None:
            assert data_dir.node_id == NODE_ID
            data_dir.close()


@fuzz
@given(content=st.one_of(st.binary(max_size=80), mutated(valid_meta), odd_meta))
@example(content=b'{"format_version":1,"node_id":1,"cluster_id":"\xff"}')
@example(content=b'{"format_version":1,"node_id":1,"zz":' + deep_json(100_000) + b"}")
def test_any_meta_json_opens_or_raises_storage_error(content: bytes) -> None:
    _open(content)


peer_maps = st.dictionaries(
    st.integers(1, 2**31 - 1),
    st.tuples(st.sampled_from(["127.0.0.1", "h", "::1", "10.0.0.2"]), st.integers(0, 65535)),
    max_size=4,
)
valid_peers = peer_maps.map(
    lambda addresses: json.dumps({str(k): f"{h}:{p}" for k, (h, p) in addresses.items()}).encode()
)


def _load_peers(content: bytes) -> dict[int, tuple[str, int]] | None:
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, PEERS_FILE_NAME), "wb") as file:
            file.write(content)
        return raises_only(load_peer_addresses, ValueError, directory, OS_FILE_SYSTEM)


@fuzz
@given(content=st.one_of(st.binary(max_size=80), mutated(valid_peers)))
@example(content=b'{"1": "h:1", "2": ' + deep_json(100_000) + b"}")
@example(content=b'{"1": 5}')
@example(content=b'{"1e400": "h:1"}')
@example(content=b'{"' + b"9" * 5000 + b'": "h:1"}')
def test_any_peers_json_loads_or_raises_value_error(content: bytes) -> None:
    addresses = _load_peers(content)
    if addresses is not None:
        assert all(0 <= port <= 65535 for _host, port in addresses.values())


@fuzz
@given(addresses=peer_maps)
def test_peer_addresses_round_trip(addresses: dict[int, tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        save_peer_addresses(directory, addresses, OS_FILE_SYSTEM)
        assert load_peer_addresses(directory, OS_FILE_SYSTEM) == addresses


notice_maps = st.dictionaries(
    st.integers(1, 2**31 - 1),
    st.tuples(
        st.tuples(st.sampled_from(["127.0.0.1", "h", "::1"]), st.integers(0, 65535)),
        st.integers(1, 2**62),
    ),
    max_size=4,
)
valid_notices = notice_maps.map(
    lambda notices: json.dumps(
        {
            str(node): {"address": f"{h}:{p}", "removed_at": index}
            for node, ((h, p), index) in notices.items()
        }
    ).encode()
)


@fuzz
@given(content=st.one_of(st.binary(max_size=80), mutated(valid_notices)))
@example(content=b'{"3": {"address": "h:1", "removed_at": true}}')
@example(content=b'{"3": {"address": "h:1", "removed_at": 0}}')
@example(content=b'{"3": ["h:1", 9]}')
@example(content=b'{"3": "h:1"}')
@example(content=b'{"3": {"address": 5, "removed_at": 9}}')
@example(content=b'{"3": ' + deep_json(100_000) + b"}")
def test_any_removal_notices_file_loads_or_raises_value_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, REMOVAL_NOTICES_FILE_NAME), "wb") as file:
            file.write(content)
        notices = raises_only(load_removal_notices, ValueError, directory, OS_FILE_SYSTEM)
    if notices is not None:
        assert all(index > 0 for _address, index in notices.values())


@fuzz
@given(notices=notice_maps)
def test_removal_notices_round_trip(notices: dict[int, tuple[tuple[str, int], int]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        save_removal_notices(directory, notices, OS_FILE_SYSTEM)
        assert load_removal_notices(directory, OS_FILE_SYSTEM) == notices
