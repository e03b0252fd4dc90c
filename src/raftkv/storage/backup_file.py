"""The backup file: one consistent copy of a cluster's state machine, made by the leader
(`GET /v1/snapshot`), saved by `raft-client snapshot save` and seeded into a new cluster by
`raft-node restore` (SPEC §6, docs/operations.md "Backup and restore").

Layout (little-endian)::

    offset 0   8s   magic b"RAFTKVBK"
    offset 8   u32  format version (1)
    offset 12  u32  header length H
    offset 16  u32  zlib.crc32 of the header bytes
    offset 20  H    BackupHeader as MessagePack (a map: fields below, by name)
    20 + H     N    the payload: the state machine's snapshot bytes (N = payload_bytes)

The payload's SHA-256 is in the header, so a backup carried between hosts is checked end to
end; the crc guards the header itself (a flipped bit there could otherwise name another
index or length). Nothing may follow the payload: a file of another length is damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import msgspec

from raftkv.core.ready import SnapshotMeta

BACKUP_MAGIC = b"RAFTKVBK"
BACKUP_FORMAT_VERSION = 1
# The HTTP content type of `GET /v1/snapshot`.
BACKUP_CONTENT_TYPE = "application/vnd.raftkv.backup"
# A header is a few hundred bytes; a bound keeps a damaged length from asking for gigabytes.
HEADER_BYTES_MAX = 1 << 20

_PREFIX = struct.Struct("<8sIII")  # magic, version, header length, header crc


class BackupHeader(msgspec.Struct, frozen=True):
    cluster_id: str  # of the cluster the backup was taken from
    index: int  # the last log index the payload reflects
    term: int  # the term of that entry
    voters: list[int]  # the configuration in force at `index`
    learners: list[int]
    state_machine: str  # its kind: "kv" (the key-value store), "objects" (embedding), ...
    payload_bytes: int
    payload_sha256: str  # lowercase hex
    created_at: str = ""  # when the leader made it, ISO 8601 UTC (for people only)


@dataclass(frozen=True)
class Backup:
    header: BackupHeader
    payload: bytes
    size: int  # the whole file's length in bytes


class BadBackup(Exception):
    """Not a backup file, a damaged or truncated one, or one of another format version.
    The message says which, and what was found."""


_header_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(BackupHeader)


def encode_backup(
    cluster_id: str, meta: SnapshotMeta, state_machine: str, payload: bytes, created_at: str = ""
) -> bytes:
    """The whole backup file for `payload`, a state machine's snapshot at `meta`."""
    header = BackupHeader(
        cluster_id=cluster_id,
        index=meta.index,
        term=meta.term,
        voters=sorted(meta.membership.voters | meta.membership.voters_outgoing),
        learners=sorted(meta.membership.learners),
        state_machine=state_machine,
        payload_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        created_at=created_at,
    )
    encoded = _header_encoder.encode(header)
    prefix = _PREFIX.pack(BACKUP_MAGIC, BACKUP_FORMAT_VERSION, len(encoded), zlib.crc32(encoded))
    return b"".join((prefix, encoded, payload))


def decode_backup(data: bytes | memoryview) -> Backup:
    """Check every part of a backup file's content; `BadBackup` names the first problem."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise BadBackup(
            f"truncated: {len(view)} bytes, shorter than the {_PREFIX.size}-byte prefix"
        )
    magic, version, header_length, header_crc = _PREFIX.unpack_from(view)
    if magic != BACKUP_MAGIC:
        raise BadBackup(f"not a raftkv backup (magic {bytes(magic)!r}, expected {BACKUP_MAGIC!r})")
    if version != BACKUP_FORMAT_VERSION:
        raise BadBackup(
            f"backup format version {version}; this build reads version {BACKUP_FORMAT_VERSION}"
        )
    header_end = _PREFIX.size + header_length
    if header_length > HEADER_BYTES_MAX or header_end > len(view):
        raise BadBackup(
            f"truncated or damaged: a header of {header_length} bytes does not fit in "
            f"{len(view)} bytes"
        )
    encoded = view[_PREFIX.size : header_end]
    if zlib.crc32(encoded) != header_crc:
        raise BadBackup("damaged: the header's checksum does not match")
    try:
        header = _header_decoder.decode(encoded)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise BadBackup(f"damaged: undecodable header ({error})") from None
    payload = view[header_end:]
    if len(payload) != header.payload_bytes:
        state = "truncated" if len(payload) < header.payload_bytes else "damaged"
        raise BadBackup(
            f"{state}: the payload is {len(payload)} bytes, the header says {header.payload_bytes}"
        )
    if hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        raise BadBackup("damaged: the payload's SHA-256 does not match the header's")
    return Backup(header, bytes(payload), len(view))


def read_backup_file(path: str | os.PathLike[str]) -> Backup:
    """Read and check a backup file; `BadBackup` (or `OSError` if it cannot be read)."""
    with open(path, "rb") as file:
        return decode_backup(file.read())


def write_backup_file(destination: str | os.PathLike[str] | BinaryIO, data: bytes) -> Backup:
    """Check `data` (a backup file's content) and store it; returns what it holds.

    To a path: written to `<path>.tmp`, fsynced, renamed over the path and the directory
    fsynced, so the path never holds part of a backup, even after a crash (a damaged
    download is refused before anything is renamed). To an open binary file: written and
    flushed; where it ends up durable is the caller's business."""
    backup = decode_backup(data)
    if not isinstance(destination, str | os.PathLike):
        destination.write(data)
        destination.flush()
        return backup
    path = os.fspath(destination)
    temporary_path = f"{path}.tmp"
    try:
        with open(temporary_path, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary_path)
        raise
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return backup
