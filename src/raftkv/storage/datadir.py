"""A node's data dir: whose it is (meta.json), who has it open (LOCK), and where things go.

Layout::

    <data dir>/meta.json    {"format_version": 1, "node_id": 1, "cluster_id": "..." | null}
    <data dir>/LOCK         flock()ed while a process has the data dir open (holds its pid)
    <data dir>/wal/         FileStorage segments (wal-<number>.log)
    <data dir>/snapshots/   FileSnapshotStore files (snapshot-<index>-<term>.snap)

meta.json is written atomically (temporary file, fsync, rename, directory fsync) on first
use. Opening a data dir of another node id or cluster id raises DataDirMismatch naming both.

`cluster_id=None` is for a node that does not know its cluster yet (one about to join):
it accepts whatever cluster id the data dir has recorded (`DataDir.cluster_id`, possibly
still None), and `record_cluster_id()` stores it once learnt. A known cluster id given to a
data dir that has none recorded yet is recorded.
"""

from __future__ import annotations

import contextlib
import errno
import os
from types import TracebackType

import msgspec

from raftkv.errors import Corruption, DataDirMismatch
from raftkv.storage.file_io import (
    FILE_MODE,
    atomic_write_file,
    ensure_directory,
    storage_error,
)
from raftkv.storage.file_log import Deleter, FileStorage
from raftkv.storage.filesystem import OS_FILE_SYSTEM, FileSystem
from raftkv.storage.snapshot_files import SNAPSHOTS_KEPT_DEFAULT, FileSnapshotStore

DATA_DIR_FORMAT_VERSION = 1
META_FILE_NAME = "meta.json"
LOCK_FILE_NAME = "LOCK"
WAL_DIRECTORY_NAME = "wal"
SNAPSHOT_DIRECTORY_NAME = "snapshots"
# Entries a brand-new data dir may already hold: a lock file or a meta.json.tmp left by a
# crash during the very first open.
_FIRST_OPEN_LEFTOVERS = frozenset({LOCK_FILE_NAME, META_FILE_NAME + ".tmp"})


class DataDirMeta(msgspec.Struct, frozen=True):
    format_version: int
    node_id: int
    cluster_id: str | None = None
    # The index of the configuration that added this node when it joined (`--join`); 0 for
    # a founding member. Configurations before it are history: a node re-added under an id
    # removed earlier must not read that earlier removal as its own.
    joined_index: int = 0


_meta_decoder = msgspec.json.Decoder(DataDirMeta)


class DataDir:
    """An open, locked data dir. Use `open_data_dir()`; `close()` releases the lock.

    `filesystem` is where it lives; the stores it opens use the same one.
    """

    def __init__(
        self,
        path: str,
        lock_descriptor: int,
        meta: DataDirMeta,
        filesystem: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        self.path = path
        self.filesystem = filesystem
        self._lock_descriptor = lock_descriptor
        self._meta = meta

    @property
    def node_id(self) -> int:
        return self._meta.node_id

    @property
    def cluster_id(self) -> str | None:
        return self._meta.cluster_id

    @property
    def joined_index(self) -> int:
        return self._meta.joined_index

    def record_joined_index(self, index: int) -> None:
        if index != self._meta.joined_index:
            meta = msgspec.structs.replace(self._meta, joined_index=index)
            _write_meta(self.path, meta, self.filesystem)
            self._meta = meta

    @property
    def wal_directory(self) -> str:
        return os.path.join(self.path, WAL_DIRECTORY_NAME)

    @property
    def snapshot_directory(self) -> str:
        return os.path.join(self.path, SNAPSHOT_DIRECTORY_NAME)

    def record_cluster_id(self, cluster_id: str) -> None:
        """Record the cluster id learnt after joining; refuse a different one."""
        recorded = self._meta.cluster_id
        if recorded == cluster_id:
            return
        if recorded is not None:
            raise DataDirMismatch(
                f"data dir {self.path} belongs to cluster {recorded!r}, not {cluster_id!r}"
            )
        meta = msgspec.structs.replace(self._meta, cluster_id=cluster_id)
        _write_meta(self.path, meta, self.filesystem)
        self._meta = meta

    def open_storage(self, deleter: Deleter | None = None, **options: int) -> FileStorage:
        """The WAL (log and hard state); `deleter` and `options` go to FileStorage."""
        return FileStorage(
            self.wal_directory, filesystem=self.filesystem, deleter=deleter, **options
        )

    def open_snapshots(self, keep: int = SNAPSHOTS_KEPT_DEFAULT) -> FileSnapshotStore:
        return FileSnapshotStore(self.snapshot_directory, keep=keep, filesystem=self.filesystem)

    def close(self) -> None:
        """Release the lock (closing the descriptor drops the flock)."""
        if self._lock_descriptor >= 0:
            with contextlib.suppress(OSError):
                self.filesystem.close(self._lock_descriptor)
            self._lock_descriptor = -1

    def __enter__(self) -> DataDir:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_data_dir(
    path: str | os.PathLike[str],
    node_id: int,
    cluster_id: str | None = None,
    *,
    filesystem: FileSystem = OS_FILE_SYSTEM,
) -> DataDir:
    """Open (creating on first use) and lock the data dir of `node_id` in `cluster_id`, on
    `filesystem` (the real one unless given)."""
    path = os.fspath(path)
    ensure_directory(path, filesystem)
    lock_descriptor = _lock(path, filesystem)
    try:
        meta = _read_meta(path, filesystem)
        if meta is None:
            meta = DataDirMeta(DATA_DIR_FORMAT_VERSION, node_id, cluster_id)
            _write_meta(path, meta, filesystem)
        else:
            meta = _check_meta(path, meta, node_id, cluster_id, filesystem)
        return DataDir(path, lock_descriptor, meta, filesystem)
    except BaseException:
        filesystem.close(lock_descriptor)
        raise


def _lock(path: str, filesystem: FileSystem) -> int:
    lock_path = os.path.join(path, LOCK_FILE_NAME)
    try:
        descriptor = filesystem.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as error:
        raise storage_error(error, "opening", lock_path) from error
    try:
        filesystem.lock(descriptor)
    except OSError as error:
        filesystem.close(descriptor)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirMismatch(f"data dir {path} is in use by another process") from None
        raise storage_error(error, "locking", lock_path) from error
    # The pid is only for a curious operator; the flock is what excludes.
    with contextlib.suppress(OSError):
        filesystem.ftruncate(descriptor, 0)
        filesystem.pwrite(descriptor, f"{filesystem.process_id()}\n".encode(), 0)
    return descriptor


def _read_meta(path: str, filesystem: FileSystem) -> DataDirMeta | None:
    meta_path = os.path.join(path, META_FILE_NAME)
    try:
        content = filesystem.read_file(meta_path)
    except FileNotFoundError:
        try:
            leftovers = set(filesystem.listdir(path)) - _FIRST_OPEN_LEFTOVERS
        except OSError as error:
            raise storage_error(error, "listing", path) from error
        if leftovers:
            raise DataDirMismatch(
                f"data dir {path} is not empty but has no {META_FILE_NAME}: refusing to use it "
                f"(found {', '.join(sorted(leftovers))})"
            ) from None
        return None
    except OSError as error:
        raise storage_error(error, "reading", meta_path) from error
    try:
        meta = _meta_decoder.decode(content)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        # Not UTF-8 and nesting past the recursion limit are not msgspec DecodeErrors.
        raise Corruption(f"unreadable data dir metadata ({error})", meta_path, 0) from None
    if meta.format_version != DATA_DIR_FORMAT_VERSION:
        raise DataDirMismatch(
            f"data dir {path} has format version {meta.format_version}; this build reads "
            f"version {DATA_DIR_FORMAT_VERSION}"
        )
    return meta


def _check_meta(
    path: str, meta: DataDirMeta, node_id: int, cluster_id: str | None, filesystem: FileSystem
) -> DataDirMeta:
    if meta.node_id != node_id:
        raise DataDirMismatch(f"data dir {path} belongs to node {meta.node_id}, not node {node_id}")
    if cluster_id is None or meta.cluster_id == cluster_id:
        return meta
    if meta.cluster_id is not None:
        raise DataDirMismatch(
            f"data dir {path} belongs to cluster {meta.cluster_id!r}, not cluster {cluster_id!r}"
        )
    # Everything else recorded (the joined index) stays.
    recorded = msgspec.structs.replace(meta, cluster_id=cluster_id)
    _write_meta(path, recorded, filesystem)
    return recorded


def _write_meta(path: str, meta: DataDirMeta, filesystem: FileSystem) -> None:
    atomic_write_file(
        os.path.join(path, META_FILE_NAME), msgspec.json.encode(meta) + b"\n", filesystem
    )
