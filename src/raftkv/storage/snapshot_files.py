"""`FileSnapshotStore`: snapshots as files, written atomically, the newest `keep` kept.

A snapshot file `snapshot-<20-digit index>-<20-digit term>.snap` is (little-endian)::

    offset 0   8s   magic b"RAFTKVSN"
    offset 8   u32  format version
    offset 12  u32  meta length M
    offset 16  u64  data length D
    offset 24  u32  crc: zlib.crc32 of bytes 0..23, then the meta, then the data
    offset 28  M    SnapshotMeta as MessagePack (index, term, membership)
    28 + M     D    the state machine's snapshot

It is written to `<name>.tmp`, fsynced, renamed into place and the directory fsynced, so a
crash leaves either no file or a whole one (a leftover `.tmp` is deleted on open: it was
never renamed, so nothing, the log's compaction included, ever relied on it). `stored()`
lists the files newest first, `load()` reads and checks one (a damaged file is `Corruption`
naming it), and `latest()` is the newest one, never an older one in its place: whether an
older snapshot may stand in for a damaged newer one is recovery's decision
(storage/recovery.py), because only the log can tell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import zlib

import msgspec

from raftkv.core.ready import SnapshotMeta
from raftkv.errors import Corruption
from raftkv.storage.base import SNAPSHOTS_KEPT_DEFAULT as SNAPSHOTS_KEPT_DEFAULT
from raftkv.storage.base import SnapshotRef
from raftkv.storage.file_io import (
    FILE_MODE,
    ensure_directory,
    storage_error,
    write_all,
)
from raftkv.storage.filesystem import OS_FILE_SYSTEM, FileSystem

logger = logging.getLogger("raftkv.storage")

SNAPSHOT_MAGIC = b"RAFTKVSN"
SNAPSHOT_FORMAT_VERSION = 1
SNAPSHOT_FILE_PATTERN = re.compile(r"^snapshot-(\d{20})-(\d{20})\.snap$")
TEMPORARY_SUFFIX = ".tmp"

_HEADER = struct.Struct("<8sIIQI")  # magic, version, meta length, data length, crc
_CHECKED_HEADER_BYTES = _HEADER.size - 4  # everything before the crc field
_meta_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(SnapshotMeta)


def snapshot_file_name(index: int, term: int) -> str:
    return f"snapshot-{index:020d}-{term:020d}.snap"


class _Damage(Exception):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class FileSnapshotStore:
    """SnapshotStore over a directory (created if missing); keeps the newest `keep` files.
    Files are reached through `filesystem` (the real one unless given)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        keep: int = SNAPSHOTS_KEPT_DEFAULT,
        *,
        filesystem: FileSystem = OS_FILE_SYSTEM,
    ):
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = os.fspath(directory)
        self.keep = keep
        self.filesystem = filesystem
        ensure_directory(self.directory, filesystem)
        self._remove_temporary_files()

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        """Write the snapshot to a temporary file, sync it, and rename it into place."""
        encoded_meta = _meta_encoder.encode(meta)
        header = _HEADER.pack(
            SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, len(encoded_meta), len(data), 0
        )
        checksum = zlib.crc32(header[:_CHECKED_HEADER_BYTES])
        checksum = zlib.crc32(data, zlib.crc32(encoded_meta, checksum))
        header = header[:_CHECKED_HEADER_BYTES] + checksum.to_bytes(4, "little")
        path = os.path.join(self.directory, snapshot_file_name(meta.index, meta.term))
        temporary_path = path + TEMPORARY_SUFFIX
        filesystem = self.filesystem
        try:
            descriptor = filesystem.open(
                temporary_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE
            )
            try:
                write_all(filesystem, descriptor, header + encoded_meta)
                _write_flushing(filesystem, descriptor, data)
                filesystem.fsync(descriptor)
            finally:
                filesystem.close(descriptor)
            filesystem.replace(temporary_path, path)
            filesystem.fsync_directory(self.directory)
        except OSError as error:
            with contextlib.suppress(OSError):
                filesystem.unlink(temporary_path)
            raise storage_error(error, "saving snapshot", path) from error
        self._prune()

    @property
    def location(self) -> str:
        return self.directory

    def stored(self) -> list[SnapshotRef]:
        return [SnapshotRef(index, term, path) for path, index, term in self._snapshot_paths()]

    def load(self, ref: SnapshotRef) -> tuple[SnapshotMeta, bytes]:
        try:
            return self._read(ref.location, ref.index, ref.term)
        except _Damage as damage:
            raise Corruption(
                f"damaged snapshot ({damage.reason})", ref.location, damage.offset
            ) from None

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        refs = self.stored()
        return self.load(refs[0]) if refs else None

    def _snapshot_paths(self) -> list[tuple[str, int, int]]:
        """(path, index, term) of every snapshot file, newest first."""
        try:
            names = self.filesystem.listdir(self.directory)
        except OSError as error:
            raise storage_error(error, "listing", self.directory) from error
        found = []
        for name in names:
            match = SNAPSHOT_FILE_PATTERN.match(name)
            if match:
                index, term = int(match.group(1)), int(match.group(2))
                found.append((os.path.join(self.directory, name), index, term))
        found.sort(key=lambda item: (item[1], item[2]), reverse=True)
        return found

    def _read(self, path: str, index: int, term: int) -> tuple[SnapshotMeta, bytes]:
        try:
            content = self.filesystem.read_file(path)
        except OSError as error:
            raise storage_error(error, "reading snapshot", path) from error
        if len(content) < _HEADER.size:
            raise _Damage(f"file of {len(content)} bytes is shorter than the header", 0)
        magic, version, meta_length, data_length, checksum = _HEADER.unpack_from(content)
        if magic != SNAPSHOT_MAGIC:
            raise _Damage("bad magic", 0)
        if version != SNAPSHOT_FORMAT_VERSION:
            raise _Damage(f"unsupported format version {version}", 8)
        if _HEADER.size + meta_length + data_length != len(content):
            raise _Damage(
                f"lengths (meta {meta_length}, data {data_length}) do not match the file size "
                f"{len(content)}",
                12,
            )
        view = memoryview(content)
        # The meta and the data are contiguous after the header: one crc call covers both.
        computed = zlib.crc32(view[_HEADER.size :], zlib.crc32(view[:_CHECKED_HEADER_BYTES]))
        if computed != checksum:
            raise _Damage("checksum mismatch", _HEADER.size)
        meta_end = _HEADER.size + meta_length
        try:
            meta = _meta_decoder.decode(view[_HEADER.size : meta_end])
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
            # Not UTF-8 and nesting past the recursion limit are not msgspec DecodeErrors.
            raise _Damage(f"undecodable metadata ({error})", _HEADER.size) from None
        if (meta.index, meta.term) != (index, term):
            raise _Damage(f"metadata ({meta.index}, {meta.term}) does not match the name", 0)
        return meta, bytes(view[meta_end:])

    def _prune(self) -> None:
        """Delete all but the newest `keep` snapshot files (damaged ones count too)."""
        doomed = self._snapshot_paths()[self.keep :]
        if not doomed:
            return
        try:
            for path, _index, _term in doomed:
                self.filesystem.unlink(path)
            self.filesystem.fsync_directory(self.directory)
        except OSError as error:
            raise storage_error(error, "deleting old snapshots in", self.directory) from error

    def _remove_temporary_files(self) -> None:
        """A crash during `save` leaves a temporary file that was never renamed: remove it."""
        try:
            for name in self.filesystem.listdir(self.directory):
                if name.endswith(TEMPORARY_SUFFIX) and name.startswith("snapshot-"):
                    logger.info("removing unfinished snapshot file %s", name)
                    self.filesystem.unlink(os.path.join(self.directory, name))
        except OSError as error:
            raise storage_error(error, "cleaning", self.directory) from error


# A big snapshot is flushed to the disk every this many bytes as it is written. Written whole
# and synced once, the 18 MB of a 200,000-key state went to the disk in one burst, and the
# WAL's fdatasync behind it (the event loop waiting) took 60-80 ms; in 1 MiB pieces, half.
SNAPSHOT_FLUSH_BYTES = 1 << 20


def _write_flushing(filesystem: FileSystem, descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while len(view) > SNAPSHOT_FLUSH_BYTES:
        write_all(filesystem, descriptor, view[:SNAPSHOT_FLUSH_BYTES])
        filesystem.fdatasync(descriptor)
        view = view[SNAPSHOT_FLUSH_BYTES:]
    write_all(filesystem, descriptor, view)  # the caller's fsync makes the rest durable
