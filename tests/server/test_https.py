"""The client port over HTTPS (SPEC §6, "TLS"): it serves clients that trust the CA, and
with a client CA only those presenting a certificate it signed; a plain-HTTP client, or one
without a certificate, is refused cleanly and the server keeps serving."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from pathlib import Path

import pytest

from raftkv.server.http_api import ClientApi
from raftkv.server.http_server import HttpServer, Request, Response
from raftkv.tls import client_context, client_port_context
from tests.certificates import CertificateSet

DEADLINE = 10.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return CertificateSet(tmp_path_factory.mktemp("certs"), [1])


async def _echo(request: Request) -> Response:
    return Response.json({"path": request.path})


def _fetch(port: int, context: ssl.SSLContext | None, host: str = "127.0.0.1") -> int:
    """GET /x over HTTPS with `context` (plain HTTP without one); the status of an answer
    served by the handler."""
    status, body = _get(port, context, host)
    assert body == {"path": "/x"}
    return status


def _get(port: int, context: ssl.SSLContext | None, host: str = "127.0.0.1") -> tuple[int, object]:
    """GET /x over HTTPS with `context` (plain HTTP without one); status and JSON body."""
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection(host, port, timeout=DEADLINE)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=DEADLINE, context=context)
    try:
        connection.request("GET", "/x")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _serve(certificates: CertificateSet, *, require_client: bool, check) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        server = HttpServer(_echo, body_bytes_max=1000)
        files = certificates.client_port_files(1, require_client=require_client)
        await server.start(
            "127.0.0.1",
            0,
            ssl_context=client_port_context(files),
            client_certificates_required=require_client,
        )
        try:
            await asyncio.to_thread(check, server.port)
        finally:
            await server.close(grace_seconds=1.0)

    asyncio.run(main())


def test_https_serves_a_client_that_trusts_the_ca(certificates: CertificateSet) -> None:
    def check(port: int) -> None:
        trusting = client_context(ca_file=certificates.ca)
        assert _fetch(port, trusting) == 200
        assert _fetch(port, trusting, host="localhost") == 200  # both names in the cert

    _serve(certificates, require_client=False, check=check)


def test_a_plain_http_client_is_refused_and_the_port_keeps_serving(
    certificates: CertificateSet,
) -> None:
    def check(port: int) -> None:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            _fetch(port, None)
        assert _fetch(port, client_context(ca_file=certificates.ca)) == 200

    _serve(certificates, require_client=False, check=check)


def test_a_client_ca_requires_a_client_certificate(
    certificates: CertificateSet, tmp_path: Path
) -> None:
    stranger = CertificateSet(tmp_path / "other", [1])

    def check(port: int) -> None:
        # Without a certificate: an answer saying why, never the handler's (a TLS alert
        # instead reached a TLS 1.3 client as a dropped connection, retried to its deadline).
        without = client_context(ca_file=certificates.ca)
        status, body = _get(port, without)
        assert status == 401 and isinstance(body, dict)
        assert body["error"] == "client_certificate_required"
        # A certificate the CA did not sign fails the handshake itself.
        foreign = client_context(
            ca_file=certificates.ca, cert_file=stranger.client_cert, key_file=stranger.client_key
        )
        with pytest.raises((ssl.SSLError, http.client.HTTPException, ConnectionError)):
            _fetch(port, foreign)
        with_certificate = client_context(
            ca_file=certificates.ca,
            cert_file=certificates.client_cert,
            key_file=certificates.client_key,
        )
        assert _fetch(port, with_certificate) == 200

    _serve(certificates, require_client=True, check=check)


def test_a_client_that_does_not_trust_the_ca_refuses_the_server(
    certificates: CertificateSet, tmp_path: Path
) -> None:
    stranger = CertificateSet(tmp_path / "other", [1])

    def check(port: int) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            _fetch(port, client_context(ca_file=stranger.ca))

    _serve(certificates, require_client=False, check=check)


def test_leader_hints_say_https_when_the_cluster_serves_https() -> None:
    class Backend:
        id = 2

        def leader_client_address(self, leader_id: int | None) -> str | None:
            return "10.0.0.1:8001"

    api = ClientApi(Backend(), 1000, url_scheme="https")  # type: ignore[arg-type]
    response = api._not_leader(1)
    assert json.loads(response.body)["leader_url"] == "https://10.0.0.1:8001"
