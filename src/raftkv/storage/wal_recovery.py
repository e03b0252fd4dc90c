"""Recovery of the write-ahead log on open: replay every segment, cut a torn tail.

Rules (docs/storage.md has the full story):

- Segments are `wal-<number>.log`, numbered consecutively; a gap is corruption.
- Every segment but the last was fsynced before the next one was created, so any damaged
  record in it is corruption.
- In the last segment, a damaged record (short header, short payload, bad checksum) with no
  valid record anywhere after it is a torn tail from a crash mid-write: the file is
  truncated there and a warning logged. A damaged record followed by a valid one is
  corruption of durable data.
- The last segment may end with zeros its writer put there ahead of its records (a
  preallocated tail, see `file_log`): zeros from a record boundary to the end of the file
  are the log's clean end, neither torn nor damaged, and stay for the writer to fill.
- A last segment holding no more than its header is deleted (a crash right after it was
  created, or one that tore its first write, which carries the header and the current hard
  state together), unless it is the only segment left and not the first ever written.
  Kept, it would go on without the hard state, and deleting the older segments later
  would lose the vote and term they hold.
- Records that parse but make no sense (an entry index that does not follow its
  predecessor, a header that does not continue the previous segment) are corruption.

Corruption is raised with the segment's path and the record's byte offset.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import zlib
from dataclasses import dataclass

from raftkv.core.messages import INDEX_LIMIT, TERM_LIMIT, HardState
from raftkv.errors import Corruption, StorageError
from raftkv.storage.file_io import storage_error
from raftkv.storage.filesystem import FileSystem
from raftkv.storage.wal_bit_flips import one_flip_position
from raftkv.storage.wal_index import UNKNOWN_SEGMENT, LogIndex
from raftkv.storage.wal_records import (
    CHECKSUM_BYTES,
    ENTRY_FIELDS,
    ENTRY_FIELDS_BYTES,
    HARD_STATE_FIELDS,
    POINT_FIELDS,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RECORD_PAYLOAD_BYTES_MAX,
    RECORD_TYPES,
    SEGMENT_HEADER_FIELDS,
    SEGMENT_MAGIC,
    TRUNCATE_FIELDS,
    WAL_FORMAT_VERSION,
    RecordDamage,
    RecordType,
    decode_hard_state,
    find_valid_record,
    parse_record,
)

logger = logging.getLogger("raftkv.storage")

SEGMENT_FILE_PATTERN = re.compile(r"^wal-(\d{16})\.log$")
FIRST_SEGMENT_NUMBER = 1

# Payload sizes of the fixed-size records; an ENTRY has at least its fixed fields.
_FIXED_PAYLOAD_BYTES = {
    RecordType.SEGMENT_HEADER: SEGMENT_HEADER_FIELDS.size,
    RecordType.HARD_STATE: HARD_STATE_FIELDS.size,
    RecordType.TRUNCATE: TRUNCATE_FIELDS.size,
    RecordType.COMPACT: POINT_FIELDS.size,
    RecordType.RESET: POINT_FIELDS.size,
}


_ENTRY_TYPE = int(RecordType.ENTRY)
# A segment's header record alone; its first write always adds the current hard state.
_HEADER_RECORD_BYTES = RECORD_HEADER_BYTES + SEGMENT_HEADER_FIELDS.size


# Torn writes leave whole unwritten blocks (zeros where the file grew but its data did not
# land); a record holding one of these, or this many zeros up to the end of the file, is
# taken for one.
ZERO_BLOCK_BYTES = 512
ZERO_TAIL_BYTES_MIN = 8


def looks_torn(view: memoryview, offset: int) -> bool:
    """Whether the damaged record at `offset`, the last in the log, is a torn write.

    A crash mid-write leaves the record cut short (the file ends inside it) or with blocks
    that never got their data (zeros). A record that is all there, with no such zeros, yet
    fails its checksum was written whole: it is damaged durable data (a bit flip), and
    cutting it would silently drop an entry or a vote this node acknowledged. So is one
    whose checksum one bit flipped before the zeros at its end explains: zeros after the
    last record may be the segment's preallocated tail (`wal_bit_flips`). A bit flipped in
    that tail, past the last record, damaged nothing written: it is cut like a torn write.
    """
    size = len(view)
    if size - offset < RECORD_HEADER_BYTES:
        return True
    if _one_bit_set(view[offset:size].tobytes().strip(b"\x00")):
        return True
    checksum, length, _type = RECORD_HEADER.unpack_from(view, offset)
    # One bit of the length flipped back making a whole record with a valid checksum: the
    # record was written and synced, and its length field was damaged since. (A torn write
    # leaves a header whole, or zeros.)
    if _whole_with_one_length_bit_flipped(view, offset, checksum, length):
        return False
    end = offset + RECORD_HEADER_BYTES + length
    if length > RECORD_PAYLOAD_BYTES_MAX or end > size:
        return True  # cut short, or a length only a torn header's zeros can explain
    zeros_from = offset + len(view[offset:size].tobytes().rstrip(b"\x00"))
    flipped = one_flip_position(view[offset + CHECKSUM_BYTES : end], checksum)
    if flipped is not None and offset + CHECKSUM_BYTES + flipped < zeros_from:
        return False  # one bit flipped before any zeros at its end: written whole
    # Zeros from inside the record to the end of the file: its data never landed.
    if zeros_from < end and size - zeros_from >= ZERO_TAIL_BYTES_MIN:
        return True
    first_block = -(-offset // ZERO_BLOCK_BYTES) * ZERO_BLOCK_BYTES
    zero_block = bytes(ZERO_BLOCK_BYTES)
    for start in range(first_block, end - ZERO_BLOCK_BYTES + 1, ZERO_BLOCK_BYTES):
        if view[start : start + ZERO_BLOCK_BYTES] == zero_block:
            return True
    return False


def _one_bit_set(data: bytes) -> bool:
    return len(data) == 1 and data[0] & (data[0] - 1) == 0


def _whole_with_one_length_bit_flipped(
    view: memoryview, offset: int, checksum: int, length: int
) -> bool:
    header_end = offset + RECORD_HEADER_BYTES
    for bit in range(32):
        candidate = length ^ (1 << bit)
        end = header_end + candidate
        if candidate > RECORD_PAYLOAD_BYTES_MAX or end > len(view):
            continue
        fields = view[offset + CHECKSUM_BYTES : header_end].tobytes()
        fields = candidate.to_bytes(4, "little") + fields[4:]
        if zlib.crc32(view[header_end:end], zlib.crc32(fields)) == checksum:
            return True
    return False


def segment_file_name(number: int) -> str:
    return f"wal-{number:016d}.log"


@dataclass
class RecoveredWal:
    index: LogIndex
    hard_state: HardState
    segment_numbers: list[int]  # ascending; the last one is where appends continue
    last_segment_size: int  # valid bytes of the last segment (0 when there is none)
    # Bytes of the last segment's file: its valid bytes and a preallocated tail of zeros.
    last_segment_file_bytes: int = 0


def list_segments(directory: str, filesystem: FileSystem) -> list[int]:
    try:
        names = filesystem.listdir(directory)
    except OSError as error:
        raise storage_error(error, "listing", directory) from error
    numbers = []
    for name in names:
        match = SEGMENT_FILE_PATTERN.match(name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def recover(directory: str, filesystem: FileSystem) -> RecoveredWal:
    """Replay the WAL in `directory`, repairing a torn tail; raise Corruption on damage."""
    numbers = list_segments(directory, filesystem)
    if numbers and numbers[0] < FIRST_SEGMENT_NUMBER:
        path = os.path.join(directory, segment_file_name(numbers[0]))
        raise Corruption("WAL segment numbers start at 1", path, 0)
    for previous, number in itertools.pairwise(numbers):
        if number != previous + 1:
            path = os.path.join(directory, segment_file_name(number))
            raise Corruption(f"WAL segments {previous + 1}..{number - 1} are missing", path, 0)
    replayer = _Replayer(directory, filesystem)
    last_segment_size = 0
    for position, number in enumerate(numbers):
        is_last = position == len(numbers) - 1
        last_segment_size = replayer.replay_segment(number, is_last)
    headerless_path = None
    if numbers and last_segment_size <= _HEADER_RECORD_BYTES:
        # The last segment holds no valid header, or nothing after it: the first write of
        # a new segment (header and hard state) was cut short by a crash.
        headerless_path = os.path.join(directory, segment_file_name(numbers[-1]))
        if len(numbers) == 1 and numbers[0] != FIRST_SEGMENT_NUMBER:
            raise Corruption(
                "the only WAL segment has no valid header and hard state", headerless_path, 0
            )
        numbers.pop()
        last_segment_size = replayer.segment_sizes[-2] if numbers else 0
        last_segment_file_bytes = last_segment_size  # a segment before the last has no tail
    elif replayer.torn_tail is not None:
        last_segment_file_bytes = last_segment_size  # the file is cut there (below)
    else:
        last_segment_file_bytes = replayer.last_file_bytes
    index = replayer.index
    if index.first_segment() == UNKNOWN_SEGMENT:
        path = os.path.join(directory, segment_file_name(numbers[0]))
        raise Corruption(
            f"log entries from {index.first_index} on are missing (a segment holding them was "
            "deleted)",
            path,
            0,
        )
    # Repairs come last: a WAL that is refused is left exactly as it was found.
    if headerless_path is not None:
        logger.warning(
            "removing WAL segment %s: it holds no valid header and hard state (its first write "
            "was torn)",
            headerless_path,
        )
        _remove_segment(directory, headerless_path, filesystem)
    elif replayer.torn_tail is not None:
        path, offset, reason, dropped = replayer.torn_tail
        logger.warning(
            "WAL %s: cutting a torn tail at offset %d (%s, %d bytes dropped)",
            path,
            offset,
            reason,
            dropped,
        )
        _truncate_file(path, offset, filesystem)
    return RecoveredWal(
        index, replayer.hard_state, numbers, last_segment_size, last_segment_file_bytes
    )


def _remove_segment(directory: str, path: str, filesystem: FileSystem) -> None:
    try:
        filesystem.unlink(path)
        filesystem.fsync_directory(directory)
    except OSError as error:
        raise storage_error(error, "removing", path) from error


def _truncate_file(path: str, size: int, filesystem: FileSystem) -> None:
    try:
        file_descriptor = filesystem.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            filesystem.ftruncate(file_descriptor, size)
            filesystem.fsync(file_descriptor)
        finally:
            filesystem.close(file_descriptor)
    except OSError as error:
        raise storage_error(error, "truncating the torn tail of", path) from error


class _Replayer:
    """Applies the records of each segment, in order, to a LogIndex."""

    def __init__(self, directory: str, filesystem: FileSystem) -> None:
        self.directory = directory
        self.filesystem = filesystem
        self.index = LogIndex()
        self.hard_state = HardState()
        self.segment_sizes: list[int] = []
        self.last_file_bytes = 0  # the size of the last segment's file, as read
        # (path, offset, reason, bytes dropped) of a torn tail to cut once all is replayed.
        self.torn_tail: tuple[str, int, str, int] | None = None
        self._seen_header = False

    def replay_segment(self, number: int, is_last: bool) -> int:
        """Replay one segment; return its valid size (0 when it has no valid header)."""
        path = os.path.join(self.directory, segment_file_name(number))
        try:
            data = self.filesystem.read_file(path)
        except OSError as error:
            raise storage_error(error, "reading", path) from error
        view = memoryview(data)
        size = len(view)
        offset = 0
        # The loop is the hot path of recovery, one turn per entry: the checks of
        # parse_record and the index updates are inlined; only the rare record types (and
        # the damaged ones) go through function calls.
        unpack_header, unpack_entry, crc32 = (
            RECORD_HEADER.unpack_from,
            ENTRY_FIELDS.unpack_from,
            zlib.crc32,
        )
        index = self.index
        next_index = index.last_index + 1
        add_term, add_segment = index.terms.append, index.segments.append
        add_offset, add_length = index.offsets.append, index.lengths.append
        while offset < size:
            valid = False
            if size - offset >= RECORD_HEADER_BYTES:
                checksum, length, record_type = unpack_header(view, offset)
                end = offset + RECORD_HEADER_BYTES + length
                valid = (
                    length <= RECORD_PAYLOAD_BYTES_MAX
                    and end <= size
                    and crc32(view[offset + CHECKSUM_BYTES : end]) == checksum
                    and record_type in RECORD_TYPES
                )
            if not valid:
                if is_last and not view[offset:].tobytes().strip(b"\x00"):
                    break  # a preallocated tail: the log ends here, cleanly
                try:
                    # Raises, with the reason: one of the checks above failed.
                    record_type, end = parse_record(view, offset)
                except RecordDamage as damage:
                    if is_last and find_valid_record(view, offset + 1) is None:
                        if looks_torn(view, offset):
                            self.torn_tail = (path, offset, damage.reason, size - offset)
                            break
                        raise Corruption(
                            f"damaged last WAL record: {damage.reason}; it is complete and"
                            " holds no unwritten (zero) block, so it is not a torn write but"
                            " damage to data that was durable",
                            path,
                            offset,
                        ) from None
                    raise Corruption(f"damaged WAL record: {damage.reason}", path, offset) from None
            if record_type == _ENTRY_TYPE and offset and length >= ENTRY_FIELDS_BYTES:
                term, entry_index, _kind = unpack_entry(view, offset + RECORD_HEADER_BYTES)
                if entry_index != next_index:
                    raise Corruption(
                        f"impossible WAL record: entry {entry_index} does not follow entry "
                        f"{next_index - 1}",
                        path,
                        offset,
                    )
                add_term(term)
                add_segment(number)
                add_offset(offset)
                add_length(end - offset)
                next_index += 1
            else:
                try:
                    self._apply(number, view, offset, end, record_type)
                except _Nonsense as nonsense:
                    raise Corruption(f"impossible WAL record: {nonsense}", path, offset) from None
                # The record may have replaced the index or its arrays.
                index = self.index
                next_index = index.last_index + 1
                add_term, add_segment = index.terms.append, index.segments.append
                add_offset, add_length = index.offsets.append, index.lengths.append
            offset = end
        if offset == 0 and not is_last:
            # Only the newest segment can lack a header: the others were fsynced whole.
            raise Corruption("WAL segment without a valid header", path, 0)
        self.segment_sizes.append(offset)
        self.last_file_bytes = size
        return offset

    def _apply(
        self, number: int, view: memoryview, offset: int, end: int, record_type: int
    ) -> None:
        """Apply any record but a well-formed entry after the header (the loop does those)."""
        payload_start = offset + RECORD_HEADER_BYTES
        payload_length = end - payload_start
        index = self.index
        if offset == 0 and record_type != RecordType.SEGMENT_HEADER:
            raise _Nonsense("the segment does not start with a header")
        if record_type == RecordType.ENTRY:
            raise _Nonsense(f"entry record of {payload_length} bytes")
        expected_length = _FIXED_PAYLOAD_BYTES[RecordType(record_type)]
        if payload_length != expected_length:
            raise _Nonsense(f"record type {record_type} with a payload of {payload_length} bytes")
        payload = view[payload_start:end]
        if record_type == RecordType.SEGMENT_HEADER:
            if offset != 0:
                raise _Nonsense("a segment header in the middle of a segment")
            self._apply_header(number, payload)
        elif record_type == RecordType.HARD_STATE:
            self.hard_state = decode_hard_state(payload)
        elif record_type == RecordType.TRUNCATE:
            (from_index,) = TRUNCATE_FIELDS.unpack(payload)
            if not index.snapshot_index < from_index <= index.last_index:
                raise _Nonsense(
                    f"truncation at {from_index} outside the log "
                    f"({index.first_index}..{index.last_index})"
                )
            index.truncate_from(from_index)
        elif record_type == RecordType.COMPACT:
            through_index, through_term = POINT_FIELDS.unpack(payload)
            _check_point("compaction", through_index, through_term)
            if through_index <= index.snapshot_index:
                raise _Nonsense(f"compaction to {through_index} behind {index.snapshot_index}")
            index.compact(through_index, through_term)
        else:
            reset_index, reset_term = POINT_FIELDS.unpack(payload)
            _check_point("reset", reset_index, reset_term)
            index.reset(reset_index, reset_term)

    def _apply_header(self, number: int, payload: memoryview) -> None:
        (
            magic,
            version,
            header_number,
            previous_segment_bytes,
            snapshot_index,
            snapshot_term,
            last_index,
        ) = SEGMENT_HEADER_FIELDS.unpack(payload)
        if magic != SEGMENT_MAGIC:
            raise _Nonsense("not a raftkv WAL segment (bad magic)")
        if version != WAL_FORMAT_VERSION:
            raise StorageError(f"WAL format version {version} is not supported")
        if header_number != number:
            raise _Nonsense(f"the header names segment {header_number}")
        _check_point("header snapshot", snapshot_index, snapshot_term)
        if not 0 <= last_index < INDEX_LIMIT:
            raise _Nonsense(f"header last index {last_index} out of range")
        if not self._seen_header:
            if last_index < snapshot_index:
                raise _Nonsense(f"last index {last_index} before snapshot {snapshot_index}")
            self._seen_header = True
            self.index = LogIndex(snapshot_index, snapshot_term)
            try:
                # Entries of segments deleted since: a later COMPACT or RESET discards them.
                self.index.add_unknown(last_index)
            except MemoryError:
                raise _Nonsense(
                    f"the header announces {last_index - snapshot_index} entries before it"
                ) from None
            return
        # The previous segment's size catches it being cut at a record boundary, which its
        # records alone cannot show.
        index = self.index
        state = (previous_segment_bytes, snapshot_index, snapshot_term, last_index)
        expected = (
            self.segment_sizes[-1],
            index.snapshot_index,
            index.snapshot_term,
            index.last_index,
        )
        if state != expected:
            raise _Nonsense(
                f"header (previous segment size, snapshot index, snapshot term, last index) "
                f"{state} does not continue the previous segment {expected}"
            )


def _check_point(what: str, index: int, term: int) -> None:
    """Indexes and terms are below 2**62 (core/messages.py); the fields hold 64 bits."""
    if not (0 <= index < INDEX_LIMIT and 0 <= term < TERM_LIMIT):
        raise _Nonsense(f"{what} index {index} term {term} out of range")


class _Nonsense(Exception):
    """A record with a valid checksum whose content is impossible at its place."""
