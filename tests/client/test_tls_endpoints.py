"""How the clients decide between HTTP and HTTPS (`raftkv.client.endpoints`), and the
TLS options of `raft-client`: one scheme for the whole cluster, https:// URLs or any TLS
setting mean HTTPS, and settings that do not fit are usage errors."""

from __future__ import annotations

import json
import ssl

import pytest

from raftkv.cli.client import EXIT_ERROR, _make_client, build_parser
from raftkv.cli.client import main as client_main
from raftkv.client import RaftClient
from raftkv.client.endpoints import resolve
from raftkv.client.errors import NotLeader
from raftkv.client.routing import ClusterView
from tests.certificates import CertificateSet


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return CertificateSet(tmp_path_factory.mktemp("certs"), [1])


def test_plain_addresses_stay_http() -> None:
    addresses, context = resolve({1: ("127.0.0.1", 8001), 2: "127.0.0.1:8002"})
    assert addresses == {1: ("127.0.0.1", 8001), 2: ("127.0.0.1", 8002)} and context is None
    _, context = resolve({1: "http://127.0.0.1:8001"})
    assert context is None


def test_https_urls_mean_https_with_the_system_cas() -> None:
    addresses, context = resolve({1: "https://h1:8001", 2: ("h2", 8002)})
    assert addresses == {1: ("h1", 8001), 2: ("h2", 8002)}
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_a_ca_file_with_bare_addresses_means_https(certificates: CertificateSet) -> None:
    _, context = resolve(
        {1: ("127.0.0.1", 8001)},
        ca_file=certificates.ca,
        cert_file=certificates.client_cert,
        key_file=certificates.client_key,
    )
    assert context is not None
    given = ssl.create_default_context()
    assert resolve({1: ("h", 1)}, ssl_context=given)[1] is given


@pytest.mark.parametrize(
    ("nodes", "options", "message"),
    [
        ({1: "http://h:1", 2: "https://h:2"}, {}, "mix"),
        ({1: "http://h:1"}, {"ssl_context": ssl.create_default_context()}, "http:// URLs"),
        ({1: "ftp://h:1"}, {}, "expected http"),
        ({1: "https://h:1/path"}, {}, "expected http"),
        ({1: "h:1"}, {"key_file": "k.pem"}, "needs its certificate"),
    ],
)
def test_settings_that_do_not_fit_are_refused(
    nodes: dict[int, str], options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve(nodes, **options)  # type: ignore[arg-type]


def test_a_leader_hint_is_followed_on_the_clients_scheme() -> None:
    """A hint's URL gives the leader's address; the scheme stays the client's."""
    view = ClusterView({1: ("h1", 1)})
    hint = NotLeader(2, {"leader_id": 2, "leader_url": "https://h2:2"})
    assert view.follow_hint(hint, 1) == 2
    assert view.addresses[2] == ("h2", 2)


def _client(argv: list[str]) -> RaftClient:
    return _make_client(build_parser().parse_args(argv))


def test_raft_client_tls_flags_and_environment(
    certificates: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _client(["--cluster", "1=127.0.0.1:8001", "status"]) as client:
        assert client.ssl_context is None
    with _client(["--cluster", "1=https://127.0.0.1:8001,2", "status"]) as client:
        assert client.ssl_context is not None
        assert client.addresses[1] == ("127.0.0.1", 8001)
    flags = ["--cacert", certificates.ca, "--cert", certificates.client_cert]
    flags += ["--key", certificates.client_key]
    with _client(["--cluster", "1=127.0.0.1:8001", *flags, "get", "k"]) as client:
        assert client.ssl_context is not None
    monkeypatch.setenv("RAFT_CACERT", certificates.ca)
    with _client(["--cluster", "1=127.0.0.1:8001", "status"]) as client:
        assert client.ssl_context is not None


def test_raft_client_reports_unusable_tls_settings_as_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = client_main(["--cluster", "1=h:1", "--cacert", "/nonexistent/ca.pem", "status"])
    assert code == EXIT_ERROR
    error = json.loads(capsys.readouterr().err)
    assert error["error"] == "bad_usage" and "--cacert /nonexistent/ca.pem" in error["message"]
