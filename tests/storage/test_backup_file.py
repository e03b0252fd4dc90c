"""The backup file format (storage/backup_file.py): round trip and every kind of damage."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from raftkv.core import Membership, SnapshotMeta
from raftkv.storage.backup_file import (
    BACKUP_MAGIC,
    BadBackup,
    decode_backup,
    encode_backup,
    read_backup_file,
    write_backup_file,
)

PAYLOAD = b"the state machine's snapshot" * 100
META = SnapshotMeta(
    42, 7, Membership(voters=frozenset({1, 2, 3}), learners=frozenset({4}), addresses={1: "h:1"})
)


def backup_bytes() -> bytes:
    return encode_backup("raftkv-origin", META, "kv", PAYLOAD, "2026-01-01T00:00:00+00:00")


def test_round_trip_keeps_every_field() -> None:
    data = backup_bytes()
    backup = decode_backup(data)
    header = backup.header
    assert (header.index, header.term) == (42, 7)
    assert (header.voters, header.learners) == ([1, 2, 3], [4])
    assert header.cluster_id == "raftkv-origin"
    assert header.state_machine == "kv"
    assert header.payload_bytes == len(PAYLOAD)
    assert header.payload_sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert header.created_at == "2026-01-01T00:00:00+00:00"
    assert backup.payload == PAYLOAD
    assert backup.size == len(data)
    assert data.startswith(BACKUP_MAGIC)


@pytest.mark.parametrize("offset", [0, 9, 13, 17, 25, 60, -1, -500])
def test_any_flipped_byte_is_refused(offset: int) -> None:
    data = bytearray(backup_bytes())
    data[offset] ^= 0x01
    with pytest.raises(BadBackup):
        decode_backup(bytes(data))


@pytest.mark.parametrize("keep", [0, 10, 19, 20, 100, -1])
def test_truncated_file_is_refused(keep: int) -> None:
    data = backup_bytes()
    with pytest.raises(BadBackup, match="truncated"):
        decode_backup(data[:keep])


def test_bytes_after_the_payload_are_refused() -> None:
    with pytest.raises(BadBackup, match="damaged"):
        decode_backup(backup_bytes() + b"x")


def test_wrong_magic_says_it_is_not_a_backup() -> None:
    data = b"RAFTKVSN" + backup_bytes()[8:]  # a snapshot file's magic
    with pytest.raises(BadBackup, match="not a raftkv backup"):
        decode_backup(data)


def test_other_format_version_is_refused_by_name() -> None:
    data = bytearray(backup_bytes())
    data[8] = 2
    with pytest.raises(BadBackup, match="format version 2"):
        decode_backup(bytes(data))


def test_writing_to_a_path_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "backup.bin"
    backup = write_backup_file(path, backup_bytes())
    assert backup.header.index == 42
    assert read_backup_file(path).payload == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.bin"]


def test_a_damaged_download_never_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "backup.bin"
    path.write_bytes(b"an older backup")
    with pytest.raises(BadBackup):
        write_backup_file(path, backup_bytes()[:-1])
    assert path.read_bytes() == b"an older backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.bin"]


def test_writing_to_an_open_file() -> None:
    buffer = io.BytesIO()
    write_backup_file(buffer, backup_bytes())
    assert decode_backup(buffer.getvalue()).payload == PAYLOAD
