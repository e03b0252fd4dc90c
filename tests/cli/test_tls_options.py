"""`raft-node certs init` and the TLS flags of `raft-node` (SPEC §6, "TLS"): the files it
writes, their names and modes; the flags from the command line, a config file and
RAFTKV_* variables; and the refusals to start on certificate files that cannot be used."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from raftkv.cli.node import EXIT_ERROR, EXIT_OK, main
from raftkv.tls import ClientPortTlsFiles, PeerTlsFiles
from tests.certificates import CertificateSet


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        names.get_values_for_type(x509.DNSName),
        [str(address) for address in names.get_values_for_type(x509.IPAddress)],
    )


def test_certs_init_writes_a_chain_that_verifies(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    argv = ["certs", "init", str(directory), "--nodes", "1,2,3"]
    argv += ["--hosts", "10.0.0.7,db.example.com", "--days", "30"]
    assert main(argv) == EXIT_OK
    expected = {"ca.pem", "ca-key.pem", "client.pem", "client-key.pem"}
    expected |= {f"node-{n}{suffix}.pem" for n in (1, 2, 3) for suffix in ("", "-key")}
    assert {path.name for path in directory.iterdir()} == expected
    ca = _certificate(directory / "ca.pem")
    for name in ("node-1.pem", "node-2.pem", "node-3.pem", "client.pem"):
        _certificate(directory / name).verify_directly_issued_by(ca)
    dns, ips = _names(_certificate(directory / "node-2.pem"))
    assert dns == ["node-2.raftkv", "db.example.com"] and ips == ["10.0.0.7"]
    for key in directory.glob("*-key.pem"):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, key.name


def test_certs_init_names_localhost_by_default_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", str(tmp_path), "--nodes", "4"]) == EXIT_OK
    dns, ips = _names(_certificate(tmp_path / "node-4.pem"))
    assert dns == ["node-4.raftkv", "localhost"] and ips == ["127.0.0.1"]
    before = (tmp_path / "ca-key.pem").read_bytes()
    capsys.readouterr()
    assert main(["certs", "init", str(tmp_path), "--nodes", "4"]) == EXIT_ERROR
    assert "already holds" in capsys.readouterr().err
    assert (tmp_path / "ca-key.pem").read_bytes() == before


def test_certs_init_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_request:
        main(["certs", "init", "--help"])
    assert exit_request.value.code == 0
    assert "--nodes" in capsys.readouterr().out


def test_the_node_help_names_its_tools(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_request:
        main(["--help"])
    assert exit_request.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "'raft-node certs init DIR" in out and "'raft-node restore FILE" in out


# --- raft-node's TLS flags ----------------------------------------------------------------
TLS_SETTINGS = ("peer_cert", "peer_key", "peer_ca", "client_cert", "client_key", "client_ca")


def test_every_tls_flag_comes_from_a_file_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('id = 1\npeer-cert = "p.pem"\npeer_key = "p-key.pem"\nclient_ca = "c.pem"\n')
    environ = {
        "RAFTKV_PEER_CA": "ca.pem",
        "RAFTKV_CLIENT_CERT": "n.pem",
        "RAFTKV_CLIENT_KEY": "n-key.pem",
    }
    assert main(["--config", str(config), "--print-config"], environ) == EXIT_OK
    output = capsys.readouterr().out
    printed = tomllib.loads(output)
    assert {name: printed[name] for name in TLS_SETTINGS} == {
        "peer_cert": "p.pem",
        "peer_key": "p-key.pem",
        "peer_ca": "ca.pem",
        "client_cert": "n.pem",
        "client_key": "n-key.pem",
        "client_ca": "c.pem",
    }
    assert 'peer_ca = "ca.pem"  # env' in output
    assert 'client_ca = "c.pem"  # file' in output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--peer-cert", "a.pem"], "--peer-cert, --peer-key and --peer-ca go together"),
        (["--peer-cert", "a", "--peer-key", "b"], "go together"),
        (["--client-cert", "a.pem"], "--client-cert and --client-key go together"),
        (["--client-ca", "ca.pem"], "--client-ca needs --client-cert and --client-key"),
    ],
)
def test_an_incomplete_set_of_tls_flags_is_a_usage_error(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_request:
        main(["--id", "1", *flags], {})
    assert exit_request.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return CertificateSet(tmp_path_factory.mktemp("certs"), [1, 2])


def _refusal(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    arguments = ["--id", "1", "--data-dir", str(tmp_path / "data"), "--single-node", *argv]
    assert main(arguments, {}) == EXIT_ERROR
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if "refusing to start" in line]
    assert len(lines) == 1, error
    assert not (tmp_path / "data").exists(), "refused before touching the data dir"
    return lines[0]


def _peer_flags(files: PeerTlsFiles) -> list[str]:
    return ["--peer-cert", files.cert, "--peer-key", files.key, "--peer-ca", files.ca]


def _client_flags(files: ClientPortTlsFiles) -> list[str]:
    flags = ["--client-cert", files.cert, "--client-key", files.key]
    return flags + (["--client-ca", files.ca] if files.ca else [])


def test_a_missing_certificate_file_refuses_start(
    certificates: CertificateSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = certificates.peer_files(1)
    absent = str(tmp_path / "absent.pem")
    line = _refusal(_peer_flags(PeerTlsFiles(absent, files.key, files.ca)), tmp_path, capsys)
    assert "--peer-cert" in line and "absent.pem" in line and "No such file" in line


def test_a_key_not_matching_its_certificate_refuses_start(
    certificates: CertificateSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = ClientPortTlsFiles(certificates.node_cert(1), certificates.node_key(2))
    line = _refusal(_client_flags(files), tmp_path, capsys)
    assert "--client-key" in line and "is not the key of --client-cert" in line


def test_an_unreadable_ca_refuses_start(
    certificates: CertificateSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("not PEM\n")
    files = ClientPortTlsFiles(
        certificates.node_cert(1), certificates.node_key(1), str(not_a_certificate)
    )
    line = _refusal(_client_flags(files), tmp_path, capsys)
    assert "--client-ca" in line and "not a PEM CA certificate" in line


def test_a_peer_certificate_naming_another_node_refuses_start(
    certificates: CertificateSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refusal(_peer_flags(certificates.peer_files(1, certificate_of=2)), tmp_path, capsys)
    assert "names node-2.raftkv, not this node (node-1.raftkv)" in line


def test_a_peer_certificate_of_another_ca_refuses_start(
    certificates: CertificateSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = CertificateSet(tmp_path / "other", [1])
    files = certificates.peer_files(1)
    line = _refusal(_peer_flags(PeerTlsFiles(files.cert, files.key, other.ca)), tmp_path, capsys)
    assert "is refused by its own --peer-ca" in line
