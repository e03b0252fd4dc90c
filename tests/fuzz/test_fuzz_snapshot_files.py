"""Snapshot files (storage/snapshot_files.py): whatever a snapshot file holds — damaged
bytes, or a header and metadata rewritten with a valid checksum around wrong lengths,
types, huge or negative numbers, strings that are not UTF-8 or deep nesting — `load` returns
its (meta, data) or raises `Corruption` naming the file; saved snapshots load back."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.core.membership import Membership
from raftkv.core.ready import SnapshotMeta
from raftkv.errors import Corruption
from raftkv.storage.base import SnapshotRef
from raftkv.storage.snapshot_files import (
    SNAPSHOT_FORMAT_VERSION,
    SNAPSHOT_MAGIC,
    FileSnapshotStore,
    snapshot_file_name,
)

from .fuzzing import deep_msgpack, edge_integers, fuzz, mutated, raises_only

INDEX, TERM = 7, 3

metas = st.builds(
    SnapshotMeta,
    index=st.just(INDEX),
    term=st.just(TERM),
    membership=st.builds(
        Membership,
        voters=st.frozensets(st.integers(1, 9), max_size=3),
        addresses=st.dictionaries(st.integers(1, 9), st.text(max_size=10), max_size=2),
    ),
)


def file_bytes(meta_bytes: bytes, data: bytes, *, lengths: tuple[int, int] | None = None) -> bytes:
    """A snapshot file around `meta_bytes` and `data`, with a valid checksum."""
    meta_length, data_length = lengths or (len(meta_bytes), len(data))
    head = struct.pack("<8sIIQ", SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, meta_length, data_length)
    checksum = zlib.crc32(data, zlib.crc32(meta_bytes, zlib.crc32(head)))
    return head + struct.pack("<I", checksum) + meta_bytes + data


valid_files = st.builds(
    lambda meta, data: file_bytes(msgspec.msgpack.encode(meta), data), metas, st.binary(max_size=60)
)
# A peer address that is not UTF-8.
_NOT_UTF8 = (
    b"\x83\xa5index\x07\xa4term\x03\xaamembership\x82\xa6voters\x90\xa9addresses\x81\x01\xa1\xff"
)
odd_meta = st.one_of(
    st.binary(max_size=40),
    st.fixed_dictionaries(
        {
            "index": edge_integers | st.text(max_size=3),
            "term": edge_integers,
            "membership": st.just({"voters": []}),
        }
    ).map(msgspec.msgpack.encode),
    st.just(_NOT_UTF8),
    st.just(
        b"\x84\xa5index\x07\xa4term\x03\xaamembership\x81\xa6voters\x90\xa1z"
        + deep_msgpack(100_000)
    ),
)
rewritten_files = st.builds(
    file_bytes,
    odd_meta,
    st.binary(max_size=20),
    lengths=st.none()
    | st.tuples(edge_integers.map(lambda i: i % 2**32), edge_integers.map(lambda i: i % 2**64)),
)


def _load(content: bytes) -> tuple[SnapshotMeta, bytes] | None:
    with tempfile.TemporaryDirectory() as directory:
        store = FileSnapshotStore(directory)
        path = os.path.join(directory, snapshot_file_name(INDEX, TERM))
        with open(path, "wb") as file:
            file.write(content)
        return raises_only(store.load, Corruption, SnapshotRef(INDEX, TERM, path))


@fuzz
@given(content=st.one_of(st.binary(max_size=120), mutated(valid_files), rewritten_files))
@example(content=file_bytes(_NOT_UTF8, b""))
@example(
    content=file_bytes(
        b"\x84\xa5index\x07\xa4term\x03\xaamembership\x81\xa6voters\x90\xa1z"
        + deep_msgpack(100_000),
        b"",
    )
)
def test_any_snapshot_file_loads_or_raises_corruption(content: bytes) -> None:
    loaded = _load(content)
    if loaded is not None:
        meta, _data = loaded
        assert (meta.index, meta.term) == (INDEX, TERM)


@fuzz
@given(meta=metas, data=st.binary(max_size=200))
def test_saved_snapshots_load_back(meta: SnapshotMeta, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = FileSnapshotStore(directory)
        store.save(meta, data)
        assert store.latest() == (meta, data)
