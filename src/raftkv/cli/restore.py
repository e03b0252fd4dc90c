"""`raft-node restore FILE --id N [--peers LIST] [--data-dir D] [--cluster-id X]`: seed a new
cluster's data dir from a backup (server/restore.py; docs/operations.md, "Backup and
restore"). `raft-node` hands `restore ...` here before its own parser.

Exit 0 when the data dir is seeded (one `OK ...` line on stdout); 1 when refused: a damaged
or foreign file, a data dir that already holds state, a bad node id or address, or a backup
of another state machine (one line on stderr); 2 for a malformed command line (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys

from raftkv.addresses import (
    AddressError,
    default_peer_address,
    parse_address_list,
    parse_host_port,
    parse_node_id,
)
from raftkv.kv import KVStore
from raftkv.server.restore import RestoreRefused, restore_data_dir
from raftkv.storage.backup_file import BadBackup, read_backup_file

EXIT_OK = 0
EXIT_REFUSED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raft-node restore",
        description="Seed a NEW cluster's data dir from a backup (raft-client snapshot save). "
        "Run it for every node of the new cluster, then start each with the same --peers.",
    )
    parser.add_argument("file", metavar="FILE", help="the backup file")
    # Text, checked here: a bad id is a refusal (exit 1) with a message, not argparse's 2.
    parser.add_argument("--id", required=True, help="this node's id in the new cluster")
    parser.add_argument(
        "--peers",
        default="",
        help="the new cluster's other voters: '2,3' or '2=HOST:PORT,...' (as raft-node's)",
    )
    parser.add_argument("--data-dir", help="the new, empty data dir (default ./data/node-N)")
    parser.add_argument(
        "--listen",
        help="this node's peer address, as it will run (default 127.0.0.1:9000+N)",
    )
    parser.add_argument(
        "--advertise-peer", help="the peer address others reach it at (default: --listen)"
    )
    parser.add_argument(
        "--cluster-id", help="record this cluster id (default: none; taken at first start)"
    )
    return parser


def _peer_addresses(arguments: argparse.Namespace, node_id: int) -> dict[int, tuple[str, int]]:
    peers = parse_address_list(arguments.peers, client_ports=False) if arguments.peers else {}
    own_text = arguments.advertise_peer or arguments.listen
    own = parse_host_port(own_text) if own_text else default_peer_address(node_id)
    return {**peers, node_id: own}


def main(argv: list[str]) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        node_id = parse_node_id(arguments.id)
        addresses = _peer_addresses(arguments, node_id)
        backup = read_backup_file(arguments.file)
        data_dir = arguments.data_dir or os.path.join("data", f"node-{node_id}")
        meta = restore_data_dir(
            backup,
            data_dir,
            node_id,
            addresses,
            state_machine=KVStore(),
            cluster_id=arguments.cluster_id,
        )
    except AddressError as error:
        return _refused(f"--id or --peers: {error}")
    except BadBackup as error:
        return _refused(f"{arguments.file}: {error}")
    except OSError as error:
        return _refused(f"{error.filename or arguments.file}: {error.strerror or error}")
    except RestoreRefused as error:
        return _refused(str(error))
    voters = ",".join(str(member) for member in sorted(meta.membership.voters))
    print(
        f"OK restored index={meta.index} term={meta.term} node={node_id} voters={voters} "
        f"data_dir={data_dir}"
    )
    return EXIT_OK


def _refused(message: str) -> int:
    print(f"raft-node restore: refused: {message}", file=sys.stderr)
    return EXIT_REFUSED
