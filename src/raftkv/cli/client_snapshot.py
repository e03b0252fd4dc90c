"""`raft-client snapshot save FILE` and `raft-client snapshot status FILE`: backups
(docs/operations.md, "Backup and restore"; the format: storage/backup_file.py).

Failures are client errors, so `raft-client` reports them as its other errors do: one JSON
line on stderr and exit 1 (`bad_backup` for a file that is not a whole, intact backup;
`write_failed` when FILE cannot be written), or the usual codes when no leader answers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import msgspec

from raftkv.client import RaftClient, RequestError
from raftkv.storage.backup_file import Backup, BadBackup, read_backup_file


class BadBackupFile(RequestError):
    """The file is not a whole, intact raftkv backup (or cannot be read)."""

    code = "bad_backup"


class WriteFailed(RequestError):
    """The backup could not be written to FILE (nothing is left at FILE)."""

    code = "write_failed"


def add_snapshot_command(
    snapshot: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
    add_common_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The actions of `raft-client snapshot`, each taking the common options too."""
    actions = snapshot.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    actions.required = True
    save = actions.add_parser(
        "save", help="save a consistent backup from the leader to FILE (admin)"
    )
    status = actions.add_parser("status", help="check FILE and print what it holds")
    for action in (save, status):
        add_common_options(action)
        action.add_argument("file", metavar="FILE")


def describe_backup(path: str, backup: Backup) -> dict[str, Any]:
    """What `status --json` prints (and `save --json`)."""
    header = backup.header
    return {
        "file": path,
        "index": header.index,
        "term": header.term,
        "voters": header.voters,
        "learners": header.learners,
        "cluster_id": header.cluster_id,
        "state_machine": header.state_machine,
        "created_at": header.created_at,
        "size": backup.size,
        "payload_bytes": header.payload_bytes,
        "payload_sha256": header.payload_sha256,
        "checksum_ok": True,
    }


def _ids(ids: list[int]) -> str:
    return ",".join(str(member) for member in ids) or "-"


def snapshot_command(client: RaftClient, args: argparse.Namespace, as_json: bool) -> int:
    if args.action == "save":
        try:
            backup = client.save_snapshot(args.file)
        except OSError as error:
            message = f"cannot write {args.file}: {error}"
            raise WriteFailed(message, {"message": message}) from None
        if as_json:
            print(msgspec.json.encode(describe_backup(args.file, backup)).decode())
        else:
            header = backup.header
            print(f"OK index={header.index} term={header.term} size={backup.size} file={args.file}")
        return 0
    try:
        backup = read_backup_file(args.file)
    except (BadBackup, OSError) as error:
        message = f"{args.file}: {error.strerror if isinstance(error, OSError) else error}"
        raise BadBackupFile(message, {"message": message, "file": args.file}) from None
    described = describe_backup(args.file, backup)
    if as_json:
        print(msgspec.json.encode(described).decode())
        return 0
    print(
        f"file: {args.file}\n"
        f"index: {described['index']}\n"
        f"term: {described['term']}\n"
        f"voters: {_ids(backup.header.voters)}\n"
        f"learners: {_ids(backup.header.learners)}\n"
        f"cluster id: {described['cluster_id']}\n"
        f"state machine: {described['state_machine']}\n"
        f"created: {described['created_at'] or '-'}\n"
        f"size: {described['size']} bytes (state {described['payload_bytes']} bytes)\n"
        f"checksum: OK (sha256 {described['payload_sha256']})"
    )
    return 0
