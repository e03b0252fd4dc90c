"""The deployment files in deploy/ (docs/operations.md, "Deployment"): what this machine
can check without systemd or Docker. Every node config they ship loads and means what it
says (`raft-node --print-config`); the systemd unit runs the node from its instance's
config and does not restart a node that found corrupt data; the compose file mounts what
its configs name, and its certificate step, run here for real, names the compose hosts;
the Dockerfile copies files that exist and runs what compose expects. Neither systemd nor
Docker runs here: the unit and the image are not started by these tests."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from raftkv.cli.client import build_parser as client_parser
from raftkv.cli.node import EXIT_CORRUPTION, EXIT_OK, main
from raftkv.server.auth import Role, load_tokens
from tests.process.cluster import BIN

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REPOSITORY = DEPLOY.parent
CONFIGS = sorted([*DEPLOY.glob("config/node-*.toml"), *DEPLOY.glob("docker/node-*.toml")])
TLS_KEYS = ("peer-cert", "peer-key", "peer-ca", "client-cert", "client-key", "client-ca")


def effective_config(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """What `raft-node ARGV --print-config` prints, parsed back."""
    assert main([*argv, "--print-config"], {}) == EXIT_OK
    return tomllib.loads(capsys.readouterr().out)


def node_number(path: Path) -> int:
    match = re.fullmatch(r"node-(\d+)\.toml", path.name)
    assert match is not None
    return int(match.group(1))


def test_there_are_configs_for_three_nodes_each_way() -> None:
    assert [path.relative_to(DEPLOY).as_posix() for path in CONFIGS] == [
        "config/node-1.toml",
        "config/node-2.toml",
        "config/node-3.toml",
        "docker/node-1.toml",
        "docker/node-2.toml",
        "docker/node-3.toml",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_each_node_config_loads_with_tls_and_tokens_on(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node_id = node_number(path)
    settings = effective_config(["--config", str(path)], capsys)
    assert settings["id"] == node_id
    peers = settings["peers"]
    assert sorted(int(peer.partition("=")[0]) for peer in peers.split(",")) == sorted(
        {1, 2, 3} - {node_id}
    )
    # Wildcard listen addresses, so each must say where it is reached.
    assert settings["listen"].startswith("0.0.0.0:") and settings["advertise_peer"]
    assert settings["client_listen"].startswith("0.0.0.0:") and settings["advertise_client"]
    for key in TLS_KEYS:
        assert settings[key.replace("-", "_")].startswith("/etc/raftkv/certs/"), key
    assert settings["peer_cert"].endswith(f"/node-{node_id}.pem")
    assert settings["auth_tokens"] == "/etc/raftkv/tokens.toml"
    assert settings["data_dir"].startswith("/var/lib/raftkv/")


def systemd_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "raftkv@.service").read_text())
    return unit


def test_the_systemd_unit_runs_each_instance_from_its_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = systemd_unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0] == "/opt/raftkv/bin/raft-node"
    for instance in (1, 2, 3):
        argv = [
            argument.replace("%i", str(instance)).replace("/etc/raftkv/", f"{DEPLOY}/config/")
            for argument in command[1:]
        ]
        assert effective_config(argv, capsys)["id"] == instance
    # Corrupt data is not fixed by restarting; everything else is retried.
    assert service["RestartPreventExitStatus"] == str(EXIT_CORRUPTION)
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] == "raftkv"
    # The one writable place is where every shipped config keeps its data.
    assert service["ReadWritePaths"] == "/var/lib/raftkv"
    assert service["ProtectSystem"] == "strict"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, for a service's volumes."""
    found = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        found[target] = source
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_mounts_what_each_node_config_names() -> None:
    services = compose()["services"]
    image_command = json.loads(dict(dockerfile_instructions())["CMD"])
    assert image_command == ["--config", "/etc/raftkv/node.toml"]
    for node_id in (1, 2, 3):
        service = services[f"node{node_id}"]
        mounted = mounts(service)
        assert mounted["/etc/raftkv/node.toml"] == f"./node-{node_id}.toml"
        assert (DEPLOY / "docker" / mounted["/etc/raftkv/tokens.toml"]).is_file()
        assert mounted["/etc/raftkv/certs"] == "certs"
        assert mounted["/var/lib/raftkv"] == f"data{node_id}"
        config = tomllib.loads((DEPLOY / "docker" / f"node-{node_id}.toml").read_text())
        named = [config[key] for key in (*TLS_KEYS, "auth-tokens", "data-dir")]
        for path in named:
            assert any(path == target or path.startswith(target + "/") for target in mounted), path
        assert config["advertise-peer"] == f"node{node_id}:9000"
        assert service["hostname"] == f"node{node_id}"
        assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"


def test_the_compose_token_file_is_a_valid_token_file() -> None:
    table = load_tokens(str(DEPLOY / "docker" / "tokens.toml"))
    assert len(table) == 2
    # The compose client's token is one of them, with a role that can write.
    client_token = compose()["services"]["client"]["environment"]["RAFT_TOKEN"]
    identity = table.identify(client_token)
    assert identity is not None and identity.role >= Role.WRITE


def test_the_compose_certificate_step_names_the_compose_hosts(tmp_path: Path) -> None:
    """Runs the certs service's command here, into a temporary directory."""
    (script,) = compose()["services"]["certs"]["command"]
    init = script.split("||", 1)[1].replace("/etc/raftkv/certs", str(tmp_path / "certs"))
    argv = shlex.split(init)
    assert argv[:3] == ["raft-node", "certs", "init"]
    subprocess.run([str(BIN / "raft-node"), *argv[1:]], check=True, capture_output=True)
    for node_id in (1, 2, 3):
        pem = (tmp_path / "certs" / f"node-{node_id}.pem").read_bytes()
        names = (
            x509.load_pem_x509_certificate(pem)
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.DNSName)
        )
        assert f"node{node_id}" in names and f"node-{node_id}.raftkv" in names


def test_the_compose_client_is_a_valid_raft_client_command_line() -> None:
    entrypoint = compose()["services"]["client"]["entrypoint"]
    assert entrypoint[0] == "raft-client"
    arguments = client_parser().parse_args([*entrypoint[1:], "get", "x"])
    assert arguments.ca_file == "/etc/raftkv/certs/ca.pem"
    assert arguments.cert_file == "/etc/raftkv/certs/client.pem"


def test_the_dockerfile_copies_files_that_exist_and_runs_raft_node() -> None:
    instructions = dockerfile_instructions()
    for kind, argument in instructions:
        if kind == "COPY" and not argument.startswith("--from"):
            *sources, _destination = argument.split()
            for source in sources:
                assert (REPOSITORY / source).exists(), source
    assert dict(instructions)["ENTRYPOINT"] == '["raft-node"]'
    assert dict(instructions)["USER"] == "raftkv"
