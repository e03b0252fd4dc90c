"""The file-system seam: every storage module reaches the disk through a `FileSystem`.

`OsFileSystem` is the real one: each method is the `os` call the stores made before the
seam existed, looked up at call time (so a test or a benchmark that patches `os.write` or
`os.fdatasync` still reaches it). `SimulatedFileSystem` (simulated_disk.py) is the
in-memory twin with POSIX durability and faults, on which the simulator runs the same
storage code.

The operations are descriptor-based, like `os`: `open` returns an int, and `flags` are the
`os.O_*` flags. Errors are `OSError`s with an errno, as `os` raises them; the stores
translate them into `StorageError` at their boundary (file_io.storage_error), whichever
file system raised them.
"""

from __future__ import annotations

import fcntl
import os
from typing import Protocol

# Mode of every file and directory the stores create (the umask still applies).
FILE_MODE = 0o644
DIRECTORY_MODE = 0o755

# What a write accepts.
Bytes = bytes | bytearray | memoryview


class FileSystem(Protocol):
    """The operations the stores use, with the semantics of their `os` namesakes."""

    def open(self, path: str, flags: int, mode: int = FILE_MODE) -> int:
        """`os.open`: a descriptor; O_CREAT, O_EXCL, O_TRUNC, O_APPEND and the access mode
        count (a directory cannot be opened: use `fsync_directory`)."""
        ...

    def close(self, descriptor: int) -> None: ...

    def write(self, descriptor: int, data: Bytes) -> int:
        """`os.write`: the number of bytes written, which may be fewer than given."""
        ...

    def pwrite(self, descriptor: int, data: Bytes, offset: int) -> int: ...

    def pread(self, descriptor: int, size: int, offset: int) -> bytes:
        """`os.pread`: up to `size` bytes; fewer at the end of the file."""
        ...

    def fsync(self, descriptor: int) -> None:
        """Make the file's data durable (not its directory entry: `fsync_directory`)."""
        ...

    def fdatasync(self, descriptor: int) -> None: ...

    def ftruncate(self, descriptor: int, size: int) -> None: ...

    def read_file(self, path: str) -> bytes:
        """The whole file (`open(path, "rb").read()`); FileNotFoundError if it is missing."""
        ...

    def replace(self, source: str, target: str) -> None:
        """`os.replace`: atomic rename over `target`; durable once the directory is fsynced."""
        ...

    def unlink(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]:
        """The names in a directory, in no guaranteed order (callers sort)."""
        ...

    def makedirs(self, path: str, mode: int = DIRECTORY_MODE) -> None:
        """`os.makedirs(path, mode, exist_ok=True)`: no directory fsync."""
        ...

    def isdir(self, path: str) -> bool: ...

    def fsync_directory(self, path: str) -> None:
        """Make the directory's entries durable: creations, renames and deletions in it."""
        ...

    def lock(self, descriptor: int) -> None:
        """An exclusive, non-blocking lock on the open file (flock), released when the
        descriptor is closed or the process dies; OSError EWOULDBLOCK if it is held."""
        ...

    def process_id(self) -> int:
        """The number a lock holder writes into its lock file, for a curious operator."""
        ...


class OsFileSystem:
    """The real file system: `os`, `fcntl.flock` and `open`, unchanged."""

    def open(self, path: str, flags: int, mode: int = FILE_MODE) -> int:
        return os.open(path, flags, mode)

    def close(self, descriptor: int) -> None:
        os.close(descriptor)

    def write(self, descriptor: int, data: Bytes) -> int:
        return os.write(descriptor, data)

    def pwrite(self, descriptor: int, data: Bytes, offset: int) -> int:
        return os.pwrite(descriptor, data, offset)

    def pread(self, descriptor: int, size: int, offset: int) -> bytes:
        return os.pread(descriptor, size, offset)

    def fsync(self, descriptor: int) -> None:
        os.fsync(descriptor)

    def fdatasync(self, descriptor: int) -> None:
        os.fdatasync(descriptor)

    def ftruncate(self, descriptor: int, size: int) -> None:
        os.ftruncate(descriptor, size)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: str, mode: int = DIRECTORY_MODE) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def fsync_directory(self, path: str) -> None:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def lock(self, descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def process_id(self) -> int:
        return os.getpid()


# The default of every store: one instance, it has no state.
OS_FILE_SYSTEM: FileSystem = OsFileSystem()
