"""The token file of `raft-node --auth-tokens` (SPEC §6): what it accepts, what makes the node
refuse to start (exit 1, before anything else), and the warning for a file others may read."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv.server.auth import (
    Identity,
    Role,
    TokenFileError,
    bearer_token,
    load_tokens,
    parse_public_groups,
)

GOOD_TOKEN = "s3cret-token-0123456789"


def write(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_tokens_in_clear_and_as_digests(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"another-token-0123456789").hexdigest()
    path = write(
        tmp_path,
        f'[[token]]\nname = "ops"\nrole = "admin"\ntoken = "{GOOD_TOKEN}"\n'
        f'[[token]]\nname = "app"\nrole = "write"\nsha256 = "{digest.upper()}"\n',
    )
    table = load_tokens(path)
    assert len(table) == 2
    assert table.identify(GOOD_TOKEN) == Identity("ops", Role.ADMIN)
    assert table.identify("another-token-0123456789") == Identity("app", Role.WRITE)
    assert table.identify(digest) is None  # the digest is not itself a token


def entry(**fields: str) -> str:
    return "[[token]]\n" + "".join(f'{key} = "{value}"\n' for key, value in fields.items())


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("this is not = toml =", "not valid TOML"),
        ("", "no [[token]] tables"),
        ('tokens = "x"\n', "unknown key(s) tokens"),
        (entry(name="a", role="root", token=GOOD_TOKEN), "'role' must be one of"),
        (entry(name="a", token=GOOD_TOKEN), "'role' must be one of"),
        (entry(role="read", token=GOOD_TOKEN), "'name' must be"),
        (entry(name="a", role="read"), "exactly one of 'token' and 'sha256'"),
        (entry(name="a", role="read", token=""), "at least 16 characters"),
        (entry(name="a", role="read", token="short"), "at least 16 characters"),
        (entry(name="a", role="read", token="with space 0123456789"), "printable ASCII"),
        (entry(name="a", role="read", sha256="abc"), "64 hex digits"),
        (entry(name="a", role="read", token=GOOD_TOKEN, sha256="0" * 64), "exactly one"),
        (entry(name="a", role="read", token=GOOD_TOKEN, secret="x"), "unknown key(s) secret"),
        (
            entry(name="a", role="read", token=GOOD_TOKEN)
            + entry(name="b", role="admin", token=GOOD_TOKEN),
            "tokens 'a' and 'b' are the same token",
        ),
        (
            entry(name="a", role="read", token=GOOD_TOKEN)
            + entry(name="b", role="read", sha256=hashlib.sha256(GOOD_TOKEN.encode()).hexdigest()),
            "the same token",
        ),
        (
            entry(name="a", role="read", token=GOOD_TOKEN)
            + entry(name="a", role="read", token=GOOD_TOKEN + "x"),
            "two tokens named 'a'",
        ),
    ],
)
def test_a_bad_token_file_is_refused(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(TokenFileError, match="token file") as refused:
        load_tokens(write(tmp_path, text))
    assert complaint in str(refused.value)
    assert GOOD_TOKEN not in str(refused.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="No such file"):
        load_tokens(str(tmp_path / "absent.toml"))


def test_the_node_refuses_to_start_with_a_bad_token_file(tmp_path: Path) -> None:
    path = write(tmp_path, entry(name="a", role="read", token="short"))
    data_dir = tmp_path / "data"
    argv = ["--id", "1", "--single-node", "--data-dir", str(data_dir), "--auth-tokens", path]
    # A process of its own: the node configures the logging of the process it runs in.
    node = subprocess.run(
        [str(Path(sys.executable).parent / "raft-node"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if not key.startswith("RAFTKV_")},
    )
    assert node.returncode == 1
    assert "refusing to start: token file" in node.stderr
    assert "at least 16 characters" in node.stderr
    assert not data_dir.exists()  # refused before the data dir is touched


def test_a_file_others_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = entry(name="a", role="read", token=GOOD_TOKEN)
    with caplog.at_level(logging.WARNING):
        load_tokens(write(tmp_path, text, mode=0o600))
    assert "readable by group or others" not in caplog.text
    with caplog.at_level(logging.WARNING):
        load_tokens(write(tmp_path, text, mode=0o644))
    assert "readable by group or others (mode 644)" in caplog.text
    assert GOOD_TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("Bearer a b", None),
        ("Bearer a\tb", None),
        ("", None),
    ],
)
def test_bearer_header(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


def test_public_groups() -> None:
    assert parse_public_groups("health") == {"health"}
    assert parse_public_groups("metrics, health") == {"health", "metrics"}
    assert parse_public_groups("none") == frozenset()
    for bad in ("", "everything", "health,none"):
        with pytest.raises(ValueError, match="comma-separated"):
            parse_public_groups(bad)
