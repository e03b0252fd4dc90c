"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload.

`FrameParser` is sans-IO: the connection code feeds it whatever bytes a read returned and
pulls out whole payloads, so many small frames cost one read, and a length over the limit
is refused as soon as its 4 header bytes arrive — before any byte of the payload is
buffered, let alone the announced size allocated.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from raftkv.errors import FrameError
from raftkv.transport.limits import FRAME_HEADER_BYTES

_HEADER = struct.Struct(">I")
assert _HEADER.size == FRAME_HEADER_BYTES


def frame_header(payload_bytes: int) -> bytes:
    return _HEADER.pack(payload_bytes)


def encode_frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def join_frames(payloads: Iterable[bytes]) -> bytes:
    """Frame every payload into one buffer, so a batch costs one write (one syscall)."""
    parts: list[bytes] = []
    pack = _HEADER.pack
    for payload in payloads:
        parts.append(pack(len(payload)))
        parts.append(payload)
    return b"".join(parts)


# The first two bytes of a TLS 1.x handshake (0x16) or alert (0x15) record: content type,
# then major version 3.
_TLS_RECORD_STARTS = frozenset({0x1603, 0x1503})


class FrameParser:
    """Splits a byte stream into payloads; raises `FrameError` on an oversized length."""

    __slots__ = ("_buffer", "_offset", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int) -> None:
        # Mutable: the handshake is parsed under a small limit, then the limit is raised.
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        # Start of the unconsumed bytes; consumed bytes are cut off at the next `feed()`
        # rather than after every frame, which would move the rest of the buffer each time.
        self._offset = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> None:
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole payload, or None until more bytes arrive."""
        buffer = self._buffer
        start = self._offset
        if len(buffer) - start < FRAME_HEADER_BYTES:
            return None
        (length,) = _HEADER.unpack_from(buffer, start)
        if length > self.frame_bytes_max:
            hint = ""
            if length >> 16 in _TLS_RECORD_STARTS:
                # A TLS record (a ClientHello, or an alert) read as a frame header.
                hint = " (the sender speaks TLS: a node with --peer-cert, this one without?)"
            raise FrameError(
                f"frame announces {length} bytes, over the limit of {self.frame_bytes_max}" + hint
            )
        end = start + FRAME_HEADER_BYTES + length
        if end > len(buffer):
            return None
        self._offset = end
        return bytes(buffer[start + FRAME_HEADER_BYTES : end])
