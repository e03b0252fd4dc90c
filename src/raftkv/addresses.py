"""Node addresses as the command line gives them (SPEC §1).

`--peers 2,3` names peers by id with the default ports (clients on 8000+N, peers on 9000+N);
`--peers 2=10.0.0.2:9002,3=10.0.0.3:9003` gives explicit addresses. `--cluster` for the
client takes the same forms, naming client addresses.
"""

from __future__ import annotations

CLIENT_PORT_BASE = 8000
PEER_PORT_BASE = 9000
DEFAULT_HOST = "127.0.0.1"
# Listening on these accepts on every interface: no address a peer could dial back.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


class AddressError(ValueError):
    """A malformed address list; the message says which part."""


def default_client_address(node_id: int) -> tuple[str, int]:
    return DEFAULT_HOST, CLIENT_PORT_BASE + node_id


def default_peer_address(node_id: int) -> tuple[str, int]:
    return DEFAULT_HOST, PEER_PORT_BASE + node_id


def parse_host_port(text: str) -> tuple[str, int]:
    host, separator, port_text = text.strip().rpartition(":")
    if not separator or not host or not _is_decimal(port_text):
        raise AddressError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise AddressError(f"port out of range in {text!r}")
    return host.strip("[]"), port


def _is_decimal(text: str) -> bool:
    """ASCII digits, at most 19: str.isdigit() alone takes "²", which int() refuses (a
    ValueError that is no AddressError), "٣", which it takes, and digits past int()'s limit."""
    return text.isascii() and text.isdigit() and len(text) <= 19


def parse_node_id(text: str) -> int:
    text = text.strip()
    if not _is_decimal(text) or int(text) <= 0:
        raise AddressError(f"node ids are positive integers, got {text!r}")
    return int(text)


def parse_address_list(text: str, *, client_ports: bool) -> dict[int, tuple[str, int]]:
    """Parse `2,3` or `2=host:port,3=host:port` into {id: (host, port)}."""
    addresses: dict[int, tuple[str, int]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            id_text, address_text = item.split("=", 1)
            node_id = parse_node_id(id_text)
            address = parse_host_port(address_text)
        else:
            node_id = parse_node_id(item)
            address = (
                default_client_address(node_id) if client_ports else default_peer_address(node_id)
            )
        if node_id in addresses:
            raise AddressError(f"node {node_id} is named twice")
        addresses[node_id] = address
    if not addresses:
        raise AddressError("the list names no node")
    return addresses


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
