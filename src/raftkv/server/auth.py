"""Bearer-token authentication of the client port (`raft-node --auth-tokens FILE`, SPEC §6).

The token file is TOML, one `[[token]]` table per token:

    [[token]]
    name = "ops"                # who it is: named in logs, never the token itself
    role = "admin"              # read, write or admin (admin can do all that write can...)
    sha256 = "5e88...a1"        # hex SHA-256 of the token (or `token = "..."`, in clear)

Tokens are kept only as SHA-256 digests: a presented token is hashed and compared with
`hmac.compare_digest` against every configured digest, with no early exit, so neither the
comparison nor a lookup reveals how much of a guess was right.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("raftkv.node")

# A token in clear must be at least this long: shorter ones can be guessed online.
TOKEN_CHARACTERS_MIN = 16
SHA256_HEX_CHARACTERS = 64
ENTRY_KEYS = frozenset({"name", "role", "token", "sha256"})

# What `--auth-public` may open to requests without a token.
PUBLIC_HEALTH = "health"  # GET /livez, /readyz
PUBLIC_METRICS = "metrics"  # GET /metrics
PUBLIC_GROUPS = (PUBLIC_HEALTH, PUBLIC_METRICS)
PUBLIC_DEFAULT = PUBLIC_HEALTH
PUBLIC_NONE = "none"

# Why a request was refused: the label of `raft_http_auth_failures_total`.
MISSING, MALFORMED, INVALID, FORBIDDEN = "missing", "malformed", "invalid", "forbidden"
FAILURE_REASONS = (MISSING, MALFORMED, INVALID, FORBIDDEN)


class Role(enum.IntEnum):
    """What a token may do; each role includes those below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ROLES_BY_NAME = {role.label: role for role in Role}


@dataclass(frozen=True)
class Access:
    """What a route asks of a request: at least `role`, unless the route belongs to a
    `public_group` the node opened with `--auth-public`."""

    role: Role
    public_group: str | None = None


class TokenFileError(Exception):
    """A token file the node refuses to start with."""


@dataclass(frozen=True)
class Identity:
    """Whom a valid token belongs to."""

    name: str
    role: Role


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: 401 (`unauthenticated`) or 403 (`forbidden`)."""

    reason: str  # one of FAILURE_REASONS
    message: str
    role_needed: Role | None = None  # for FORBIDDEN: the role the route asks

    @property
    def status(self) -> int:
        return 403 if self.reason == FORBIDDEN else 401


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    identity: Identity


class TokenTable:
    """The configured tokens, as digests."""

    def __init__(self, entries: Iterable[tuple[Identity, bytes]]) -> None:
        self._entries = [_Entry(token_digest, identity) for identity, token_digest in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, token: str) -> Identity | None:
        """The identity `token` belongs to, if any. Compares against every entry, in
        constant time each, whatever matched: the time taken says nothing of the token."""
        presented = digest(token)
        found: Identity | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry.identity
        return found


def _entry(raw: object, position: int, path: str) -> tuple[Identity, bytes]:
    where = f"token file {path}: [[token]] #{position}"
    if not isinstance(raw, dict):
        raise TokenFileError(f"{where}: expected a table")
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise TokenFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TokenFileError(f"{where}: 'name' must be a non-empty string")
    where = f"token file {path}: token {name!r}"
    role_name = raw.get("role")
    role = ROLES_BY_NAME.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise TokenFileError(f"{where}: 'role' must be one of {', '.join(ROLES_BY_NAME)}")
    clear, hashed = raw.get("token"), raw.get("sha256")
    if (clear is None) == (hashed is None):
        raise TokenFileError(f"{where}: give exactly one of 'token' and 'sha256'")
    if clear is not None:
        # Never quote the token: the message goes to the log.
        if not isinstance(clear, str) or len(clear) < TOKEN_CHARACTERS_MIN:
            raise TokenFileError(
                f"{where}: 'token' must be a string of at least {TOKEN_CHARACTERS_MIN} characters"
            )
        if not all("!" <= character <= "~" for character in clear):
            raise TokenFileError(
                f"{where}: 'token' must be printable ASCII without spaces (as HTTP carries it)"
            )
        return Identity(name, role), digest(clear)
    if not (
        isinstance(hashed, str)
        and len(hashed) == SHA256_HEX_CHARACTERS
        and all(character in "0123456789abcdefABCDEF" for character in hashed)
    ):
        raise TokenFileError(f"{where}: 'sha256' must be {SHA256_HEX_CHARACTERS} hex digits")
    return Identity(name, role), bytes.fromhex(hashed)


def parse_tokens(table: Mapping[str, Any], path: str) -> TokenTable:
    unknown = sorted(set(table) - {"token"})
    if unknown:
        raise TokenFileError(
            f"token file {path}: unknown key(s) {', '.join(unknown)}; expected [[token]] tables"
        )
    raw_entries = table.get("token", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise TokenFileError(f"token file {path}: no [[token]] tables: every request would fail")
    entries = [_entry(raw, position, path) for position, raw in enumerate(raw_entries, 1)]
    names: set[str] = set()
    digests: dict[bytes, str] = {}
    for identity, token_digest in entries:
        if identity.name in names:
            raise TokenFileError(f"token file {path}: two tokens named {identity.name!r}")
        names.add(identity.name)
        if token_digest in digests:
            raise TokenFileError(
                f"token file {path}: tokens {digests[token_digest]!r} and {identity.name!r}"
                " are the same token"
            )
        digests[token_digest] = identity.name
    return TokenTable(entries)


def load_tokens(path: str) -> TokenTable:
    """The token file at `path`, checked; TokenFileError says what is wrong with it. Logs a
    warning when others than its owner may read it."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            table = tomllib.load(file)
    except OSError as error:
        raise TokenFileError(f"token file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise TokenFileError(f"token file {path}: not valid TOML: {error}") from None
    tokens = parse_tokens(table, path)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "token file %s is readable by group or others (mode %o): chmod 600 it, or give"
            " tokens as sha256 digests",
            path,
            stat.S_IMODE(mode),
        )
    return tokens


def parse_public_groups(text: str) -> frozenset[str]:
    """`--auth-public`: a comma-separated list of PUBLIC_GROUPS, or `none`."""
    words = {word.strip() for word in text.split(",") if word.strip()}
    if words == {PUBLIC_NONE}:
        return frozenset()
    unknown = sorted(words - set(PUBLIC_GROUPS))
    if unknown or not words:
        raise ValueError(
            f"expected {PUBLIC_NONE} or a comma-separated list of {', '.join(PUBLIC_GROUPS)}"
        )
    return frozenset(words)


BEARER = "bearer"


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None when it is not one."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER or not token or " " in token or "\t" in token:
        return None
    return token


@dataclass
class AccessPolicy:
    """Who may do what on the client port. Without tokens (`tokens` None) every request
    is served, as without `--auth-tokens`."""

    tokens: TokenTable | None = None
    public_groups: frozenset[str] = frozenset({PUBLIC_DEFAULT})
    # Refusals by reason (`raft_http_auth_failures_total`).
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))

    @property
    def enabled(self) -> bool:
        return self.tokens is not None

    def check(self, access: Access | None, authorization: str) -> Refusal | None:
        """None when a request with this `Authorization` header (empty: none) may use a
        route asking `access`; else why not. A route that declares no access is refused
        to everyone: a route must say who may use it."""
        if self.tokens is None:
            return None
        if access is None:
            return self._refused(FORBIDDEN, "this route declares no role; nobody may use it")
        if access.public_group in self.public_groups:
            return None
        if not authorization:
            return self._refused(MISSING, "this route needs 'Authorization: Bearer TOKEN'")
        token = bearer_token(authorization)
        if token is None:
            return self._refused(MALFORMED, "expected 'Authorization: Bearer TOKEN'")
        identity = self.tokens.identify(token)
        if identity is None:
            return self._refused(INVALID, "the bearer token is not valid")
        if identity.role < access.role:
            return self._refused(
                FORBIDDEN,
                f"this route needs the {access.role.label} role; token {identity.name!r}"
                f" has {identity.role.label}",
                access.role,
            )
        return None

    def _refused(self, reason: str, message: str, role_needed: Role | None = None) -> Refusal:
        self.failures[reason] += 1
        return Refusal(reason, message, role_needed)
