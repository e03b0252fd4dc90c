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
# Removed peers this node still has to tell so (`PeerBook`): {"N": {"address": "host:port",
# "removed_at": R}}.
REMOVAL_NOTICES_FILE_NAME = "removal_notices.json"


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


def load_removal_notices(
    data_dir: str, filesystem: FileSystem
) -> dict[int, tuple[tuple[str, int], int]]:
    """The removed peers still to be told so: id -> (address, index of the removal)."""
    path = os.path.join(data_dir, REMOVAL_NOTICES_FILE_NAME)
    try:
        content = filesystem.read_file(path)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise storage_error(error, "reading", path) from error
    try:
        raw = json.loads(content.decode("utf-8"))
        notices = {}
        for node, notice in raw.items():
            removed_at = notice["removed_at"]
            if type(removed_at) is not int or removed_at <= 0:  # not a bool either
                raise ValueError(f"node {node}: removed_at {removed_at!r} is no index")
            notices[int(node)] = (parse_host_port(notice["address"]), removed_at)
        return notices
    except (ValueError, AttributeError, KeyError, TypeError, RecursionError) as error:
        raise ValueError(f"{path} is damaged: {error}") from error


def save_removal_notices(
    data_dir: str, notices: dict[int, tuple[tuple[str, int], int]], filesystem: FileSystem
) -> None:
    path = os.path.join(data_dir, REMOVAL_NOTICES_FILE_NAME)
    text = json.dumps(
        {
            str(node): {"address": format_address(address), "removed_at": removed_at}
            for node, (address, removed_at) in sorted(notices.items())
        }
    )
    atomic_write_file(path, text.encode("utf-8"), filesystem)
