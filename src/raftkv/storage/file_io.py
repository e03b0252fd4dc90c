"""Small durable-file helpers shared by the WAL, the snapshot store and the data dir.

Every `OSError` of the file stores is translated here into a `StorageError` whose message
says what was being done to which path; ENOSPC gets its own wording because an operator
can fix a full disk. The helpers reach the disk through a `FileSystem` (filesystem.py).
"""

from __future__ import annotations

import contextlib
import errno
import os

from raftkv.errors import StorageError
from raftkv.storage.filesystem import DIRECTORY_MODE, FILE_MODE, Bytes, FileSystem

__all__ = [
    "DIRECTORY_MODE",
    "FILE_MODE",
    "atomic_write_file",
    "ensure_directory",
    "read_exactly",
    "storage_error",
    "write_all",
]


def storage_error(error: OSError, action: str, path: str) -> StorageError:
    """A `StorageError` for `error`, raised while `action` (a gerund phrase) on `path`."""
    if error.errno == errno.ENOSPC:
        return StorageError(f"disk full (ENOSPC) while {action} {path}: free some space")
    if error.errno == errno.EDQUOT:
        return StorageError(f"disk quota exceeded (EDQUOT) while {action} {path}")
    return StorageError(f"I/O error while {action} {path}: {error}")


def write_all(filesystem: FileSystem, file_descriptor: int, data: Bytes) -> None:
    """Write every byte of `data`; a write may write less than asked on a regular file."""
    view = memoryview(data)
    write = filesystem.write
    while view:
        written = write(file_descriptor, view)
        if written <= 0:
            # A regular file only writes nothing when it cannot grow: report it as ENOSPC.
            raise OSError(errno.ENOSPC, "write wrote no bytes")
        view = view[written:]


def pwrite_all(filesystem: FileSystem, file_descriptor: int, data: Bytes, offset: int) -> None:
    """Write every byte of `data` at `offset` (the file position is neither used nor moved)."""
    view = memoryview(data)
    pwrite = filesystem.pwrite
    while view:
        written = pwrite(file_descriptor, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "write wrote no bytes")
        view = view[written:]
        offset += written


def read_exactly(filesystem: FileSystem, file_descriptor: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`, or fewer if the file ends first (the caller checks)."""
    data = filesystem.pread(file_descriptor, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    received = len(data)
    while received < size:
        more = filesystem.pread(file_descriptor, size - received, offset + received)
        if not more:
            break
        parts.append(more)
        received += len(more)
    return b"".join(parts)


def ensure_directory(path: str, filesystem: FileSystem) -> None:
    """Create `path` (and parents) if missing, durably: each new entry's parent is fsynced.

    Parents first, each made durable on its own: fsyncing only the last one's parent left a
    new parent's own entry volatile, and a power loss could then take the whole tree (the
    simulated disk showed it: a data dir created as /node/wal lost /node).
    """
    if filesystem.isdir(path):
        return
    absolute = os.path.abspath(path)
    parent = os.path.dirname(absolute)
    if parent != absolute:
        ensure_directory(parent, filesystem)
    try:
        filesystem.makedirs(path, DIRECTORY_MODE)
        filesystem.fsync_directory(parent)
    except OSError as error:
        raise storage_error(error, "creating directory", path) from error


def atomic_write_file(path: str, data: bytes, filesystem: FileSystem) -> None:
    """Replace `path` by `data` so that a crash leaves either the old or the new content.

    Written to a temporary sibling, fsynced, renamed over `path`, then the directory is
    fsynced so that the rename itself survives power loss.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary_path = f"{path}.tmp"
    try:
        file_descriptor = filesystem.open(
            temporary_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE
        )
        try:
            write_all(filesystem, file_descriptor, data)
            filesystem.fsync(file_descriptor)
        finally:
            filesystem.close(file_descriptor)
        filesystem.replace(temporary_path, path)
        filesystem.fsync_directory(directory)
    except OSError as error:
        # Leave no half-written temporary file behind; the old `path` is untouched.
        with contextlib.suppress(OSError):
            filesystem.unlink(temporary_path)
        raise storage_error(error, "writing", path) from error
