"""`FileStorage`: the log (LogStore) and the hard state (StableStore) in one write-ahead log.

Layout: a directory of segment files `wal-<16-digit number>.log`, records framed as in
`wal_records`. Writes are buffered in memory and `sync()` hands them to the disk with one
write and one fdatasync, so a Ready (hard state + entries) costs one fsync and many
entries share it (group commit).

- Truncating a suffix appends a TRUNCATE record; compaction appends a COMPACT record and
  reset a RESET record. No record is ever rewritten.
- After a sync, once the active segment has reached `segment_bytes_max`, a new segment is
  started: its first records (a header with the log's state, then the current hard state)
  are queued, and the next sync creates its file, fsyncs the directory and writes them
  with whatever else is queued. The header and the repeated hard state make every segment
  self-sufficient, so the older segments can go.
- The active segment's file is kept ahead of its records by a tail of zeros, extended by
  `preallocate_bytes` at a time in the same write as the records that reach it, and records
  are written into it in place (`pwrite`): an fdatasync of data written over blocks the file
  already has need not commit the file's new size to the file system's journal too, and
  costs less (ext4 on this project's machine: 112-140 µs and 52-64 µs of CPU against 193 µs
  and 80 µs for an append). Recovery reads zeros from a record boundary to the end of the
  last segment as its clean end; a segment is cut to its records before the next one is
  created, so only the last has such a tail.
- After a sync, segments that hold no live entry (everything in them is compacted, reset or
  truncated away) are deleted, oldest first, and the directory fsynced.
- Reads: the term of every live entry and its place on disk live in memory (`LogIndex`);
  entry data is read from the files on demand (consecutive entries in one `pread`), except
  for a bounded cache of the newest entries, which is what a leader reads back.
- Any OSError while writing puts the store in a failed state: the call raises StorageError
  and so does every later write, so nothing is ever reported durable that is not.
- Every file operation goes through a `FileSystem` (the real one by default; the simulator
  passes its simulated disk).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import threading
import zlib
from array import array
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from raftkv.core.messages import Entry, HardState
from raftkv.errors import Corruption, StorageError
from raftkv.storage.file_io import (
    FILE_MODE,
    ensure_directory,
    pwrite_all,
    read_exactly,
    storage_error,
)
from raftkv.storage.filesystem import OS_FILE_SYSTEM, FileSystem
from raftkv.storage.wal_cache import TailCache
from raftkv.storage.wal_index import LogIndex
from raftkv.storage.wal_records import (
    CRC_FIELD,
    ENTRY_CHECKED_PREFIX,
    ENTRY_FIELDS_BYTES,
    RECORD_HEADER_BYTES,
    RECORD_PAYLOAD_BYTES_MAX,
    RecordDamage,
    RecordType,
    decode_entry,
    encode_hard_state,
    encode_point,
    encode_segment_header,
    encode_truncate,
    parse_record,
)
from raftkv.storage.wal_recovery import FIRST_SEGMENT_NUMBER, recover, segment_file_name

SEGMENT_BYTES_DEFAULT = 64 << 20
# The active segment's zeros ahead of its records grow by this much at a time: a sync that
# extends them writes up to this many more bytes (about 0.6 ms more on this machine's disk),
# once per this many bytes of records.
PREALLOCATE_BYTES_DEFAULT = 256 << 10
# The newest entries kept decoded in memory: the leader reads back what it just appended.
CACHE_ENTRIES_DEFAULT = 8192
CACHE_BYTES_DEFAULT = 16 << 20
# Consecutive entries are read with one pread of at most this many bytes.
READ_SPAN_BYTES_MAX = 4 << 20

_ENTRY_TYPE = int(RecordType.ENTRY)


class Pending(Protocol):
    """A job handed to a deleter: a concurrent or an asyncio future."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


# Runs a job elsewhere, later (a node's disk thread): what it returns tells when it ended.
Deleter = Callable[[Callable[[], None]], Pending]


class _SegmentCreation:
    """How far a sync got in creating a new segment's file, outside the WAL's lock."""

    def __init__(self, unfinished: tuple[int, int, int] | None) -> None:
        self.unfinished = unfinished  # the previous segment to cut first, if any
        self.cut = False
        self.descriptor = -1
        # What was under way when an OSError came (empty once the file is created).
        self.failed_action = ""
        self.failed_path = ""


class FileStorage:
    """LogStore + StableStore over one WAL in `directory` (created if missing), on
    `filesystem` (the real one unless given).

    Opening recovers the WAL (see `wal_recovery`) and may raise Corruption. Call `sync()`
    before `close()`: unsynced writes are dropped, exactly as a crash would drop them.
    Thread-safe: `sync()` may run in a worker thread. It holds the lock only to take the
    buffer and to record the outcome, not while the disk works: the node's event loop goes
    on reading terms and entries (and even appending) during a sync in its sync thread.
    One sync at a time; `close()` waits for one in progress.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes_max: int = SEGMENT_BYTES_DEFAULT,
        cache_entries_max: int = CACHE_ENTRIES_DEFAULT,
        cache_bytes_max: int = CACHE_BYTES_DEFAULT,
        filesystem: FileSystem = OS_FILE_SYSTEM,
        deleter: Deleter | None = None,
        preallocate_bytes: int = PREALLOCATE_BYTES_DEFAULT,
    ) -> None:
        """`deleter`: runs the deletion of obsolete segments elsewhere, later (None: `sync`
        does it). A node hands it to its disk thread through its event loop
        (`run_in_executor`, which the simulator runs deterministically): unlinking a 16 MiB
        segment and syncing the directory took 60-70 ms on a disk busy with a snapshot, with
        the event loop waiting. `preallocate_bytes`: the step of the active segment's tail of
        zeros (0: none, every sync appends)."""
        if segment_bytes_max <= 0 or cache_entries_max < 0 or cache_bytes_max < 0:
            raise ValueError("segment_bytes_max must be positive and the cache limits not negative")
        if preallocate_bytes < 0:
            raise ValueError("preallocate_bytes must not be negative")
        self._preallocate_bytes = preallocate_bytes
        self.directory = os.fspath(directory)
        self.filesystem = filesystem
        self._segment_bytes_max = segment_bytes_max
        # The runtime may sync in a worker thread (keeping fsync off its event loop) while a
        # shutdown syncs and closes from the loop: one lock keeps the buffer, the index and
        # the descriptors consistent. Uncontended it costs well under a microsecond.
        self._lock = threading.Lock()
        # Signalled when a sync's write and fdatasync end (outside the lock).
        self._sync_ended = threading.Condition(self._lock)
        self._sync_waiters = 0  # threads in `_wait_for_sync_end`
        self._syncing = False
        ensure_directory(self.directory, filesystem)
        recovered = recover(self.directory, filesystem)
        self._index: LogIndex = recovered.index
        self._hard_state = recovered.hard_state
        self._segment_numbers = recovered.segment_numbers
        self._buffer = bytearray()
        # The bytes a sync in progress is writing (between `_active_size` and the buffer).
        self._in_flight = bytearray()
        self._failure: str | None = None
        self._closed = False
        self._deleter = deleter
        self._deletions: list[Pending] = []  # handed to the deleter, maybe not done yet
        self._read_descriptors: dict[int, int] = {}
        self._cache = TailCache(cache_entries_max, cache_bytes_max, self._index.last_index + 1)
        self.syncs = 0
        # Called after every sync that returned (the whole-node simulator's durability watch
        # records what each made durable); set, not passed in: the watch meets the store
        # after the server opened it. Not a method replaced on the instance: compiled.
        self.on_synced: Callable[[], None] | None = None
        self._active_descriptor = -1
        # The size of the active segment's file: its records, then zeros (preallocated).
        self._active_file_bytes = 0
        # A finished segment whose tail of zeros must be cut before the next one is created:
        # (its number, its descriptor, the size of its records).
        self._unfinished_segment: tuple[int, int, int] | None = None
        if self._segment_numbers:
            self._active_number = self._segment_numbers[-1]
            self._active_size = recovered.last_segment_size
            self._active_file_bytes = recovered.last_segment_file_bytes
            path = self._segment_path(self._active_number)
            try:
                self._active_descriptor = filesystem.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as error:
                raise storage_error(error, "opening", path) from error
        else:
            self._start_segment(FIRST_SEGMENT_NUMBER)
            self.sync()

    # --- LogStore: reads ---------------------------------------------------------------------
    def first_index(self) -> int:
        return self._index.snapshot_index + 1

    def last_index(self) -> int:
        return self._index.last_index

    def term(self, index: int) -> int | None:
        with self._lock:
            return self._index.term(index)

    def entries(self, low: int, high: int) -> list[Entry]:
        with self._lock:
            index = self._index
            if not index.snapshot_index < low <= high <= index.last_index + 1:
                raise ValueError(
                    f"entries [{low}, {high}) outside the log [{index.first_index}, "
                    f"{index.last_index + 1})"
                )
            cache_first = self._cache.first_index
            result = self._read_entries(low, min(high, cache_first)) if low < cache_first else []
            if high > cache_first:
                result.extend(self._cache.get(max(low, cache_first), high))
            return result

    # --- LogStore and StableStore: writes ----------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        with self._lock:
            self._check_writable()
            if not entries:
                return
            index = self._index
            first = entries[0].index
            truncate_record = b""
            if first <= index.last_index:
                if first <= index.snapshot_index:
                    raise ValueError(f"append at {first} rewrites the compacted prefix")
                truncate_record = encode_truncate(first)
            elif first != index.last_index + 1:
                raise ValueError(f"append at {first} leaves a gap after {index.last_index}")
            # Encode everything before changing any state, so a bad entry changes nothing.
            pack, crc32, pack_crc = ENTRY_CHECKED_PREFIX.pack, zlib.crc32, CRC_FIELD.pack
            parts: list[bytes] = []
            add_part = parts.append
            terms: list[int] = []
            offsets: list[int] = []
            lengths: list[int] = []
            position = (
                self._active_size + len(self._in_flight) + len(self._buffer) + len(truncate_record)
            )
            expected_index = first
            data_bytes = 0
            for entry in entries:
                if entry.index != expected_index:
                    raise ValueError(f"entry {entry.index} where {expected_index} was expected")
                data = entry.data
                payload_length = ENTRY_FIELDS_BYTES + len(data)
                if payload_length > RECORD_PAYLOAD_BYTES_MAX:
                    raise ValueError(f"entry {entry.index} of {len(data)} bytes exceeds the limit")
                checked = pack(payload_length, _ENTRY_TYPE, entry.term, expected_index, entry.kind)
                add_part(pack_crc(crc32(data, crc32(checked))))
                add_part(checked)
                add_part(data)
                record_length = payload_length + RECORD_HEADER_BYTES
                terms.append(entry.term)
                offsets.append(position)
                lengths.append(record_length)
                position += record_length
                expected_index += 1
                data_bytes += len(data)
            if truncate_record:
                self._buffer += truncate_record
                self._cache.truncate_from(first)
                index.truncate_from(first)
            self._buffer += b"".join(parts)
            index.terms.extend(terms)
            index.segments.extend(array("I", (self._active_number,)) * len(terms))
            index.offsets.extend(offsets)
            index.lengths.extend(lengths)
            self._cache.append(entries, data_bytes)

    def compact(self, through_index: int, through_term: int) -> None:
        with self._lock:
            self._check_writable()
            index = self._index
            if through_index <= index.snapshot_index:
                return
            self._buffer += encode_point(RecordType.COMPACT, through_index, through_term)
            index.compact(through_index, through_term)
            self._cache.drop_through(through_index)

    def reset(self, index: int, term: int) -> None:
        with self._lock:
            self._check_writable()
            self._buffer += encode_point(RecordType.RESET, index, term)
            self._index.reset(index, term)
            self._cache.reset(index + 1)

    def set_hard_state(self, hard_state: HardState) -> None:
        with self._lock:
            self._check_writable()
            if hard_state == self._hard_state:
                return
            self._buffer += encode_hard_state(hard_state)
            self._hard_state = hard_state

    def hard_state(self) -> HardState:
        return self._hard_state

    def sync(self) -> None:
        """Write every buffered record with one write and one fdatasync.

        The records buffered when it starts are durable when it returns; records buffered
        meanwhile (by another thread) wait for the next sync."""
        self._sync()
        if self.on_synced is not None:
            self.on_synced()

    def _sync(self) -> None:
        with self._lock:
            while self._syncing:
                self._wait_for_sync_end()
            self._check_deleted()  # first: a failed deletion's error is read, and raised
            self._check_writable()
            if not self._buffer:
                return
            # Its path is made only where it is used (creating the file, an error): a node
            # syncs about a thousand times a second under load.
            number = self._active_number
            # A new segment's file is created below, outside the lock, like the write: its
            # fsyncs took 100 ms and more on a disk busy with a snapshot, and the event loop,
            # appending the next Ready's entries, waited for the lock throughout.
            creating = self._active_descriptor < 0
            unfinished = self._unfinished_segment if creating else None
            descriptor = self._active_descriptor
            data = self._in_flight = self._buffer
            self._buffer = bytearray()
            self._syncing = True
            offset = self._active_size
            end = offset + len(data)
            written: bytes | bytearray = data
            step = self._preallocate_bytes
            if step and end > self._active_file_bytes:
                # Past the zeros: this write lays down the next ones too.
                written = data + bytes((end // step + 1) * step - end)
        creation = _SegmentCreation(unfinished)
        try:
            try:
                if creating:
                    descriptor = self._create_segment_file(self._segment_path(number), creation)
                pwrite_all(self.filesystem, descriptor, written, offset)
            except OSError as error:
                if error.errno != errno.ENOSPC or written is data or creation.failed_action:
                    raise
                written = data  # no room for the zeros ahead: the records alone may fit
                pwrite_all(self.filesystem, descriptor, data, offset)
            self.filesystem.fdatasync(descriptor)
        except BaseException as error:  # (the simulated disk's power loss too: no sync hangs)
            with self._lock:
                # Still readable (the failed store refuses writes, not reads), never retried.
                self._buffer = data + self._buffer
                self._creation_ended(creation)
                self._end_sync()
                if isinstance(error, OSError):
                    if creation.failed_action:
                        raise self._fail(
                            error, creation.failed_action, creation.failed_path
                        ) from error
                    raise self._fail(error, "writing", self._segment_path(number)) from error
            raise
        with self._lock:
            self._creation_ended(creation)
            self._active_size = end
            self._active_file_bytes = max(self._active_file_bytes, offset + len(written))
            self._end_sync()
            self.syncs += 1
            # Deleting first: a segment is only deleted once what replaces it is durable, and the
            # new segment's header is not durable until the next sync.
            self._delete_obsolete_segments()
            # A new segment starts with its header, so not while records written meanwhile
            # wait in the buffer: the next sync writes them here and rotates then.
            if self._active_size >= self._segment_bytes_max and not self._buffer:
                self._start_segment(self._active_number + 1)

    def _wait_for_sync_end(self) -> None:
        """With the lock held: wait until the sync under way ends."""
        self._sync_waiters += 1
        try:
            self._sync_ended.wait()
        finally:
            self._sync_waiters -= 1

    def _end_sync(self) -> None:
        self._in_flight = bytearray()
        self._syncing = False
        # Only when someone waits: `Condition.notify_all` is interpreted Python, and nearly
        # every sync ends with nobody waiting.
        if self._sync_waiters:
            self._sync_ended.notify_all()

    # --- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the files. Unsynced writes are dropped (call `sync()` first to keep them)."""
        with self._lock:
            while self._syncing:  # its descriptor must not be closed (and reused) under it
                self._wait_for_sync_end()
            if self._closed:
                return
            self._closed = True
            self._buffer = bytearray()
            descriptors = [*self._read_descriptors.values(), self._active_descriptor]
            self._read_descriptors.clear()
            for descriptor in descriptors:
                if descriptor >= 0:
                    with contextlib.suppress(OSError):
                        self.filesystem.close(descriptor)

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def failed(self) -> str | None:
        """Why the store refuses writes, or None while it is healthy."""
        return self._failure

    @property
    def segment_numbers(self) -> list[int]:
        return list(self._segment_numbers)

    # --- internals ---------------------------------------------------------------------------
    def _segment_path(self, number: int) -> str:
        return os.path.join(self.directory, segment_file_name(number))

    def _check_writable(self) -> None:
        if self._closed:
            raise StorageError(f"the WAL in {self.directory} is closed")
        if self._failure is not None:
            raise StorageError(f"the WAL in {self.directory} failed earlier: {self._failure}")

    def _fail(self, error: OSError, action: str, path: str) -> StorageError:
        failure = storage_error(error, action, path)
        self._failure = str(failure)
        return failure

    def _start_segment(self, number: int) -> None:
        """Make `number` the active segment and queue its header; the buffer must be empty.

        The file itself is created by the next sync, so that a clean shutdown right after a
        rotation leaves no empty segment behind.
        """
        previous_segment_bytes = 0
        if self._active_descriptor >= 0:
            self._read_descriptors[self._active_number] = self._active_descriptor
            previous_segment_bytes = self._active_size
            if self._active_file_bytes > self._active_size:
                self._unfinished_segment = (
                    self._active_number,
                    self._active_descriptor,
                    self._active_size,
                )
        self._active_descriptor = -1
        self._active_file_bytes = 0
        self._active_number = number
        self._active_size = 0
        self._segment_numbers.append(number)
        index = self._index
        self._buffer += encode_segment_header(
            number,
            previous_segment_bytes,
            index.snapshot_index,
            index.snapshot_term,
            index.last_index,
        )
        self._buffer += encode_hard_state(self._hard_state)

    def _create_segment_file(self, path: str, creation: _SegmentCreation) -> int:
        """Create the active segment's file, durably (its directory entry is fsynced), and
        return its descriptor. The previous segment is cut to its records first, durably:
        recovery takes zeros at the end of any segment but the last for damage. Runs in the
        syncing thread without the lock (`_sync`), `creation` recording how far it got; no
        other thread touches these files meanwhile (the segment being cut is only read, below
        its records; `close` waits for the sync)."""
        if creation.unfinished is not None:
            number, descriptor, size = creation.unfinished
            creation.failed_action, creation.failed_path = (
                "cutting the preallocated tail of",
                self._segment_path(number),
            )
            self.filesystem.ftruncate(descriptor, size)
            self.filesystem.fsync(descriptor)
            creation.cut = True
        creation.failed_action, creation.failed_path = "creating", path
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        creation.descriptor = self.filesystem.open(path, flags, FILE_MODE)
        self.filesystem.fsync_directory(self.directory)
        creation.failed_action = ""
        return creation.descriptor

    def _creation_ended(self, creation: _SegmentCreation) -> None:
        """Record, under the lock, what `_create_segment_file` did (all of it, or as far as it
        got before it failed: the failed store still closes the descriptor it opened)."""
        if creation.cut and self._unfinished_segment == creation.unfinished:
            self._unfinished_segment = None
        if creation.descriptor >= 0:
            self._active_descriptor = creation.descriptor

    def _delete_obsolete_segments(self) -> None:
        """Delete the segments before the one holding the first live entry: forgotten here
        at once, their files unlinked by the deleter. A deletion that failed fails the store
        (its next write), as it would have failed this sync done inline."""
        keep_from = min(self._index.first_segment() or self._active_number, self._active_number)
        if self._segment_numbers[0] >= keep_from:
            return
        self._check_deleted()
        paths: list[str] = []
        try:
            while self._segment_numbers[0] < keep_from:
                number = self._segment_numbers[0]
                descriptor = self._read_descriptors.pop(number, -1)
                if self._unfinished_segment is not None and self._unfinished_segment[0] == number:
                    self._unfinished_segment = None  # deleted whole: nothing to cut
                if descriptor >= 0:
                    self.filesystem.close(descriptor)
                paths.append(self._segment_path(number))
                self._segment_numbers.pop(0)
        except OSError as error:
            raise self._fail(error, "deleting", self._segment_path(number)) from error
        if self._deleter is None:
            self._unlink_segments(paths)
        else:
            self._deletions.append(self._deleter(functools.partial(self._unlink_segments, paths)))

    def _unlink_segments(self, paths: list[str]) -> None:
        """Unlink `paths`, then sync the directory. A failure fails the store (`_fail`)."""
        filesystem = self.filesystem
        path = self.directory
        try:
            for path in paths:
                filesystem.unlink(path)
            filesystem.fsync_directory(self.directory)
        except OSError as error:
            raise self._fail(error, "deleting", path) from error

    def _check_deleted(self) -> None:
        """Forget the deletions that ended; raise the first failure among them (which
        `_unlink_segments` also made the store's: every later write fails too)."""
        ended = [deletion for deletion in self._deletions if deletion.done()]
        if not ended:
            return
        self._deletions = [deletion for deletion in self._deletions if not deletion.done()]
        for deletion in ended:
            error = None if deletion.cancelled() else deletion.exception()
            if error is not None:
                raise error

    def _read_entries(self, low: int, high: int) -> list[Entry]:
        """Entries [low, high) from the files (and the unsynced buffer)."""
        index = self._index
        base = index.snapshot_index + 1
        segments, offsets, lengths = index.segments, index.offsets, index.lengths
        result: list[Entry] = []
        position, end_position = low - base, high - base
        while position < end_position:
            # One span: consecutive entries of one segment, up to the span limit.
            segment = segments[position]
            span_start = offsets[position]
            last = position
            while (
                last + 1 < end_position
                and segments[last + 1] == segment
                and offsets[last + 1] + lengths[last + 1] - span_start <= READ_SPAN_BYTES_MAX
            ):
                last += 1
            span = self._read_span(segment, span_start, offsets[last] + lengths[last] - span_start)
            view = memoryview(span)
            for entry_position in range(position, last + 1):
                offset = offsets[entry_position] - span_start
                try:
                    record_type, end = parse_record(view, offset)
                except RecordDamage as damage:
                    raise Corruption(
                        f"damaged WAL record: {damage.reason}",
                        self._segment_path(segment),
                        offsets[entry_position],
                    ) from None
                entry = decode_entry(view, offset, end) if record_type == _ENTRY_TYPE else None
                if entry is None or entry.index != base + entry_position:
                    raise Corruption(
                        f"WAL record is not entry {base + entry_position}",
                        self._segment_path(segment),
                        offsets[entry_position],
                    )
                result.append(entry)
            position = last + 1
        return result

    def _read_span(self, segment: int, start: int, size: int) -> bytes:
        path = self._segment_path(segment)
        filesystem = self.filesystem
        try:
            if segment != self._active_number:
                descriptor = self._read_descriptors.get(segment)
                if descriptor is None:
                    descriptor = filesystem.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    self._read_descriptors[segment] = descriptor
                data = read_exactly(filesystem, descriptor, size, start)
            else:
                written = self._active_size
                data = b""
                if start < written:
                    data = read_exactly(
                        filesystem, self._active_descriptor, min(size, written - start), start
                    )
                if start + size > written:
                    unwritten = self._in_flight + self._buffer
                    data += bytes(unwritten[max(start - written, 0) : start + size - written])
        except OSError as error:
            raise storage_error(error, "reading", path) from error
        if len(data) != size:
            raise Corruption(
                f"WAL segment ends before a record ({len(data)} of {size})", path, start
            )
        return data
