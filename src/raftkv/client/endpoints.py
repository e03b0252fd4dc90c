"""Where the clients' nodes are and whether they speak HTTPS: one decision for the client.

A cluster serves HTTPS on every client port or on none (SPEC §6, "TLS"), so a client uses
one scheme for every node, leaders it learns of from hints included: a `leader_url` is
read for its address only, and a redirect never drops from https to http.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from raftkv.addresses import AddressError, parse_host_port
from raftkv.tls import client_context

# A node as the clients accept it: (host, port), "host:port", or an http(s):// URL.
NodeAddress = tuple[str, int] | str


def split_url(text: str) -> tuple[str | None, tuple[str, int]]:
    """`http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT`: (scheme or None, address).
    Raises AddressError for anything else (a path, a query, credentials)."""
    text = text.strip()
    if "://" not in text:
        return None, parse_host_port(text)
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or parts.path not in ("", "/")
        or parts.query
        or "@" in parts.netloc
    ):
        raise AddressError(f"expected http(s)://HOST:PORT, got {text!r}")
    return parts.scheme, parse_host_port(parts.netloc)


def resolve(
    nodes: Mapping[int, NodeAddress],
    *,
    ssl_context: ssl.SSLContext | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> tuple[dict[int, tuple[str, int]], ssl.SSLContext | None]:
    """The node addresses and the context to reach them with (None: plain HTTP).

    HTTPS when a node is given as an `https://` URL or any TLS setting is given: the
    context passed in, else one trusting `ca_file` (or the system's CAs) and presenting
    `cert_file`/`key_file`. Raises ValueError for a mix of http and https, or for TLS
    settings with `http://` URLs."""
    addresses: dict[int, tuple[str, int]] = {}
    schemes: set[str] = set()
    for node_id, node in nodes.items():
        if isinstance(node, str):
            try:
                scheme, address = split_url(node)
            except AddressError as error:
                raise ValueError(f"node {node_id}: {error}") from None
            if scheme is not None:
                schemes.add(scheme)
            addresses[node_id] = address
        else:
            addresses[node_id] = (str(node[0]), int(node[1]))
    files_given = any(path is not None for path in (ca_file, cert_file, key_file))
    if ssl_context is not None and files_given:
        raise ValueError("give either ssl_context or ca_file/cert_file/key_file, not both")
    if len(schemes) > 1:
        raise ValueError("the nodes mix http:// and https:// URLs; a cluster serves one")
    if "http" in schemes and (ssl_context is not None or files_given):
        raise ValueError("TLS settings given, but the nodes are http:// URLs")
    if ssl_context is not None:
        return addresses, ssl_context
    if files_given or "https" in schemes:
        return addresses, client_context(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
    return addresses, None
