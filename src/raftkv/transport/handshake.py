"""The first frame each way on a peer connection (SPEC §4): who is talking, and may it?

The connecting side sends a `Handshake`; the accepting side checks it with
`check_handshake` and answers with a `HandshakeReply` that accepts or refuses, with a reason.
Both are MessagePack maps, not arrays, so a later version can add fields that this one
ignores; and the magic and version are checked before the rest is validated, so a peer of
another version is refused for its version rather than for a field it no longer sends.

Version 2 added `lease`: the settings a leader lease relies on every node sharing
(`LeaseSettings`); a peer whose settings differ is refused.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

import msgspec

from raftkv.errors import FrameError

HANDSHAKE_MAGIC = "raftkv"
# 2: the handshake carries `lease` (a version-1 peer is refused for its version, both ways).
PROTOCOL_VERSION = 2


class LeaseSettings(msgspec.Struct, frozen=True):
    """What a leader lease (thesis §6.4.1) assumes every node runs with, so nodes compare it.

    A leader reads locally while a quorum answered a heartbeat it sent less than its lease
    ago (`core/replication.py`, `lease_valid`: its minimum election timeout minus a margin,
    counted in its own ticks). That is safe only because each of those followers ignores
    vote and pre-vote requests until its own minimum election timeout, counted in its own
    ticks, has passed since it heard the leader, and only with check-quorum on
    (`core/node.py`, `_accept_higher_term`). The core computes the lease from its own
    settings as if they were everyone's, and any voter may lead, so every node must have:

    - the same `check_quorum`: a follower with it off grants votes inside the lease;
    - the same minimum election timeout in milliseconds (`election_timeout_ms_min`: the
      ticks the core uses times the tick, so `--election-timeout-ms 155` at 10 ms ticks
      is 150): a shorter one on any voter lets it vote before another leader's lease ends,
      and a longer one makes its own lease, when it leads, outlast the others' promise;
    - the same `tick_ms`: timers advance in whole ticks, so a follower with coarser ticks
      can time out up to one of its ticks early (at 50 ms ticks a 150 ms timeout may end
      after 100 ms), more than a leader's margin sized in its own finer ticks covers (at
      10 ms ticks and 150 ms, the lease is 120 ms).

    The margin (a fifth of the timeout, at least one tick) is there for clock-rate drift
    between nodes; a tolerance rule ("within 20 %") would spend it on configuration, so
    the rule is equality. The maximum election timeout, the heartbeat interval and pre-vote
    are not compared: they change when a node campaigns or how often the lease is renewed,
    never how long a follower keeps its promise (a node answers pre-votes the same way
    whatever its own pre-vote setting).
    """

    tick_ms: int
    election_timeout_ms_min: int
    check_quorum: bool

    @classmethod
    def of(
        cls, *, tick_ms: int, election_timeout_ticks_min: int, check_quorum: bool
    ) -> LeaseSettings:
        """The settings of a node whose core counts `election_timeout_ticks_min` ticks of
        `tick_ms` each."""
        return cls(tick_ms, election_timeout_ticks_min * tick_ms, check_quorum)

    def describe(self) -> str:
        quorum = "on" if self.check_quorum else "off"
        return (
            f"election timeout {self.election_timeout_ms_min} ms (tick {self.tick_ms} ms), "
            f"check-quorum {quorum}"
        )


class Handshake(msgspec.Struct, frozen=True):
    magic: str
    protocol_version: int
    cluster_id: str
    node_id: int
    # The node the sender believes it dialed (0: unknown), so an address that points at the
    # wrong node is refused instead of silently misrouting messages.
    to_node_id: int = 0
    # The sender's client address ("host:port"), for leader hints (SPEC §1).
    client_address: str = ""
    # Version 2: the sender's lease settings; None (absent) never matches.
    lease: LeaseSettings | None = None
    # The sender's peer address ("host:port"; empty when it listens on a wildcard address):
    # a member added after this node last heard of the configuration (it lagged, or
    # restarted knowing only the members of its join) can still reach it, be answered,
    # and so bring it up to date. Optional: older version-2 nodes leave it out.
    peer_address: str = ""
    # The index of the configuration that made the sender a member (the one its `--join`
    # added it in; 1, the first configuration, for a founding member); 0 when not known (an
    # older node, or one still asking to join). A member that applied a later configuration
    # without the sender knows it was removed since, and says so (`removed_at`).
    member_since: int = 0
    # A removal notice (SPEC §4): the sender applied (so the cluster committed) a
    # configuration at this index that does not hold the node dialed. Such a dial only
    # tells: it is always refused, and the node dialed stops if the notice is about it
    # (`removal_notice`). 0 on every other dial.
    removed_at: int = 0


class HandshakeReply(msgspec.Struct, frozen=True):
    accepted: bool
    reason: str = ""
    node_id: int = 0
    client_address: str = ""
    # The cluster id, told to a member that dialed without one (a founding member that has
    # not learnt it yet: see `check_handshake`); empty otherwise.
    cluster_id: str = ""
    # Refused because the dialer was removed: the index of the configuration this node
    # applied (so committed) that does not hold the dialer, past its `member_since`. The
    # dialer stops (SPEC §4); 0 for every other refusal.
    removed_at: int = 0


# Founders other than the lowest-id one refuse each other until they learn the cluster id:
# expected while a new cluster starts, so both sides log it at INFO, not as a warning.
CLUSTER_ID_UNKNOWN = "cluster id unknown"
NEITHER_KNOWS_THE_CLUSTER_ID = (
    "neither node knows the cluster id yet (founding members learn it from a member that "
    "does: the founder with the lowest id makes it)"
)


def is_bootstrap_refusal(reason: str) -> bool:
    """Whether a refusal the dialer was told is the expected one of a starting cluster."""
    return reason == NEITHER_KNOWS_THE_CLUSTER_ID


class _Preamble(msgspec.Struct):
    """The fields every protocol version keeps, decoded before the rest."""

    magic: str
    protocol_version: int


_encoder = msgspec.msgpack.Encoder()
# What msgspec raises for bytes that are no handshake: a string that is not UTF-8 and
# nesting past the recursion limit are not DecodeErrors.
_MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_preamble_decoder = msgspec.msgpack.Decoder(_Preamble)
_handshake_decoder = msgspec.msgpack.Decoder(Handshake)
_reply_decoder = msgspec.msgpack.Decoder(HandshakeReply)


def encode_handshake(handshake: Handshake | HandshakeReply) -> bytes:
    return _encoder.encode(handshake)


def decode_handshake(payload: bytes) -> Handshake:
    """Decode a handshake; raises `FrameError` for anything that is not a raftkv handshake
    of this protocol version."""
    try:
        preamble = _preamble_decoder.decode(payload)
    except _MALFORMED as error:
        raise FrameError(f"malformed handshake: {error}") from error
    if preamble.magic != HANDSHAKE_MAGIC:
        raise FrameError(f"not a raftkv handshake (magic {preamble.magic!r})")
    if preamble.protocol_version != PROTOCOL_VERSION:
        raise FrameError(f"protocol version {preamble.protocol_version} != {PROTOCOL_VERSION}")
    try:
        return _handshake_decoder.decode(payload)
    except _MALFORMED as error:
        raise FrameError(f"malformed handshake: {error}") from error


def decode_reply(payload: bytes) -> HandshakeReply:
    try:
        return _reply_decoder.decode(payload)
    except _MALFORMED as error:
        raise FrameError(f"malformed handshake reply: {error}") from error


@dataclass(frozen=True)
class Refusal:
    """Why a handshake is refused: `reply` is told to the remote, `log` is logged here.

    They differ where the full reason names something of this node that the remote has not
    shown it may know: a wrong cluster id is answered without the right one. `kind` is this
    node's name for the reason, one of a few: logs are rate-limited per kind and remote
    host, never per text the remote chose, and each kind of refusal still gets its line.
    """

    reply: str
    log: str
    kind: str
    # See `HandshakeReply.removed_at`.
    removed_at: int = 0

    @classmethod
    def same(cls, reason: str, kind: str) -> Refusal:
        return cls(reason, reason, kind)


@dataclass(frozen=True)
class AppliedConfiguration:
    """The newest configuration a node applied (committed): its index and members."""

    index: int
    members: frozenset[int]


NO_CONFIGURATION = AppliedConfiguration(0, frozenset())


def was_removed(node_id: int, member_since: int, applied: AppliedConfiguration) -> bool:
    """Whether `applied` proves that `node_id`, a member since `member_since` (0: not
    known), was removed since (see `removal_refusal`)."""
    return 0 < member_since < applied.index and node_id not in applied.members


def removal_refusal(handshake: Handshake, applied: AppliedConfiguration) -> Refusal | None:
    """The refusal of a dialer removed from the cluster, or None.

    Configurations commit in log order, so one applied here at an index past the dialer's
    `member_since` that does not hold it proves it was removed after it joined, whatever
    happened in between: unlike the transport's set of removed peers, this survives a
    restart of either side and needs no leader to have told the dialer. A node re-added
    under a removed id joins anew, at an index past the removal, so it is not refused so.
    """
    since = handshake.member_since
    if not was_removed(handshake.node_id, since, applied):
        return None
    reason = (
        f"node id {handshake.node_id} was removed from the cluster: the configuration at "
        f"index {applied.index} does not hold it (a member since index {since})"
    )
    return Refusal(reason, reason, "removed node", removed_at=applied.index)


def removal_notice(
    handshake: Handshake,
    *,
    cluster_id: str,
    node_id: int,
    member_since: int,
    applied: AppliedConfiguration,
) -> tuple[Refusal, bool]:
    """Answer a dialer's removal notice (`handshake.removed_at`): the refusal to answer it
    with, and whether it proves this node was removed.

    The mirror of `removal_refusal`, for a removed node that dials no member (it knows only
    peers that are gone): a member dials it instead. Believed only from a node of this
    cluster (both know the cluster id, and they are equal) that dialed this very node, and
    only if the configuration it names comes after the one that made this node a member
    and this node applied none since that holds it: a node re-added under its id joined
    anew, past the removal, and is not stopped by an old notice."""
    if not cluster_id or handshake.cluster_id != cluster_id:
        reason = "a removal notice from a node of another cluster (or before the id is known)"
        return Refusal.same(reason, "removal notice"), False
    if handshake.to_node_id != node_id or handshake.node_id <= 0 or handshake.node_id == node_id:
        reason = f"a removal notice for node {handshake.to_node_id} from node {handshake.node_id}"
        return Refusal.same(f"{reason}, but this is node {node_id}", "removal notice"), False
    removed_at = handshake.removed_at
    removed = was_removed(node_id, member_since, AppliedConfiguration(removed_at, frozenset()))
    if removed and applied.index >= removed_at and node_id in applied.members:
        removed = False
    if not removed:
        reason = (
            f"the configuration at index {removed_at} does not prove node {node_id} was "
            f"removed: a member since index {member_since}, holding the configuration at "
            f"index {applied.index}"
        )
        return Refusal.same(reason, "removal notice"), False
    reason = (
        f"node {node_id} takes the notice: the configuration at index {removed_at} does not "
        f"hold it (a member since index {member_since}); stopping"
    )
    return Refusal.same(reason, "removal notice"), True


def check_handshake(
    handshake: Handshake,
    *,
    cluster_id: str,
    node_id: int,
    lease_settings: LeaseSettings,
    known_peers: Container[int],
    accept_unknown_peers: bool,
    removed_peers: Mapping[int, int] | None = None,
    applied: AppliedConfiguration = NO_CONFIGURATION,
) -> Refusal | None:
    """Why the handshake is refused, or None when it is accepted.

    The lease settings are compared last: only a remote that passed every identity check,
    one that would otherwise be accepted and could send Raft messages, hears this node's
    settings in the refusal.
    """
    if not cluster_id and not handshake.cluster_id:
        return Refusal.same(NEITHER_KNOWS_THE_CLUSTER_ID, CLUSTER_ID_UNKNOWN)
    if not cluster_id or not handshake.cluster_id:
        # One side is a founding member still learning the cluster id (the founder with the
        # lowest id made it at random; the others learn it from the first member that knows
        # it). Only a member of the configuration may learn it or teach it.
        if handshake.node_id not in known_peers:
            return Refusal.same(
                f"node {handshake.node_id} is not a member, and one side does not know the "
                "cluster id yet",
                CLUSTER_ID_UNKNOWN,
            )
    elif handshake.cluster_id != cluster_id:
        return Refusal(
            reply=f"cluster id {handshake.cluster_id!r} is not this node's cluster id",
            log=f"cluster id {handshake.cluster_id!r} != {cluster_id!r}",
            kind="wrong cluster id",
        )
    if handshake.to_node_id not in (0, node_id):
        return Refusal.same(
            f"addressed to node {handshake.to_node_id} but this is node {node_id}",
            "addressed to another node",
        )
    if handshake.node_id == node_id:
        return Refusal.same(f"node id {node_id} is this node's own id", "own node id")
    if handshake.node_id <= 0:
        return Refusal.same(f"invalid node id {handshake.node_id}", "invalid node id")
    removed = removal_refusal(handshake, applied)
    if removed is not None:
        return removed
    if handshake.node_id not in known_peers and not accept_unknown_peers:
        # A member this node has not heard of yet is welcome if it says where to answer it;
        # a removed one is not (it has left, and its messages would only disrupt), unless
        # it was made a member again after the configuration that removed it here (a node
        # re-added under its id, by a configuration this node has yet to learn: refused,
        # it could never teach it, were it the leader; seed 998202 with 7 nodes).
        # (A removal at index 0, not known, refuses it whatever it says.)
        removed_at = None if removed_peers is None else removed_peers.get(handshake.node_id)
        if removed_at is not None and (removed_at == 0 or handshake.member_since <= removed_at):
            return Refusal.same(
                f"node id {handshake.node_id} was removed from the cluster", "removed node"
            )
        if not handshake.peer_address:
            return Refusal.same(
                f"unknown node id {handshake.node_id} (not a configured peer)", "unknown node"
            )
    if handshake.lease != lease_settings:
        theirs = "no lease settings" if handshake.lease is None else handshake.lease.describe()
        return Refusal.same(
            f"lease settings differ: node {handshake.node_id} has {theirs}; "
            f"node {node_id} has {lease_settings.describe()} (every node needs the same tick, "
            "minimum election timeout and check-quorum setting)",
            "lease settings differ",
        )
    return None


def certificate_refusal(claimed_node_id: int, certificate_ids: set[int]) -> Refusal | None:
    """Over mutual TLS: why a handshake whose sender's certificate names `certificate_ids`
    is refused for claiming `claimed_node_id`, or None. The certificate is the proof of
    identity; a handshake may only claim an id it names (`raftkv.tls`)."""
    if claimed_node_id in certificate_ids:
        return None
    named = ", ".join(f"node {node_id}" for node_id in sorted(certificate_ids)) or "no node"
    return Refusal.same(
        f"claims node id {claimed_node_id} but its certificate names {named}",
        "certificate names another node",
    )
