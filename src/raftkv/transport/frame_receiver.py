"""An accepted peer connection's frames, delivered from the transport's callback.

After the handshake an inbound connection only carries frames to this node. Read through
an `asyncio.StreamReader`, each arrival took a hop through the event loop: the stream's
protocol (interpreted asyncio code) buffered the bytes and woke the reading task, which ran
on the loop's next turn to read them back, parse and deliver. `FrameReceiver` replaces the
stream's protocol on the connection's transport (`set_protocol`) and parses and delivers in
`data_received` itself; what the stream's protocol still does for the writer (flow control
of writes, the closing that `StreamWriter.wait_closed` waits for) is passed on to it.

Never compiled (setup.py): mypyc's native classes cannot subclass `asyncio.Protocol`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from raftkv.transport.framing import FrameParser


class FrameReceiver(asyncio.Protocol):
    """Parses the bytes arriving on `transport` into frames and hands each payload to
    `deliver`, on the loop's thread, in order. `ended` settles when the connection ends: None
    at end of stream, or the error that ended it (a malformed frame, a failed delivery, a
    broken connection); the transport is closed then."""

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        parser: FrameParser,
        deliver: Callable[[bytes], None],
        stream_protocol: asyncio.BaseProtocol,
    ) -> None:
        self._transport = transport
        self._parser = parser
        self._deliver = deliver
        self._stream_protocol = stream_protocol
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    def take_over(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: FrameParser,
        deliver: Callable[[bytes], None],
    ) -> FrameReceiver | None:
        """Take the connection of `reader` and `writer` over from the stream, `parser`
        holding what was read of it so far: the frames complete in it are delivered first
        (before this returns), then those of the bytes the stream buffered but nobody read
        yet, then those of what arrives. None where this Python's `StreamReader` keeps its
        buffer otherwise than read here: the caller goes on reading through the stream."""
        buffered = getattr(reader, "_buffer", None)
        at_end = getattr(reader, "_eof", None)
        if not isinstance(buffered, bytearray) or not isinstance(at_end, bool):
            return None
        transport = writer.transport
        receiver = cls(transport, parser, deliver, transport.get_protocol())
        leftover = bytes(buffered)
        buffered.clear()
        transport.set_protocol(receiver)
        receiver.data_received(leftover)
        if at_end:
            # The stream saw the end already (and kept the socket open for writing).
            receiver.eof_received()
            transport.close()
        elif not receiver.ended.done():
            # The stream pauses reading while its buffer is full; nothing will resume it.
            transport.resume_reading()  # type: ignore[attr-defined]
        return receiver

    def data_received(self, data: bytes) -> None:
        if self.ended.done():
            return  # the connection is closing: what is still arriving is not read
        parser = self._parser
        deliver = self._deliver
        try:
            if data:
                parser.feed(data)
            while (payload := parser.next_frame()) is not None:
                deliver(payload)
        except BaseException as error:  # handed to the connection's task, which logs it
            self._end(error)
            self._transport.close()
            if not isinstance(error, Exception):
                raise

    def eof_received(self) -> bool:
        self._end(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)
        self._stream_protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._stream_protocol.pause_writing()

    def resume_writing(self) -> None:
        self._stream_protocol.resume_writing()

    def _end(self, error: BaseException | None) -> None:
        if self.ended.done():
            return
        if error is None:
            self.ended.set_result(None)
        else:
            self.ended.set_exception(error)
            # Marked as seen: the connection's task raises it when it awaits `ended`, and a
            # task cancelled first (the node stopping) has nothing to say about it.
            self.ended.exception()
