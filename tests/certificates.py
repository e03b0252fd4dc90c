"""Certificate sets for TLS tests, made by `raft-node certs init`'s own code."""

from __future__ import annotations

from pathlib import Path

from raftkv.cli.certs import Plan, write_certificates
from raftkv.tls import ClientPortTlsFiles, PeerTlsFiles


class CertificateSet:
    """A CA with node certificates and a client certificate, in `directory`."""

    def __init__(self, directory: Path, node_ids: list[int]) -> None:
        self.directory = directory
        write_certificates(Plan(str(directory), node_ids, ["127.0.0.1", "localhost"], 2))

    def path(self, name: str) -> str:
        return str(self.directory / name)

    @property
    def ca(self) -> str:
        return self.path("ca.pem")

    def node_cert(self, node_id: int) -> str:
        return self.path(f"node-{node_id}.pem")

    def node_key(self, node_id: int) -> str:
        return self.path(f"node-{node_id}-key.pem")

    def peer_files(self, node_id: int, *, certificate_of: int | None = None) -> PeerTlsFiles:
        """Node `node_id`'s peer files; `certificate_of`: another node's certificate."""
        owner = node_id if certificate_of is None else certificate_of
        return PeerTlsFiles(self.node_cert(owner), self.node_key(owner), self.ca)

    def client_port_files(self, node_id: int, *, require_client: bool) -> ClientPortTlsFiles:
        return ClientPortTlsFiles(
            self.node_cert(node_id), self.node_key(node_id), self.ca if require_client else None
        )

    @property
    def client_cert(self) -> str:
        return self.path("client.pem")

    @property
    def client_key(self) -> str:
        return self.path("client-key.pem")

    def node_flags(self, node_id: int, *, require_client: bool = True) -> list[str]:
        """`raft-node` flags for mutual TLS between peers and HTTPS on the client port."""
        flags = [
            "--peer-cert", self.node_cert(node_id),
            "--peer-key", self.node_key(node_id),
            "--peer-ca", self.ca,
            "--client-cert", self.node_cert(node_id),
            "--client-key", self.node_key(node_id),
        ]  # fmt: skip
        if require_client:
            flags += ["--client-ca", self.ca]
        return flags
