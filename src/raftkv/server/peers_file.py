"""The peer addresses a node knows, kept in its data dir so that a restarted member needs
neither --peers nor --join (SPEC §1). Read and written through the data dir's file system,
so a simulated disk holds it too."""

from __future__ import annotations

import json
import os

from raftkv.addresses import format_address, parse_host_port
from raftkv.storage.file_io import atomic_write_file, storage_error
from raftkv.storage.filesystem import FileSystem

PEERS_FILE_NAME = "peers.json"


def load_peer_addresses(data_dir: str, filesystem: FileSystem) -> dict[int, tuple[str, int]]:
    path = os.path.join(data_dir, PEERS_FILE_NAME)
    try:
        content = filesystem.read_file(path)
    except FileNotFoundError:
        return {}
    except OSError as error:  # EIO: the node stops with a storage error, not a traceback
        raise storage_error(error, "reading", path) from error
    try:
        raw = json.loads(content.decode("utf-8"))
        return {int(node): parse_host_port(address) for node, address in raw.items()}
    except (ValueError, AttributeError, RecursionError) as error:  # Recursion: deep nesting
        raise ValueError(f"{path} is damaged: {error}") from error


def save_peer_addresses(
    data_dir: str, addresses: dict[int, tuple[str, int]], filesystem: FileSystem
) -> None:
    """Atomically: a crash leaves the old file or the new one, never half of one."""
    path = os.path.join(data_dir, PEERS_FILE_NAME)
    text = json.dumps({str(node): format_address(a) for node, a in sorted(addresses.items())})
    atomic_write_file(path, text.encode("utf-8"), filesystem)
