"""Whether one flipped bit explains a WAL record's wrong checksum.

Recovery must tell a torn write (cut it: it was never acknowledged) from a record that was
written whole and synced and damaged since (refuse: cutting it would drop an acknowledged
entry or vote). Zeros inside the record used to settle it: a torn write leaves blocks that
never got their data. But the active segment is preallocated with zeros (`file_log`), so a
damaged last record is always followed by zeros, and a record whose own bytes end in zeros
(an empty entry's fields do) would look torn. A single bit flip is what the simulated disk
and most real damage do, and CRC-32 is linear, so whether one exists is cheap to answer: a
flip of bit b in byte i of an n-byte message changes its CRC by CRC(that bit alone, followed
by n - 1 - i zero bytes), whatever the message. So the difference between the stored and the
computed checksum is run backwards through zero bytes, one byte at a time, and compared with
the 8 single-bit changes of a last byte; how many bytes it took is where the flip is. (The
chance that a torn record matches by accident is about 8n / 2^32.)

A flip found inside the zeros at the record's end explains nothing: a torn write that left
those zeros fits just as well (the bytes that did not land held one set bit, a term of 1
say), and the old judgement by zeros decides, as it did before there was a tail.
"""

from __future__ import annotations

import zlib

_POLYNOMIAL = 0xEDB88320  # zlib's CRC-32, reflected


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLYNOMIAL if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _table()
# One step of the CRC over a zero byte is r -> (r >> 8) ^ T[r & 0xFF]; the top byte of its
# result is the top byte of T[r & 0xFF], and those 256 top bytes are all different, so the
# step can be undone.
_BYTE_OF_TOP = {entry >> 24: byte for byte, entry in enumerate(_TABLE)}
if len(_BYTE_OF_TOP) != 256:  # pragma: no cover - a property of the polynomial
    raise AssertionError("CRC-32 table top bytes are not a permutation")
# The change of the CRC of a message whose last byte has one bit flipped.
_LAST_BYTE_FLIPS = frozenset(_TABLE[1 << bit] for bit in range(8))

# Messages longer than this are not searched (about 0.3 µs a byte): a bit flip in one goes
# unexplained, and recovery judges the record by its zeros alone, as it did before.
SEARCH_BYTES_MAX = 16 << 20


def one_flip_position(message: bytes | memoryview, checksum: int) -> int | None:
    """The index of the byte of `message` whose one flipped bit makes `checksum` match it,
    -1 when the flipped bit is in `checksum` itself, None when no one flip does."""
    difference = zlib.crc32(message) ^ checksum
    if difference == 0:
        return None  # they match: nothing flipped
    if difference & (difference - 1) == 0:
        return -1
    if len(message) > SEARCH_BYTES_MAX:
        return None
    table, byte_of_top, flips = _TABLE, _BYTE_OF_TOP, _LAST_BYTE_FLIPS
    last = len(message) - 1
    for distance in range(len(message)):
        if difference in flips:
            return last - distance
        byte = byte_of_top[difference >> 24]
        difference = (((difference ^ table[byte]) << 8) | byte) & 0xFFFFFFFF
    return None
