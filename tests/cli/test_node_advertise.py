"""`raft-node --advertise-peer/--advertise-client` and the refusal of wildcard listen
addresses without them (SPEC §6)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftkv.cli.node import EXIT_ERROR, build_parser, main, options_from
from raftkv.server import NodeOptions


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main` points the root logger at the (captured) stderr; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def options(*arguments: str) -> NodeOptions:
    return options_from(build_parser().parse_args(["--id", "1", "--single-node", *arguments]))


def test_advertised_addresses_default_to_the_listen_addresses() -> None:
    parsed = options("--listen", "10.0.0.1:9001", "--client-listen", "10.0.0.1:8001")
    assert parsed.advertise_peer is None and parsed.advertise_client is None
    assert parsed.advertised_peer_address == ("10.0.0.1", 9001)
    assert parsed.advertised_client_address == ("10.0.0.1", 8001)
    assert parsed.wildcard_refusal() is None


def test_advertised_addresses_are_parsed_and_used() -> None:
    parsed = options(
        "--listen",
        "0.0.0.0:9001",
        "--client-listen",
        "[::]:8001",
        "--advertise-peer",
        "node1.example:9001",
        "--advertise-client",
        "http://node1.example:8001/",
    )
    assert parsed.listen == ("0.0.0.0", 9001)
    assert parsed.advertise_peer == ("node1.example", 9001)
    assert parsed.advertise_client == ("node1.example", 8001)
    assert parsed.advertised_peer_address == ("node1.example", 9001)
    assert parsed.advertised_client_address == ("node1.example", 8001)
    assert parsed.wildcard_refusal() is None


@pytest.mark.parametrize(
    "advertised", ["0.0.0.0:9001", "[::]:9001", ":9001", "node1", "node1:0", "node1:x"]
)
def test_an_undialable_advertised_address_is_a_usage_error(advertised: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--id", "1", "--single-node", "--advertise-peer", advertised])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]"])
def test_a_wildcard_peer_listen_address_needs_advertise_peer(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "node-1"
    arguments = ["--id", "1", "--single-node", "--data-dir", str(data_dir)]
    code = main([*arguments, "--listen", f"{host}:9001", "--client-listen", "127.0.0.1:8001"])
    assert code == EXIT_ERROR
    error = capsys.readouterr().err
    assert "refusing to start" in error and "--advertise-peer" in error
    assert "--advertise-client" not in error
    assert not data_dir.exists()


def test_a_wildcard_client_listen_address_needs_advertise_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "node-1"
    code = main(
        [
            *("--id", "1", "--single-node", "--data-dir", str(data_dir)),
            *("--listen", "0.0.0.0:9001", "--advertise-peer", "127.0.0.1:9001"),
            *("--client-listen", "0.0.0.0:8001"),
        ]
    )
    assert code == EXIT_ERROR
    error = capsys.readouterr().err
    assert "refusing to start" in error and "--advertise-client" in error
    assert not data_dir.exists()


def test_each_wildcard_is_refused_separately() -> None:
    peer_only = options("--listen", "0.0.0.0:9001", "--advertise-client", "127.0.0.1:8001")
    assert "--advertise-peer" in (peer_only.wildcard_refusal() or "")
    client_only = options("--client-listen", "0.0.0.0:8001", "--advertise-peer", "h:9001")
    assert "--advertise-client" in (client_only.wildcard_refusal() or "")
    both = options(
        *("--listen", "0.0.0.0:9001", "--client-listen", "0.0.0.0:8001"),
        *("--advertise-peer", "h:9001", "--advertise-client", "h:8001"),
    )
    assert both.wildcard_refusal() is None


def test_an_empty_listen_host_is_a_wildcard_too() -> None:
    # The command line refuses an empty host outright; the embedding API could pass one.
    node = NodeOptions(node_id=1, data_dir="d", listen=("", 9001), client_listen=("h", 8001))
    assert "--advertise-peer" in (node.wildcard_refusal() or "")
    node.advertise_peer = ("h", 9001)
    assert node.wildcard_refusal() is None
