"""`raft-node certs init DIR --nodes 1,2,3`: a CA and certificates for a TLS cluster.

Writes, into DIR:

- `ca.pem`, `ca-key.pem`: the certificate authority every node and client trusts;
- `node-N.pem`, `node-N-key.pem` for each node: its certificate for both roles, the peer
  links (`--peer-cert`, naming it `node-N.raftkv`, SPEC §6 "TLS") and the HTTPS client
  port (`--client-cert`, naming every `--hosts` entry);
- `client.pem`, `client-key.pem`: a client certificate for `raft-client --cert --key`.

Keys are written with mode 0600. Existing files are never overwritten: an operator's CA
key is not something to lose to a repeated command.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftkv.addresses import AddressError, parse_node_id
from raftkv.tls import node_dns_name

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_DAYS = 825  # the longest validity some TLS clients still accept for a leaf
CLIENT_COMMON_NAME = "raftkv-client"
EXIT_OK = 0
EXIT_ERROR = 1

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issuer:
    certificate: x509.Certificate
    key: PrivateKey


def _new_key() -> PrivateKey:
    # P-256: small, fast and accepted by every TLS stack raftkv meets.
    return ec.generate_private_key(ec.SECP256R1())


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    # An hour back, so a peer whose clock is slightly behind accepts a fresh certificate.
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)


def _subject_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """IP addresses become IP SANs, everything else DNS SANs."""
    general: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):  # in order, without repeats
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def make_ca(days: int) -> Issuer:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raftkv CA")])
    not_before, not_after = _validity(days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(certificate, key)


def make_leaf(
    issuer: Issuer, common_name: str, names: Sequence[str], days: int
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate for both TLS roles (a node dials and accepts; a client dials)."""
    key = _new_key()
    not_before, not_after = _validity(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_subject_names(names)), critical=False
        )
    return builder.sign(issuer.key, hashes.SHA256()), key


def _certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (a key is never readable by others, not even
    for a moment); refuses to replace an existing file."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # whatever the umask took away or added


@dataclass(frozen=True)
class Plan:
    directory: str
    node_ids: list[int]
    hosts: list[str]
    days: int

    def file_names(self) -> list[str]:
        names = ["ca.pem", "ca-key.pem", "client.pem", "client-key.pem"]
        for node_id in self.node_ids:
            names += [f"node-{node_id}.pem", f"node-{node_id}-key.pem"]
        return names


def write_certificates(plan: Plan) -> list[str]:
    """Write every file of `plan`; the paths written. Raises FileExistsError before
    writing anything if one of them exists."""
    os.makedirs(plan.directory, exist_ok=True)
    existing = [
        name for name in plan.file_names() if os.path.exists(os.path.join(plan.directory, name))
    ]
    if existing:
        raise FileExistsError(f"{plan.directory} already holds {', '.join(existing)}")
    written: list[str] = []

    def write(name: str, data: bytes, mode: int) -> None:
        path = os.path.join(plan.directory, name)
        _write_new(path, data, mode)
        written.append(path)

    ca = make_ca(plan.days)
    write("ca-key.pem", _key_pem(ca.key), 0o600)
    write("ca.pem", _certificate_pem(ca.certificate), 0o644)
    for node_id in plan.node_ids:
        names = [node_dns_name(node_id), *plan.hosts]
        certificate, key = make_leaf(ca, node_dns_name(node_id), names, plan.days)
        write(f"node-{node_id}-key.pem", _key_pem(key), 0o600)
        write(f"node-{node_id}.pem", _certificate_pem(certificate), 0o644)
    certificate, key = make_leaf(ca, CLIENT_COMMON_NAME, [], plan.days)
    write("client-key.pem", _key_pem(key), 0o600)
    write("client.pem", _certificate_pem(certificate), 0o644)
    return written


def _node_ids(text: str) -> list[int]:
    try:
        ids = [parse_node_id(part) for part in text.split(",") if part.strip()]
    except AddressError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not ids:
        raise argparse.ArgumentTypeError("name at least one node id")
    return list(dict.fromkeys(ids))


def _hosts(text: str) -> list[str]:
    hosts = [part.strip() for part in text.split(",") if part.strip()]
    if not hosts:
        raise argparse.ArgumentTypeError("name at least one host")
    return hosts


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if days <= 0:
        raise argparse.ArgumentTypeError("--days must be positive")
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raft-node certs", description="Make certificates for a TLS cluster."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    init = commands.add_parser(
        "init",
        help="write a CA, one certificate per node and a client certificate into DIR",
        description="Write a CA (ca.pem, ca-key.pem), node-N.pem and node-N-key.pem for each "
        "node (peer and HTTPS certificate: names node-N.raftkv and every --hosts entry), and "
        "client.pem, client-key.pem for raft-client. Keys are mode 0600; existing files are "
        "never overwritten.",
    )
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--nodes", type=_node_ids, required=True, help="node ids: 1,2,3")
    init.add_argument(
        "--hosts",
        type=_hosts,
        default=list(DEFAULT_HOSTS),
        help="addresses and names clients reach the nodes by, in every node certificate "
        f"(IP addresses as IP names; default {','.join(DEFAULT_HOSTS)})",
    )
    init.add_argument(
        "--days", type=_days, default=DEFAULT_DAYS, help=f"validity (default {DEFAULT_DAYS})"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """`raft-node certs ...` (argv after `certs`)."""
    arguments = build_parser().parse_args(list(argv))
    plan = Plan(arguments.directory, arguments.nodes, arguments.hosts, arguments.days)
    try:
        written = write_certificates(plan)
    except OSError as error:
        print(f"raft-node certs: {error}", file=sys.stderr)
        return EXIT_ERROR
    for path in written:
        print(path)
    return EXIT_OK
