"""`raft-node --config FILE`, `RAFTKV_*` variables and `--print-config` (SPEC §6)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from raftkv.cli.node import EXIT_ERROR, EXIT_OK, build_parser, main, options_from
from raftkv.cli.node_config import ConfigError, parse


def effective(argv: list[str], environ: dict[str, str] | None = None) -> Any:
    return parse(build_parser, argv, environ or {}).arguments


def sources(argv: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    return parse(build_parser, argv, environ or {}).sources


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def printed(
    argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str]:
    assert main([*argv, "--print-config"], environ) == EXIT_OK
    out = capsys.readouterr().out
    return tomllib.loads(out), out


def test_defaults_alone() -> None:
    arguments = effective(["--id", "1"])
    assert arguments.heartbeat_ms == 50 and arguments.election_timeout_ms == (150, 300)
    assert not arguments.no_pre_vote
    assert set(sources(["--id", "1"]).values()) == {"flag", "default"}


def test_the_file_alone(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        'id = 3\nlisten = "127.0.0.1:9103"\ndata-dir = "d3"\npeers = {1 = "h:1", 2 = "h:2"}\n'
        'election_timeout_ms = [100, 250]\nheartbeat_ms = 20\nlog_format = "json"\n',
    )
    arguments = effective(["--config", path])
    assert arguments.id == 3 and arguments.listen == "127.0.0.1:9103"
    assert arguments.data_dir == "d3" and arguments.peers == "1=h:1,2=h:2"
    assert arguments.election_timeout_ms == (100, 250) and arguments.heartbeat_ms == 20
    assert arguments.log_format == "json"
    assert sources(["--config", path])["id"] == "file"


def test_peers_as_an_array_and_the_config_file_from_the_environment(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\npeers = [2, 3]\n")
    assert effective([], {"RAFTKV_CONFIG": path}).peers == "2,3"


def test_the_environment_alone() -> None:
    environ = {"RAFTKV_ID": "2", "RAFTKV_DATA_DIR": "x", "RAFTKV_TICK_MS": "5"}
    arguments = effective([], environ)
    assert (arguments.id, arguments.data_dir, arguments.tick_ms) == (2, "x", 5)
    assert sources([], environ)["tick_ms"] == "env"


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\nheartbeat_ms = 10\ntick_ms = 1\nseed = 7\n")
    environ = {"RAFTKV_HEARTBEAT_MS": "20", "RAFTKV_TICK_MS": "2"}
    argv = ["--config", path, "--heartbeat-ms", "30"]
    arguments = effective(argv, environ)
    assert (arguments.heartbeat_ms, arguments.tick_ms, arguments.seed) == (30, 2, 7)
    found = sources(argv, environ)
    assert (found["heartbeat_ms"], found["tick_ms"], found["seed"]) == ("flag", "env", "file")
    assert found["snapshot_entries"] == "default"


@pytest.mark.parametrize(
    ("argv", "environ", "text"),
    [
        (["--no-pre-vote"], {}, ""),
        ([], {"RAFTKV_PRE_VOTE": "false"}, ""),
        ([], {"RAFTKV_PRE_VOTE": "0"}, ""),
        ([], {}, "pre_vote = false\n"),
        ([], {}, "pre-vote = false\n"),
    ],
)
def test_a_boolean_from_each_source(
    argv: list[str], environ: dict[str, str], text: str, tmp_path: Path
) -> None:
    path = config_file(tmp_path, "id = 1\n" + text)
    assert effective(["--config", path, *argv], environ).no_pre_vote is True
    assert effective(["--config", path], {"RAFTKV_TRACE_RPC": "true"}).trace_rpc is True


def test_a_boolean_true_in_the_file_keeps_the_default(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\npre_vote = true\ncheck_quorum = false\n")
    arguments = effective(["--config", path])
    assert arguments.no_pre_vote is False and arguments.no_check_quorum is True


def test_print_config_parses_back_to_the_effective_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "never-made"
    path = config_file(tmp_path, f'id = 1\ndata_dir = "{data_dir}"\nseed = 4\npre_vote = false\n')
    argv = ["--config", path, "--peers", "2,3", "--election-timeout-ms", "100-200"]
    environ = {"RAFTKV_HEARTBEAT_MS": "25"}
    table, out = printed(argv, environ, capsys)
    assert table["id"] == 1 and table["data_dir"] == str(data_dir) and table["seed"] == 4
    assert table["peers"] == "2,3" and table["election_timeout_ms"] == "100-200"
    assert table["heartbeat_ms"] == 25 and table["pre_vote"] is False
    assert table["check_quorum"] is True and "join" not in table
    assert "heartbeat_ms = 25  # env" in out and "seed = 4  # file" in out
    assert 'peers = "2,3"  # flag' in out and "tick_ms = 10  # default" in out
    assert not data_dir.exists()
    # What was printed is a configuration file that gives the same settings.
    reread = config_file(tmp_path, out)
    assert vars(effective(["--config", reread])) == vars(effective(argv, environ)) | {
        "config": reread
    }


@pytest.mark.parametrize(
    ("text", "environ", "named"),
    [
        ("id = 1\ndatadir = 'x'\n", {}, "'datadir'"),
        ("id = 1\nno_pre_vote = true\n", {}, "pre_vote = false"),
        ("id = 1\nconfig = 'x'\n", {}, "'config'"),
        ("id = 1\n", {"RAFTKV_DATADIR": "x"}, "RAFTKV_DATADIR"),
        ("id = 1\n", {"RAFTKV_NO_PRE_VOTE": "1"}, "RAFTKV_NO_PRE_VOTE"),
    ],
)
def test_unknown_keys_and_variables_are_refused(
    text: str,
    environ: dict[str, str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config_file(tmp_path, text)
    assert main(["--config", path, "--print-config"], environ) == EXIT_ERROR
    error = capsys.readouterr().err
    assert "refusing to start" in error and named in error


def test_variables_of_the_test_suite_are_not_settings() -> None:
    environ = {"RAFTKV_TEST_LINKS": "proxy", "RAFTKV_SIM_LONG": "1", "RAFTKV_LONG": "1"}
    assert effective(["--id", "1"], environ).id == 1


def test_the_package_s_switch_to_run_interpreted_is_not_a_setting() -> None:
    # RAFTKV_PURE=1 raft-node ... runs the node from its .py files (for profilers): it
    # once refused to start, "unknown variable 'RAFTKV_PURE'".
    assert effective(["--id", "1"], {"RAFTKV_PURE": "1"}).id == 1


@pytest.mark.parametrize(
    ("text", "environ", "named"),
    [
        ("id = '1'\n", {}, "key 'id'"),
        ("id = 1\nheartbeat_ms = 1.5\n", {}, "key 'heartbeat_ms'"),
        ("id = 1\npre_vote = 'no'\n", {}, "key 'pre_vote'"),
        ("id = 1\nlisten = 9001\n", {}, "key 'listen'"),
        ("id = 1\nlog_format = 'xml'\n", {}, "key 'log_format'"),
        ("id = 1\nelection_timeout_ms = [300, 100]\n", {}, "key 'election_timeout_ms'"),
        ("id = 1\n", {"RAFTKV_TICK_MS": "ten"}, "variable RAFTKV_TICK_MS"),
        ("id = 1\n", {"RAFTKV_PRE_VOTE": "maybe"}, "variable RAFTKV_PRE_VOTE"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_source(
    text: str, environ: dict[str, str], named: str, tmp_path: Path
) -> None:
    path = config_file(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        effective(["--config", path], environ)
    message = str(error.value)
    assert named in message
    assert ("config file" in message) == (not environ)


def test_a_missing_or_malformed_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "absent.toml")], {}) == EXIT_ERROR
    assert "absent.toml" in capsys.readouterr().err
    path = config_file(tmp_path, "id = = 1\n")
    assert main(["--config", path], {}) == EXIT_ERROR
    assert "not valid TOML" in capsys.readouterr().err


def test_a_bad_flag_is_still_a_usage_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", path, "--heartbeat-ms", "x"], {})
    assert exit_info.value.code == 2


def test_the_readiness_lag_bound_reaches_the_node_options(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\nready-lag-entries = 25\n")
    assert options_from(effective(["--config", path])).ready_lag_entries_max == 25
    flagged = effective(["--id", "1", "--ready-lag-entries", "0"])
    assert options_from(flagged).ready_lag_entries_max == 0
    assert options_from(effective(["--id", "1"])).ready_lag_entries_max == 1000
    with pytest.raises(SystemExit):
        main(["--id", "1", "--ready-lag-entries", "-1", "--print-config"], {})


def test_the_sync_thread_threshold_reaches_the_node_options(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\nsync-thread-min-entries = 8\n")
    assert options_from(effective(["--config", path])).sync_thread_min_entries == 8
    flagged = effective(["--id", "1", "--sync-thread-min-entries", "0"])
    assert options_from(flagged).sync_thread_min_entries == 0
    assert options_from(effective(["--id", "1"])).sync_thread_min_entries == 2
    with pytest.raises(SystemExit):
        main(["--id", "1", "--sync-thread-min-entries", "-1", "--print-config"], {})


def test_the_snapshot_log_fraction_reaches_the_node_options(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\nsnapshot-log-fraction = 1.5\n")
    assert options_from(effective(["--config", path])).snapshot_log_fraction == 1.5
    flagged = effective(["--id", "1", "--snapshot-log-fraction", "0"])
    assert options_from(flagged).snapshot_log_fraction == 0
    defaults = options_from(effective(["--id", "1"]))
    assert (defaults.snapshot_log_fraction, defaults.snapshot_entries) == (1.0, 100_000)
    for refused in ("-0.5", "nan", "inf", "11"):
        with pytest.raises(SystemExit):
            main(["--id", "1", "--snapshot-log-fraction", refused, "--print-config"], {})


def test_auth_settings_from_each_source_and_the_join_token_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "join-secret-0123456789"
    path = config_file(
        tmp_path, f'id = 4\nauth_tokens = "/etc/raftkv/tokens.toml"\njoin_token = "{secret}"\n'
    )
    arguments = effective(["--config", path], {"RAFTKV_AUTH_PUBLIC": "metrics,health"})
    assert arguments.auth_tokens == "/etc/raftkv/tokens.toml"
    assert arguments.auth_public == "health,metrics"  # canonical
    assert arguments.join_token == secret
    assert effective(["--id", "1"], {"RAFTKV_JOIN_TOKEN": secret}).join_token == secret
    assert effective(["--id", "1"]).auth_public == "health"  # the default
    for environ in ({}, {"RAFTKV_JOIN_TOKEN": secret}):
        values, out = printed(["--config", path], environ, capsys)
        assert secret not in out
        assert "join_token" not in values  # a comment line: it says where, not what
        assert "# join_token = (set; a secret, not shown)" in out
    with pytest.raises(ConfigError, match="RAFTKV_AUTH_PUBLIC"):
        effective(["--id", "1"], {"RAFTKV_AUTH_PUBLIC": "everything"})


def test_the_watch_limits_reach_the_node_options(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id = 1\nwatchers-max = 10\nwatch-history-events = 500\n")
    watch = options_from(effective(["--config", path])).watch
    assert (watch.watchers_max, watch.history.events_max) == (10, 500)
    defaults = options_from(effective(["--id", "1"])).watch
    assert (defaults.watchers_max, defaults.history.events_max) == (4096, 100_000)
    with pytest.raises(SystemExit):
        main(["--id", "1", "--watch-history-events", "0", "--print-config"], {})


def test_quorum_first_replication_is_on_unless_turned_off_from_any_source(
    tmp_path: Path,
) -> None:
    assert options_from(effective(["--id", "1"])).quorum_first is True
    assert options_from(effective(["--id", "1", "--no-quorum-first"])).quorum_first is False
    off = effective(["--id", "1"], {"RAFTKV_QUORUM_FIRST": "false"})
    assert options_from(off).quorum_first is False
    path = config_file(tmp_path, "id = 1\nquorum-first = false\n")
    assert options_from(effective(["--config", path])).quorum_first is False


def test_idle_polling_is_1000_us_unless_set_from_any_source(tmp_path: Path) -> None:
    assert options_from(effective(["--id", "1"])).idle_poll_us == 1000
    assert options_from(effective(["--id", "1", "--idle-poll-us", "0"])).idle_poll_us == 0
    from_env = effective(["--id", "1"], {"RAFTKV_IDLE_POLL_US": "150"})
    assert options_from(from_env).idle_poll_us == 150
    path = config_file(tmp_path, "id = 1\nidle-poll-us = 75\n")
    assert options_from(effective(["--config", path])).idle_poll_us == 75
    for bad in ("-1", "100001"):
        with pytest.raises(SystemExit):
            main(["--id", "1", "--idle-poll-us", bad, "--print-config"], {})
