"""The peer addresses a node knows, kept in its data dir so that a restarted member needs
neither --peers nor --join (SPEC §1)."""

from __future__ import annotations

import contextlib
import json
import os

from raftkv.addresses import format_address, parse_host_port

PEERS_FILE_NAME = "peers.json"


def load_peer_addresses(data_dir: str) -> dict[int, tuple[str, int]]:
    path = os.path.join(data_dir, PEERS_FILE_NAME)
    try:
        with open(path, encoding="utf-8") as file:
            raw = json.load(file)
        return {int(node): parse_host_port(address) for node, address in raw.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{path} is damaged: {error}") from error


def save_peer_addresses(data_dir: str, addresses: dict[int, tuple[str, int]]) -> None:
    """Atomically: a crash leaves the old file or the new one, never half of one."""
    path = os.path.join(data_dir, PEERS_FILE_NAME)
    temporary = path + ".tmp"
    text = json.dumps({str(node): format_address(a) for node, a in sorted(addresses.items())})
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    with contextlib.suppress(OSError):
        directory = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
