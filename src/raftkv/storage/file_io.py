"""Small durable-file helpers shared by the WAL, the snapshot store and the data dir.

Every `OSError` of the file stores is translated here into a `StorageError` whose message
says what was being done to which path; ENOSPC gets its own wording because an operator
can fix a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os

from raftkv.errors import StorageError

# Mode of every file and directory the stores create (the umask still applies).
FILE_MODE = 0o644
DIRECTORY_MODE = 0o755


def storage_error(error: OSError, action: str, path: str) -> StorageError:
    """A `StorageError` for `error`, raised while `action` (a gerund phrase) on `path`."""
    if error.errno == errno.ENOSPC:
        return StorageError(f"disk full (ENOSPC) while {action} {path}: free some space")
    if error.errno == errno.EDQUOT:
        return StorageError(f"disk quota exceeded (EDQUOT) while {action} {path}")
    return StorageError(f"I/O error while {action} {path}: {error}")


def write_all(file_descriptor: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data`; `os.write` may write less than asked on a regular file."""
    view = memoryview(data)
    while view:
        written = os.write(file_descriptor, view)
        if written <= 0:
            # A regular file only writes nothing when it cannot grow: report it as ENOSPC.
            raise OSError(errno.ENOSPC, "write wrote no bytes")
        view = view[written:]


def read_exactly(file_descriptor: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`, or fewer if the file ends first (the caller checks)."""
    data = os.pread(file_descriptor, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    received = len(data)
    while received < size:
        more = os.pread(file_descriptor, size - received, offset + received)
        if not more:
            break
        parts.append(more)
        received += len(more)
    return b"".join(parts)


def fsync_directory(path: str) -> None:
    """Make the directory entries of `path` durable (file creation, rename, deletion)."""
    file_descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(file_descriptor)
    finally:
        os.close(file_descriptor)


def ensure_directory(path: str) -> None:
    """Create `path` (and parents) if missing, durably: the new entry's parent is fsynced."""
    if os.path.isdir(path):
        return
    try:
        os.makedirs(path, mode=DIRECTORY_MODE, exist_ok=True)
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    except OSError as error:
        raise storage_error(error, "creating directory", path) from error


def atomic_write_file(path: str, data: bytes) -> None:
    """Replace `path` by `data` so that a crash leaves either the old or the new content.

    Written to a temporary sibling, fsynced, renamed over `path`, then the directory is
    fsynced so that the rename itself survives power loss.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary_path = f"{path}.tmp"
    try:
        file_descriptor = os.open(
            temporary_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE
        )
        try:
            write_all(file_descriptor, data)
            os.fsync(file_descriptor)
        finally:
            os.close(file_descriptor)
        os.replace(temporary_path, path)
        fsync_directory(directory)
    except OSError as error:
        # Leave no half-written temporary file behind; the old `path` is untouched.
        with contextlib.suppress(OSError):
            os.unlink(temporary_path)
        raise storage_error(error, "writing", path) from error
