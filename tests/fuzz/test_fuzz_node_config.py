"""raft-node's configuration file and RAFTKV_* variables (cli/node_config.py): any file
content and any variable text make `from_file` and `from_environment` return settings or
raise `ConfigError` (exit code 1 with a message), never a traceback; a configuration
printed by --print-config reads back to the same settings."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from raftkv.cli.node import build_parser
from raftkv.cli.node_config import (
    ConfigError,
    from_environment,
    from_file,
    parse,
    render,
    settings_of,
)

from .fuzzing import any_text, fuzz, mutated, raises_only

SETTINGS = settings_of(build_parser())
NAMES = sorted(SETTINGS)

toml_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.booleans().map(lambda flag: "true" if flag else "false"),
    any_text.map(lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(["[2, 3]", '["2=h:1"]', '{2 = "h:9002"}', "[150, 300]", "1.5", "nan", "inf"]),
)
toml_files = st.lists(
    st.tuples(st.sampled_from(NAMES) | st.text("abcdef_-", min_size=1, max_size=8), toml_scalars),
    max_size=5,
).map(
    lambda pairs: "\n".join(f"{key} = {value}" for key, value in pairs).encode(
        "utf-8", "surrogatepass"
    )
)


def _from_file(content: bytes) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "node.toml")
        with open(path, "wb") as file:
            file.write(content)
        return raises_only(from_file, ConfigError, path, SETTINGS)


@fuzz
@given(content=st.one_of(toml_files, mutated(toml_files), st.binary(max_size=80)))
@example(content=b'data_dir = "\xff"')
@example(content=b"id = " + b"9" * 5000)
@example(content=b"peers = " + b"[" * 5000 + b"]" * 5000)
def test_any_config_file_gives_settings_or_a_config_error(content: bytes) -> None:
    _from_file(content)


@fuzz
@given(
    variables=st.dictionaries(
        st.sampled_from([setting.variable for setting in SETTINGS.values()])
        | st.text(max_size=8).map("RAFTKV_".__add__),
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
        | st.sampled_from(["9" * 5000, "1-", "-1", "0-0", "\u00b2", "150-100"]),
        max_size=4,
    )
)
def test_any_environment_gives_settings_or_a_config_error(variables: dict[str, str]) -> None:
    raises_only(from_environment, ConfigError, variables, SETTINGS)


@fuzz
@given(
    node_id=st.integers(1, 2**31 - 1),
    tick_ms=st.integers(1, 1000),
    pre_vote=st.booleans(),
    peers=st.lists(st.integers(1, 99), min_size=1, max_size=3, unique=True),
    data_dir=st.text(
        st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=12
    ),
)
def test_a_printed_configuration_reads_back_the_same(
    node_id: int, tick_ms: int, pre_vote: bool, peers: list[int], data_dir: str
) -> None:
    argv = ["--id", str(node_id), "--tick-ms", str(tick_ms), f"--data-dir={data_dir}"]
    argv += ["--peers", ",".join(map(str, peers))] + ([] if pre_vote else ["--no-pre-vote"])
    first = parse(build_parser, argv, {})
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "printed.toml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(render(first))
        again = parse(build_parser, ["--config", path], {})
    assert again.arguments == first.arguments.__class__(**{**vars(first.arguments), "config": path})
