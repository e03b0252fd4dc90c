"""Every limit and timing of the peer transport, in one place.

The module constants are the defaults; `TransportLimits` carries them into a transport so a
test (or an operator) can tighten one without touching the others.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- frames --------------------------------------------------------------------------------
# A frame is a 4-byte big-endian payload length followed by the payload.
FRAME_HEADER_BYTES = 4
# The largest payload a peer may announce. The core caps an AppendEntries at
# `RaftConfig.message_bytes_max` (1 MiB) and a snapshot chunk at 256 KiB, so 64 MiB is far
# above anything legitimate while still refusing a garbage header before any allocation.
FRAME_BYTES_MAX = 64 << 20
# Before the handshake the other side is a stranger: it may not make us buffer more than this.
HANDSHAKE_FRAME_BYTES_MAX = 4 << 10

# --- queues and batching -------------------------------------------------------------------
# Frames waiting for one peer. The core keeps at most `inflight_messages_max` (64)
# AppendEntries in flight per follower, plus heartbeats, votes and snapshot chunks, so a
# healthy peer never comes near this; a down peer holds at most this much.
SEND_QUEUE_FRAMES_MAX = 4096
SEND_QUEUE_BYTES_MAX = 32 << 20
# Bytes joined into one `write()` (the memory twin: delivered before yielding to the loop);
# at least one frame always goes, whatever its size.
WRITE_BATCH_BYTES_MAX = 1 << 20
# Bytes asked of the socket per read; many small frames arrive in one read.
READ_CHUNK_BYTES = 256 << 10

# --- connections ---------------------------------------------------------------------------
# Accepted connections alive at once (authenticated or not): a stranger opening sockets in a
# loop cannot exhaust file descriptors.
INBOUND_CONNECTIONS_MAX = 256
# Connections still in their handshake, in all and from one host. Beyond either, the oldest
# such connection (from that host, or of all) is closed to make room: 260 silent sockets
# once kept a restarted member out for as long as they were held, and a member handshakes
# at once, so it is never the oldest for long. Authenticated connections never count here.
UNAUTHENTICATED_CONNECTIONS_MAX = 64
UNAUTHENTICATED_PER_HOST_MAX = 16
CONNECT_TIMEOUT_SECONDS = 5.0
# Linux TCP_USER_TIMEOUT on outbound connections: sent data unacknowledged this long aborts
# the connection, so a peer whose host vanished (no FIN, no RST) is noticed in seconds rather
# than after the kernel's ~15 minutes of retransmissions, and redialing starts.
UNACKNOWLEDGED_SEND_TIMEOUT_SECONDS = 10.0
# A connection that has not completed its handshake by then is closed (both sides).
HANDSHAKE_TIMEOUT_SECONDS = 5.0
# How long `close()` waits for a socket to finish closing before moving on.
CLOSE_TIMEOUT_SECONDS = 1.0
# A peer refused again and again (every reconnect) is logged as a warning once per interval
# for the same sender and reason, and at debug level in between.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0
# (sender, reason) pairs remembered for that; forgotten all at once beyond this many.
REFUSALS_REMEMBERED_MAX = 1024
# Peers not in the configuration known here that are accepted because their handshake names
# their address (a member added since this node last heard): at most this many at a time,
# so that whoever knows the cluster id cannot make a node keep links to, and dial, any
# number of addresses of its choosing.
ADOPTED_PEERS_MAX = 16
# Reconnect backoff: doubles from the initial delay up to the cap, each delay jittered.
RECONNECT_BACKOFF_INITIAL_SECONDS = 0.05
RECONNECT_BACKOFF_MAX_SECONDS = 1.0
# The cap for a removal notice's redials (`Transport.tell_removed`): a removed node is most
# often stopped for good by its operator, and is dialed for as long as the notice lasts.
REMOVAL_NOTICE_BACKOFF_MAX_SECONDS = 10.0


@dataclass(frozen=True)
class TransportLimits:
    frame_bytes_max: int = FRAME_BYTES_MAX
    handshake_frame_bytes_max: int = HANDSHAKE_FRAME_BYTES_MAX
    send_queue_frames_max: int = SEND_QUEUE_FRAMES_MAX
    send_queue_bytes_max: int = SEND_QUEUE_BYTES_MAX
    write_batch_bytes_max: int = WRITE_BATCH_BYTES_MAX
    read_chunk_bytes: int = READ_CHUNK_BYTES
    inbound_connections_max: int = INBOUND_CONNECTIONS_MAX
    unauthenticated_connections_max: int = UNAUTHENTICATED_CONNECTIONS_MAX
    unauthenticated_per_host_max: int = UNAUTHENTICATED_PER_HOST_MAX
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    unacknowledged_send_timeout_seconds: float = UNACKNOWLEDGED_SEND_TIMEOUT_SECONDS
    handshake_timeout_seconds: float = HANDSHAKE_TIMEOUT_SECONDS
    close_timeout_seconds: float = CLOSE_TIMEOUT_SECONDS
    reconnect_backoff_initial_seconds: float = RECONNECT_BACKOFF_INITIAL_SECONDS
    reconnect_backoff_max_seconds: float = RECONNECT_BACKOFF_MAX_SECONDS

    def __post_init__(self) -> None:
        counts = (
            self.frame_bytes_max,
            self.handshake_frame_bytes_max,
            self.send_queue_frames_max,
            self.send_queue_bytes_max,
            self.write_batch_bytes_max,
            self.read_chunk_bytes,
            self.inbound_connections_max,
            self.unauthenticated_connections_max,
            self.unauthenticated_per_host_max,
        )
        if any(count <= 0 for count in counts):
            raise ValueError("transport limits must be positive")
        # The header stores the length in 32 bits.
        if self.frame_bytes_max >= 1 << 32:
            raise ValueError("frame_bytes_max must fit the 4-byte length prefix")
        timings = (
            self.connect_timeout_seconds,
            self.unacknowledged_send_timeout_seconds,
            self.handshake_timeout_seconds,
            self.close_timeout_seconds,
            self.reconnect_backoff_initial_seconds,
        )
        if any(seconds <= 0 for seconds in timings):
            raise ValueError("transport timeouts must be positive")
        if self.reconnect_backoff_max_seconds < self.reconnect_backoff_initial_seconds:
            raise ValueError("reconnect backoff cap is below its initial delay")
