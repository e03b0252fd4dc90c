"""`SimulatedFileSystem`: an in-memory disk with POSIX durability, power loss and faults.

The simulator runs the real storage code (FileStorage, FileSnapshotStore, the data dir,
recovery) on it, one instance per simulated node's disk; the instance outlives the node's
process: the simulator keeps it, calls `crash()`, and opens the stores on it again.

The model (docs/storage.md, "The simulated disk"):

- **File data is volatile until the file is fsynced** (`fsync` and `fdatasync` alike).
  Reads see every write at once (the page cache); `crash()` keeps what was synced.
- **Directory entries are volatile until the directory is fsynced**: creating a file (or a
  directory), `replace` and `unlink` are changes of their directory, and a crash may revert
  any that were not followed by `fsync_directory` of it. A file's fsync does not make its
  own name durable.
- **A crash keeps a prefix of what was not synced**, per file and per directory: the
  unsynced writes (and truncations) of a file reach the disk in order and the crash cuts
  that stream at a point the rng picks, possibly inside a write (a torn write: a random
  prefix of it survives, optionally followed by zeros where the file had grown but its
  data had not landed). Unsynced directory changes survive as a prefix too (a journaling
  file system commits them in order). Out-of-order persistence (a hole followed by later
  data of the same unsynced write) is not modelled.
- **Descriptors die with the process**: after `crash()` (or `close_all()`, a process exit
  without power loss) every descriptor is closed and every lock released; using an old
  one is EBADF.

Faults (`DiskFaults`, each off by default; the rng decides when one strikes):
ENOSPC and EIO on writes (sometimes after writing a part: a short write, then the error),
ENOSPC and EIO on fsync (Linux semantics: the unsynced data that was not written back is
dropped from the write-back queue, so it stays readable until a crash and is then gone; a
later fsync succeeds without bringing it back), EIO on reads, slow fsyncs (a delay in
ticks the caller collects with `take_fsync_delay_ticks()`: the disk has no clock; the time
every fsync takes is collected the same way, with `take_fsync_seconds()`), a full
disk (`capacity_bytes`), and bit flips in stored files on a crash or on demand
(`flip_bit()`). `fail_next()` scripts one failure, `schedule_crash()` a power loss before
the n-th next operation (`SimulatedCrash` is raised from that operation on, until
`crash()`), so a test can crash inside a sync, a rotation or a snapshot save.

Deterministic: the same rng state and the same calls give the same bytes and the same crash
outcome, whatever PYTHONHASHSEED. No set is iterated; a crash walks directories in sorted
name order; `listdir` returns names sorted (a real file system guarantees no order, and the
stores sort what they list). Descriptors are numbered from 3 upwards and never reused.
Paths must be absolute. Not thread-safe: the simulator is single-threaded.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import random
from dataclasses import dataclass
from typing import Literal

from raftkv.storage.filesystem import DIRECTORY_MODE, FILE_MODE, Bytes

# What `fail_next` can make fail. "write" covers write and pwrite, "fsync" covers fsync and
# fdatasync of a file, "read" covers pread and read_file.
Operation = Literal[
    "open",
    "write",
    "fsync",
    "fsync_directory",
    "read",
    "ftruncate",
    "replace",
    "unlink",
    "listdir",
    "makedirs",
    "lock",
]

# Files a bit flip strikes unless told otherwise: WAL segments and snapshots.
BIT_FLIP_NAMES_DEFAULT = ("wal-*.log", "snapshot-*.snap")
_FIRST_DESCRIPTOR = 3


class SimulatedCrash(BaseException):
    """The power failed (`schedule_crash`); every operation raises it until `crash()`.

    A BaseException, so that no `except OSError` or `except Exception` of the code under
    test mistakes it for an error it handles: nothing after a power loss runs.
    """


@dataclass
class DiskFaults:
    """Fault rates (probability per operation) and switches; all off by default."""

    write_enospc_rate: float = 0.0
    write_eio_rate: float = 0.0
    fsync_enospc_rate: float = 0.0  # file and directory fsyncs
    fsync_eio_rate: float = 0.0
    read_eio_rate: float = 0.0
    slow_fsync_rate: float = 0.0
    slow_fsync_ticks_max: int = 10  # a slow fsync takes 1..this many ticks
    # Not a fault: every fsync takes up to this long (uniform), collected with
    # `take_fsync_seconds()`; the caller's thread is blocked for it.
    fsync_seconds_max: float = 0.0
    # On crash(): the chance of a bit flip in one stored file whose name matches one of
    # `bit_flip_names` (fnmatch patterns).
    crash_bit_flip_rate: float = 0.0
    bit_flip_names: tuple[str, ...] = BIT_FLIP_NAMES_DEFAULT
    # On crash(): whether unsynced writes and directory changes may partly survive (a random
    # prefix, see the module docstring); False loses all of them.
    crash_keeps_unsynced: bool = True
    # When a crash tears a write that grew the file: the chance that the part of it that
    # did not land reads as zeros (the size reached the disk, the data did not).
    torn_write_zeros_rate: float = 0.0


# An unsynced change of a file's data: (offset, data) writes data at offset; (size, None)
# truncates (or extends with zeros) to size.
_DataChange = tuple[int, bytes | None]


class _File:
    __slots__ = ("content", "durable", "lock_holder", "unsynced")

    def __init__(self) -> None:
        self.content = bytearray()  # what reads see
        self.durable = bytearray()  # what the disk holds: survives a crash
        self.unsynced: list[_DataChange] = []  # in order; content = durable + these
        self.lock_holder: int | None = None


class _Directory:
    __slots__ = ("durable_entries", "entries", "unsynced")

    def __init__(self) -> None:
        self.entries: dict[str, _File | _Directory] = {}
        self.durable_entries: dict[str, _File | _Directory] = {}
        # (removed name or None, added name or None, the node added): a creation, an
        # unlink, or a rename (both names). entries = durable_entries + these, in order.
        self.unsynced: list[tuple[str | None, str | None, _File | _Directory | None]] = []


@dataclass
class _OpenFile:
    node: _File
    path: str
    readable: bool
    writable: bool
    append: bool
    position: int = 0
    # The error a short write promised for the next write on this descriptor.
    pending_error: int | None = None


def _apply_data_change(data: bytearray, change: _DataChange) -> None:
    offset, written = change
    if written is None:
        if offset < len(data):
            del data[offset:]
        else:
            data.extend(bytes(offset - len(data)))
        return
    if offset > len(data):
        data.extend(bytes(offset - len(data)))
    data[offset : offset + len(written)] = written


def _apply_entry_change(
    entries: dict[str, _File | _Directory],
    change: tuple[str | None, str | None, _File | _Directory | None],
) -> None:
    removed, added, node = change
    if removed is not None:
        entries.pop(removed, None)
    if added is not None and node is not None:
        entries[added] = node


def _error(code: int, path: str | None = None) -> OSError:
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


class SimulatedFileSystem:
    """A `FileSystem` in memory; see the module docstring for its model and faults."""

    def __init__(
        self,
        rng: random.Random,
        faults: DiskFaults | None = None,
        *,
        capacity_bytes: int | None = None,
        process_id: int = 1,
    ) -> None:
        self.rng = rng
        self.faults = faults if faults is not None else DiskFaults()
        self.capacity_bytes = capacity_bytes
        self.pid = process_id
        self.operations = 0  # every call of the FileSystem protocol so far
        self.crashes = 0
        self._root = _Directory()
        self._descriptors: dict[int, _OpenFile] = {}
        self._next_descriptor = _FIRST_DESCRIPTOR
        self._fsync_delay_ticks = 0
        self._fsync_seconds = 0.0
        self._crash_countdown: int | None = None
        self._powered_off = False
        self._scripted: list[tuple[Operation, int, str]] = []

    # --- the FileSystem protocol ---------------------------------------------------------
    def open(self, path: str, flags: int, mode: int = FILE_MODE) -> int:
        self._begin("open", path)
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if isinstance(node, _Directory):
            raise _error(errno.EISDIR, path)
        if node is None:
            if not flags & os.O_CREAT:
                raise _error(errno.ENOENT, path)
            if self.capacity_bytes is not None and self._used_bytes() >= self.capacity_bytes:
                raise _error(errno.ENOSPC, path)
            node = _File()
            self._change_entries(parent, None, name, node)
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise _error(errno.EEXIST, path)
        access = flags & os.O_ACCMODE
        writable = access in (os.O_WRONLY, os.O_RDWR)
        if flags & os.O_TRUNC and writable and (node.content or node.unsynced or node.durable):
            self._change_data(node, (0, None))
        descriptor = self._next_descriptor
        self._next_descriptor += 1
        self._descriptors[descriptor] = _OpenFile(
            node,
            self._normalize(path),
            readable=access in (os.O_RDONLY, os.O_RDWR),
            writable=writable,
            append=bool(flags & os.O_APPEND),
        )
        return descriptor

    def close(self, descriptor: int) -> None:
        self._begin(None, None)
        open_file = self._descriptors.pop(descriptor, None)
        if open_file is None:
            raise _error(errno.EBADF)
        if open_file.node.lock_holder == descriptor:
            open_file.node.lock_holder = None

    def write(self, descriptor: int, data: Bytes) -> int:
        open_file = self._writable(descriptor)
        offset = len(open_file.node.content) if open_file.append else open_file.position
        written = self._write_at(open_file, bytes(data), offset)
        open_file.position = offset + written
        return written

    def pwrite(self, descriptor: int, data: Bytes, offset: int) -> int:
        return self._write_at(self._writable(descriptor), bytes(data), offset)

    def pread(self, descriptor: int, size: int, offset: int) -> bytes:
        self._begin("read", self._path_of(descriptor))
        open_file = self._descriptor(descriptor)
        if not open_file.readable:
            raise _error(errno.EBADF)
        self._maybe_fail_read(open_file.path)
        return bytes(open_file.node.content[offset : offset + size])

    def fsync(self, descriptor: int) -> None:
        open_file = self._descriptors.get(descriptor)
        path = open_file.path if open_file is not None else None
        try:
            self._begin("fsync", path)
            if open_file is None:
                raise _error(errno.EBADF)
            self._maybe_fail_fsync(open_file.path)
        except OSError:
            if open_file is not None:
                # Linux: what was written back before the error is on the disk, the rest is
                # dropped from the write-back queue (it stays in the page cache, so reads
                # still see it, until a crash), and a later fsync does not report it again.
                self._persist_prefix(open_file.node)
                open_file.node.unsynced.clear()
            raise
        node = open_file.node
        for change in node.unsynced:
            _apply_data_change(node.durable, change)
        node.unsynced.clear()

    def fdatasync(self, descriptor: int) -> None:
        # The file's size is part of its data; nothing else fdatasync skips is modelled.
        self.fsync(descriptor)

    def ftruncate(self, descriptor: int, size: int) -> None:
        self._begin("ftruncate", self._path_of(descriptor))
        open_file = self._descriptor(descriptor)
        if not open_file.writable:
            raise _error(errno.EINVAL)
        self._change_data(open_file.node, (size, None))

    def read_file(self, path: str) -> bytes:
        self._begin("read", path)
        node = self._lookup(path)
        if isinstance(node, _Directory):
            raise _error(errno.EISDIR, path)
        self._maybe_fail_read(path)
        return bytes(node.content)

    def replace(self, source: str, target: str) -> None:
        self._begin("replace", source)
        source_parent, source_name = self._parent(source)
        target_parent, target_name = self._parent(target)
        node = source_parent.entries.get(source_name)
        if node is None:
            raise _error(errno.ENOENT, source)
        if target_parent is not source_parent:
            # Only renames within a directory are modelled (all the stores make).
            raise _error(errno.EXDEV, target)
        if isinstance(target_parent.entries.get(target_name), _Directory):
            raise _error(errno.EISDIR, target)
        if source_name != target_name:
            self._change_entries(source_parent, source_name, target_name, node)

    def unlink(self, path: str) -> None:
        self._begin("unlink", path)
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise _error(errno.ENOENT, path)
        if isinstance(node, _Directory):
            raise _error(errno.EISDIR, path)
        self._change_entries(parent, name, None, None)

    def listdir(self, path: str) -> list[str]:
        self._begin("listdir", path)
        node = self._lookup(path)
        if not isinstance(node, _Directory):
            raise _error(errno.ENOTDIR, path)
        return sorted(node.entries)

    def makedirs(self, path: str, mode: int = DIRECTORY_MODE) -> None:
        self._begin("makedirs", path)
        directory = self._root
        parts = self._parts(path)
        for position, part in enumerate(parts):
            node = directory.entries.get(part)
            if node is None:
                if self.capacity_bytes is not None and self._used_bytes() >= self.capacity_bytes:
                    raise _error(errno.ENOSPC, path)
                node = _Directory()
                self._change_entries(directory, None, part, node)
            elif isinstance(node, _File):
                last = position == len(parts) - 1
                raise _error(errno.EEXIST if last else errno.ENOTDIR, path)
            directory = node

    def isdir(self, path: str) -> bool:
        self._begin(None, None)
        try:
            return isinstance(self._lookup(path), _Directory)
        except OSError:
            return False

    def fsync_directory(self, path: str) -> None:
        self._begin("fsync_directory", path)
        node = self._lookup(path)
        if not isinstance(node, _Directory):
            raise _error(errno.ENOTDIR, path)
        # A failed directory fsync leaves the changes volatile (they may yet be lost).
        self._maybe_fail_fsync(path)
        node.durable_entries = dict(node.entries)
        node.unsynced.clear()

    def lock(self, descriptor: int) -> None:
        self._begin("lock", self._path_of(descriptor))
        open_file = self._descriptor(descriptor)
        holder = open_file.node.lock_holder
        if holder is not None and holder != descriptor:
            raise _error(errno.EWOULDBLOCK)
        open_file.node.lock_holder = descriptor

    def process_id(self) -> int:
        return self.pid

    # --- power, processes and faults -------------------------------------------------------
    def crash(self) -> None:
        """Power loss, then power back on: unsynced data and directory changes are lost (a
        random prefix of them may survive, see the module docstring), descriptors and locks
        are gone; with `faults.crash_bit_flip_rate`, a bit of a stored file may flip."""
        self.crashes += 1
        self._powered_off = False
        self._crash_countdown = None
        self._descriptors.clear()
        self._fsync_delay_ticks = 0
        self._fsync_seconds = 0.0
        self._lose_volatile_state(self._root)
        rate = self.faults.crash_bit_flip_rate
        if rate and self.rng.random() < rate:
            self.flip_bit()

    def close_all(self) -> None:
        """The process exits (killed, not a power loss): every descriptor is closed and every
        lock released; unsynced data stays in the page cache, still volatile."""
        for open_file in self._descriptors.values():
            open_file.node.lock_holder = None
        self._descriptors.clear()

    def schedule_crash(self, after_operations: int) -> None:
        """The power fails just before the `after_operations`-th operation from now (1: the
        next one): it and every later one raise `SimulatedCrash` until `crash()`."""
        if after_operations < 1:
            raise ValueError("after_operations must be at least 1")
        self._crash_countdown = after_operations

    def cancel_crash(self) -> None:
        """Forget a scheduled crash that has not struck yet."""
        self._crash_countdown = None

    @property
    def powered_off(self) -> bool:
        """A scheduled crash struck and `crash()` has not been called yet."""
        return self._powered_off

    def fail_next(self, operation: Operation, error_number: int, path_contains: str = "") -> None:
        """The next `operation` (on a path containing `path_contains`, if given) raises
        OSError(error_number) before doing anything. Scripted failures are used in order."""
        self._scripted.append((operation, error_number, path_contains))

    def take_fsync_delay_ticks(self) -> int:
        """The ticks slow fsyncs took since the last call (and reset): what the caller's
        virtual clock should add for the sync it just made."""
        delay, self._fsync_delay_ticks = self._fsync_delay_ticks, 0
        return delay

    def take_fsync_seconds(self) -> float:
        """The time ordinary fsyncs took since the last call (and reset)."""
        seconds, self._fsync_seconds = self._fsync_seconds, 0.0
        return seconds

    def flip_bit(
        self, path: str | None = None, offset: int | None = None, bit: int | None = None
    ) -> tuple[str, int, int] | None:
        """Flip one bit of a stored file, on the medium and in the page cache alike.

        Without `path`, a file whose name matches `faults.bit_flip_names` is picked (sorted
        paths, by the rng); without `offset` or `bit`, the rng picks them. Returns (path,
        offset, bit), or None when there is no such non-empty file.
        """
        rng = self.rng
        if path is None:
            candidates = [
                candidate
                for candidate, node in self._files()
                if node.content
                and any(
                    fnmatch.fnmatchcase(posixpath.basename(candidate), pattern)
                    for pattern in self.faults.bit_flip_names
                )
            ]
            if not candidates:
                return None
            path = candidates[rng.randrange(len(candidates))]
        node = self._lookup(path)
        if not isinstance(node, _File) or not node.content:
            return None
        if offset is None:
            offset = rng.randrange(len(node.content))
        if bit is None:
            bit = rng.randrange(8)
        for data in (node.content, node.durable):
            if offset < len(data):
                data[offset] ^= 1 << bit
        for position, (change_offset, written) in enumerate(node.unsynced):
            # An unsynced write over the byte would bring the old value back on a crash.
            if written is not None and change_offset <= offset < change_offset + len(written):
                damaged = bytearray(written)
                damaged[offset - change_offset] ^= 1 << bit
                node.unsynced[position] = (change_offset, bytes(damaged))
        return self._normalize(path), offset, bit

    # --- inspection (tests and the simulator; no faults, not counted) ----------------------
    def files(self) -> dict[str, bytes]:
        """Every file's content as reads see it, by path, in sorted path order."""
        return {path: bytes(node.content) for path, node in self._files()}

    def durable_files(self) -> dict[str, bytes]:
        """Every file's durable content under its current name (the directory entry itself
        may still be volatile), in sorted path order."""
        return {path: bytes(node.durable) for path, node in self._files()}

    def read_bytes(self, path: str) -> bytes:
        node = self._lookup(path)
        if not isinstance(node, _File):
            raise _error(errno.EISDIR, path)
        return bytes(node.content)

    def exists(self, path: str) -> bool:
        try:
            self._lookup(path)
        except OSError:
            return False
        return True

    def open_descriptors(self) -> int:
        return len(self._descriptors)

    # --- internals -------------------------------------------------------------------------
    def _begin(self, operation: Operation | None, path: str | None) -> None:
        """Count the operation; raise a scheduled crash or a scripted failure."""
        if self._powered_off:
            raise SimulatedCrash("the simulated disk lost power")
        self.operations += 1
        if self._crash_countdown is not None:
            self._crash_countdown -= 1
            if self._crash_countdown <= 0:
                self._crash_countdown = None
                self._powered_off = True
                raise SimulatedCrash("the simulated disk lost power")
        if operation is None or not self._scripted:
            return
        for position, (scripted, error_number, path_contains) in enumerate(self._scripted):
            if scripted == operation and (not path_contains or path_contains in (path or "")):
                del self._scripted[position]
                raise _error(error_number, path)

    def _normalize(self, path: str) -> str:
        path = os.fspath(path)
        if not path.startswith("/"):
            raise ValueError(f"the simulated file system takes absolute paths, not {path!r}")
        return posixpath.normpath(path)

    def _parts(self, path: str) -> list[str]:
        return [part for part in self._normalize(path).split("/") if part]

    def _lookup(self, path: str) -> _File | _Directory:
        node: _File | _Directory = self._root
        for part in self._parts(path):
            if not isinstance(node, _Directory):
                raise _error(errno.ENOTDIR, path)
            found = node.entries.get(part)
            if found is None:
                raise _error(errno.ENOENT, path)
            node = found
        return node

    def _parent(self, path: str) -> tuple[_Directory, str]:
        parts = self._parts(path)
        if not parts:
            raise _error(errno.EISDIR, path)
        parent = self._lookup("/" + "/".join(parts[:-1]))
        if not isinstance(parent, _Directory):
            raise _error(errno.ENOTDIR, path)
        return parent, parts[-1]

    def _files(self) -> list[tuple[str, _File]]:
        """(path, file) of every file reachable now, sorted by path."""
        found: list[tuple[str, _File]] = []

        def walk(directory: _Directory, prefix: str) -> None:
            for name in sorted(directory.entries):
                node = directory.entries[name]
                path = f"{prefix}/{name}"
                if isinstance(node, _Directory):
                    walk(node, path)
                else:
                    found.append((path, node))

        walk(self._root, "")
        found.sort(key=lambda item: item[0])
        return found

    def _used_bytes(self) -> int:
        """Bytes held by files that are reachable or open (the page cache's view)."""
        sizes = {id(node): len(node.content) for _path, node in self._files()}
        for open_file in self._descriptors.values():
            sizes[id(open_file.node)] = len(open_file.node.content)
        return sum(sizes.values())

    def _path_of(self, descriptor: int) -> str | None:
        open_file = self._descriptors.get(descriptor)
        return open_file.path if open_file is not None else None

    def _descriptor(self, descriptor: int) -> _OpenFile:
        open_file = self._descriptors.get(descriptor)
        if open_file is None:
            raise _error(errno.EBADF)
        return open_file

    def _writable(self, descriptor: int) -> _OpenFile:
        open_file = self._descriptors.get(descriptor)
        path = open_file.path if open_file is not None else None
        self._begin("write", path)
        if open_file is None or not open_file.writable:
            raise _error(errno.EBADF)
        return open_file

    def _write_at(self, open_file: _OpenFile, data: bytes, offset: int) -> int:
        if open_file.pending_error is not None:
            code, open_file.pending_error = open_file.pending_error, None
            raise _error(code, open_file.path)
        if not data:
            return 0
        node = open_file.node
        size = len(data)
        faults = self.faults
        for rate, code in (
            (faults.write_enospc_rate, errno.ENOSPC),
            (faults.write_eio_rate, errno.EIO),
        ):
            if rate and self.rng.random() < rate:
                # Sometimes a part is written first: a short write, the error on the next one.
                size = self.rng.randrange(size)
                if not size:
                    raise _error(code, open_file.path)
                open_file.pending_error = code
                break
        if self.capacity_bytes is not None:
            growth = offset + size - len(node.content)
            room = self.capacity_bytes - self._used_bytes()
            if growth > room:
                size -= growth - max(room, 0)
                if size <= 0:
                    raise _error(errno.ENOSPC, open_file.path)
        self._change_data(node, (offset, data[:size]))
        return size

    def _change_data(self, node: _File, change: _DataChange) -> None:
        _apply_data_change(node.content, change)
        node.unsynced.append(change)

    def _change_entries(
        self,
        directory: _Directory,
        removed: str | None,
        added: str | None,
        node: _File | _Directory | None,
    ) -> None:
        change = (removed, added, node)
        _apply_entry_change(directory.entries, change)
        directory.unsynced.append(change)

    def _maybe_fail_read(self, path: str) -> None:
        rate = self.faults.read_eio_rate
        if rate and self.rng.random() < rate:
            raise _error(errno.EIO, path)

    def _maybe_fail_fsync(self, path: str) -> None:
        faults, rng = self.faults, self.rng
        if faults.fsync_seconds_max:
            self._fsync_seconds += rng.uniform(0.0, faults.fsync_seconds_max)
        if faults.slow_fsync_rate and rng.random() < faults.slow_fsync_rate:
            self._fsync_delay_ticks += rng.randint(1, max(faults.slow_fsync_ticks_max, 1))
        for rate, code in (
            (faults.fsync_enospc_rate, errno.ENOSPC),
            (faults.fsync_eio_rate, errno.EIO),
        ):
            if rate and rng.random() < rate:
                raise _error(code, path)

    def _persist_prefix(self, node: _File) -> None:
        """Apply to `node.durable` the part of its unsynced changes a crash lets through."""
        changes = node.unsynced
        if not changes or not self.faults.crash_keeps_unsynced:
            return
        rng = self.rng
        kept = rng.randint(0, len(changes))
        for change in changes[:kept]:
            _apply_data_change(node.durable, change)
        if kept == len(changes):
            return
        offset, written = changes[kept]
        if written is None or len(written) < 2:
            return
        torn = rng.randrange(len(written))  # bytes of the torn write that landed
        if torn:
            _apply_data_change(node.durable, (offset, written[:torn]))
        end = offset + len(written)
        zeros_rate = self.faults.torn_write_zeros_rate
        if zeros_rate and end > len(node.durable) and rng.random() < zeros_rate:
            # The file's new size reached the disk, its data (past the landed part) did not:
            # the rest of the file reads as zeros, up to a size the rng picks.
            size = rng.randint(max(len(node.durable), offset), end)
            if size > len(node.durable):
                _apply_data_change(node.durable, (size, None))

    def _lose_volatile_state(self, directory: _Directory) -> None:
        """After a power loss: keep what is durable (and a prefix of what was not)."""
        changes = directory.unsynced
        if changes:
            entries = dict(directory.durable_entries)
            if self.faults.crash_keeps_unsynced:
                for change in changes[: self.rng.randint(0, len(changes))]:
                    _apply_entry_change(entries, change)
            directory.entries = entries
        directory.durable_entries = dict(directory.entries)
        directory.unsynced = []
        for name in sorted(directory.entries):
            node = directory.entries[name]
            if isinstance(node, _Directory):
                self._lose_volatile_state(node)
            else:
                self._persist_prefix(node)
                node.unsynced = []
                node.content = bytearray(node.durable)
                node.lock_holder = None
