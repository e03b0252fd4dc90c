"""TLS: the certificate files a node is given, and every `ssl.SSLContext` built from them.

The one place contexts are made, for the peer transport (mutual TLS), the HTTPS client port,
`--join` and the client libraries, so that all of them agree on versions and verification.
The transport, the HTTP server and the clients are handed contexts; none reads a file.

Peer identity (SPEC §6, "TLS"): a node's certificate names its node id as the DNS name
`node-N.raftkv` in its subject alternative names. Peers dial each other by address, so
hostname checking is off on the peer links and replaced by comparing that name with the
node id the handshake claims (accepting side) or the node id dialed (dialing side).
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A node's name in its certificate: `node-N.raftkv`, a DNS subject alternative name.
NODE_NAME_SUFFIX = ".raftkv"
_NODE_NAME = re.compile(r"node-([1-9][0-9]{0,18})\.raftkv")
# TLS 1.2 is the oldest version still considered sound; both ends are raftkv or a modern
# HTTP client, so nothing older is needed.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# How long the HTTPS client port waits for a client to finish its TLS handshake (asyncio's
# own default is a minute, which lets idle strangers hold sockets).
CLIENT_PORT_HANDSHAKE_TIMEOUT_SECONDS = 10.0


class TlsError(ValueError):
    """Certificate files a node or client cannot use: missing, unreadable, or not matching."""


def node_dns_name(node_id: int) -> str:
    return f"node-{node_id}{NODE_NAME_SUFFIX}"


def node_ids_named(peer_certificate: Mapping[str, Any] | None) -> set[int]:
    """The node ids a verified peer certificate names (`SSLSocket.getpeercert()` form)."""
    if not peer_certificate:
        return set()
    ids: set[int] = set()
    for kind, value in peer_certificate.get("subjectAltName", ()):
        if kind == "DNS" and isinstance(value, str):
            match = _NODE_NAME.fullmatch(value.lower())
            if match:
                ids.add(int(match.group(1)))
    return ids


@dataclass(frozen=True)
class PeerTlsFiles:
    """`--peer-cert`, `--peer-key`, `--peer-ca`: mutual TLS between nodes."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class ClientPortTlsFiles:
    """`--client-cert`, `--client-key` (HTTPS on the client port) and `--client-ca`
    (require client certificates signed by it)."""

    cert: str
    key: str
    ca: str | None = None


@dataclass(frozen=True)
class TlsSettings:
    """A node's TLS files; None where that side speaks plain TCP or HTTP."""

    peer: PeerTlsFiles | None = None
    client_port: ClientPortTlsFiles | None = None

    @property
    def https(self) -> bool:
        """Whether the client port serves HTTPS, so leader hints say `https://`."""
        return self.client_port is not None


@dataclass(frozen=True)
class PeerTls:
    """The two contexts of mutual TLS between nodes: accepting and dialing."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def url_scheme(https: bool) -> str:
    return "https" if https else "http"


def _load_chain(
    context: ssl.SSLContext, cert: str, key: str, cert_flag: str, key_flag: str
) -> None:
    _check_readable(cert, cert_flag)
    _check_readable(key, key_flag)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error) or "key values mismatch" in str(error):
            raise TlsError(
                f"{key_flag} {key} is not the key of {cert_flag} {cert} (they do not match)"
            ) from None
        raise TlsError(f"{cert_flag} {cert}, {key_flag} {key}: cannot load: {error}") from None
    except OSError as error:
        raise TlsError(f"{cert_flag} {cert}: {error.strerror or error}") from None


def _load_ca(context: ssl.SSLContext, ca: str, flag: str) -> None:
    _check_readable(ca, flag)
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as error:
        raise TlsError(f"{flag} {ca}: not a PEM CA certificate: {error}") from None


def _check_readable(path: str, flag: str) -> None:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as error:
        raise TlsError(f"{flag} {path}: {error.strerror or error}") from None


def _new_context(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = MINIMUM_VERSION
    return context


def peer_tls(files: PeerTlsFiles) -> PeerTls:
    """Mutual TLS between nodes: each side presents its certificate and requires one signed
    by the CA. No hostname check (peers dial addresses): the transport checks node ids."""
    server = _new_context(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(server, files.cert, files.key, "--peer-cert", "--peer-key")
    _load_ca(server, files.ca, "--peer-ca")
    server.verify_mode = ssl.CERT_REQUIRED
    client = _new_context(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_REQUIRED
    _load_chain(client, files.cert, files.key, "--peer-cert", "--peer-key")
    _load_ca(client, files.ca, "--peer-ca")
    return PeerTls(server, client)


def client_port_context(files: ClientPortTlsFiles) -> ssl.SSLContext:
    """The HTTPS client port's context; with a CA, clients must present a certificate.

    The handshake only asks for one (CERT_OPTIONAL: a certificate presented must still be
    valid and signed by the CA, or the handshake fails), and the HTTP server refuses every
    request on a connection without one with an answer the client can read (401
    `client_certificate_required`, `HttpServer.start`). Refused in the handshake instead, a
    TLS 1.3 client learns of it only after sending its request, as a dropped connection,
    and retries until its deadline without saying why."""
    context = _new_context(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(context, files.cert, files.key, "--client-cert", "--client-key")
    if files.ca is not None:
        _load_ca(context, files.ca, "--client-ca")
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(
    *, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client's context for HTTPS node URLs: the system's trusted CAs, or `ca_file`
    alone; hostnames are checked; `cert_file` (and `key_file`, if the key is a separate
    file) is presented to nodes that require client certificates."""
    if key_file is not None and cert_file is None:
        raise TlsError("a client key needs its certificate (cert_file / --cert)")
    context = _new_context(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is not None:
        _load_ca(context, ca_file, "--cacert")
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert_file is not None:
        _load_chain(context, cert_file, key_file or cert_file, "--cert", "--key")
    return context


def join_context(settings: TlsSettings) -> ssl.SSLContext | None:
    """How `--join` talks to the cluster's client port, or None for plain HTTP.

    The joining node speaks HTTPS when it serves HTTPS itself (a cluster is configured
    alike). It trusts `--client-ca` and `--peer-ca`, whichever are given (`raft-node certs
    init` makes one CA for both), and presents its `--client-cert`, which that port requires
    when it has `--client-ca`; without a client CA there is nothing to verify it with.
    """
    files = settings.client_port
    if files is None:
        return None
    context = _new_context(ssl.PROTOCOL_TLS_CLIENT)
    trusted = [(files.ca, "--client-ca")] if files.ca else []
    if settings.peer is not None:
        trusted.append((settings.peer.ca, "--peer-ca"))
    if trusted:
        for ca, flag in trusted:
            _load_ca(context, ca, flag)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load_chain(context, files.cert, files.key, "--client-cert", "--client-key")
    return context


def check_settings(settings: TlsSettings, node_id: int) -> None:
    """Build every context once, so a node refuses to start on files it cannot use (raises
    TlsError naming the flag and the file) rather than failing at its first connection.
    The peer certificate must also be one its peers accept: signed by `--peer-ca` and
    naming `node_id`, which a handshake of the node with itself, in memory, shows."""
    if settings.peer is not None:
        contexts = peer_tls(settings.peer)
        try:
            certificate = _handshake_in_memory(contexts.server, contexts.client)
        except ssl.SSLError as error:
            reason = error.reason or str(error)
            raise TlsError(
                f"--peer-cert {settings.peer.cert} is refused by its own --peer-ca "
                f"{settings.peer.ca}: {reason} (not signed by that CA?)"
            ) from None
        named = node_ids_named(certificate)
        if node_id not in named:
            names = ", ".join(node_dns_name(other) for other in sorted(named)) or "no node"
            raise TlsError(
                f"--peer-cert {settings.peer.cert} names {names}, not this node "
                f"({node_dns_name(node_id)}): peers would refuse it"
            )
    if settings.client_port is not None:
        client_port_context(settings.client_port)
        join_context(settings)


def report_handshake_failures(
    context: ssl.SSLContext, on_failure: Callable[[ssl.SSLError], None]
) -> None:
    """Have `on_failure` called for every TLS handshake through `context` that fails.

    A server's failed handshakes reach no callback of the application (asyncio's and
    uvloop's TLS layers drop them, logging at debug level in debug mode only), yet they are
    what an operator needs to see: a node without certificates, or with another CA's. Both
    layers run the handshake through `context.wrap_bio()`, which makes the context's
    `sslobject_class`, so a subclass there sees each failure first."""

    class ReportingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise  # not a failure: the handshake waits for more bytes
            except ssl.SSLError as error:
                # A failing report must not change how the handshake fails.
                with contextlib.suppress(Exception):
                    on_failure(error)
                raise

    context.sslobject_class = ReportingSSLObject


def _handshake_in_memory(server: ssl.SSLContext, client: ssl.SSLContext) -> dict[str, Any]:
    """Run a TLS handshake between `client` and `server` through memory buffers; the
    server's certificate as the client verified it (`getpeercert()`). Raises SSLError."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    accepting = server.wrap_bio(to_server, to_client, server_side=True)
    dialing = client.wrap_bio(to_client, to_server, server_hostname=None)
    done = {"accepting": False, "dialing": False}
    # A handshake takes a few round trips; each pass moves every waiting flight across.
    for _ in range(8):
        for name, side in (("dialing", dialing), ("accepting", accepting)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            break
    if not all(done.values()):
        raise ssl.SSLError("the handshake did not finish")
    certificate = dialing.getpeercert()
    return dict(certificate) if certificate else {}
