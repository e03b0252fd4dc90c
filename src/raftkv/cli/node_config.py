"""`raft-node --config FILE`, `RAFTKV_*` environment variables and `--print-config`
(SPEC §6).

The settings are derived from the parser's own options, so a new flag is configurable
without editing a list here: the setting `data_dir` is `--data-dir`, `RAFTKV_DATA_DIR` and
`data_dir` (or `data-dir`) in the file. A `--no-X` flag is the setting `x`, a boolean
(`pre_vote = false` is `--no-pre-vote`). Values from the file and the environment become
the parser's defaults, after going through each option's own type and choices, so the
precedence is flags > environment > file > defaults and every source is checked alike.
"""

from __future__ import annotations

import argparse
import difflib
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "RAFTKV_"
CONFIG_VARIABLE = "RAFTKV_CONFIG"
# RAFTKV_* variables that belong to the test suite and tools, not to raft-node; and
# RAFTKV_PURE, the package's own switch to run its modules interpreted (raftkv/__init__.py),
# which a profiled node must be able to take.
FOREIGN_VARIABLE_PREFIXES = (
    "RAFTKV_TEST_",
    "RAFTKV_SIM_",
    "RAFTKV_BENCH_",
    "RAFTKV_LONG",
    "RAFTKV_PURE",
)
NOT_SETTINGS = frozenset({"help", "version", "config", "print_config"})
# Settings whose values are credentials: --print-config says where they came from, never
# what they are.
SECRET_SETTINGS = frozenset({"join_token"})
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})

FLAG, ENV, FILE, DEFAULT = "flag", "env", "file", "default"


class ConfigError(Exception):
    """A configuration the node refuses to start with (exit code 1)."""


@dataclass(frozen=True)
class Setting:
    name: str  # the key in the file; upper-cased after RAFTKV_ in the environment
    action: argparse.Action
    inverted: bool = False  # `--no-X`: the setting X is the flag's negation

    @property
    def is_boolean(self) -> bool:
        return isinstance(self.action, argparse._StoreTrueAction)

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return self.action.option_strings[-1]


def settings_of(parser: argparse.ArgumentParser) -> dict[str, Setting]:
    settings: dict[str, Setting] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in NOT_SETTINGS:
            continue
        if isinstance(action, argparse._StoreTrueAction) and action.dest.startswith("no_"):
            setting = Setting(action.dest.removeprefix("no_"), action, inverted=True)
        else:
            setting = Setting(action.dest, action)
        settings[setting.name] = setting
    return settings


def _join_peers(value: object) -> str | None:
    """`peers` in the file: "2,3", [2, 3], ["2=HOST:PORT", ...] or {2 = "HOST:PORT"}."""
    if isinstance(value, list) and all(
        isinstance(item, (int, str)) and not isinstance(item, bool) for item in value
    ):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        return ",".join(f"{key}={address}" for key, address in value.items())
    return None


def _join_range(value: object) -> str | None:
    """`election_timeout_ms` in the file: "150-300", [150, 300] or 150 (MAX = 2 * MIN)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    ):
        return f"{value[0]}-{value[1]}"
    return None


# Forms besides a string that a file may give a setting in, as the flag's text.
FILE_FORMS: dict[str, Callable[[object], str | None]] = {
    "peers": _join_peers,
    "election_timeout_ms": _join_range,
}


def _expected(setting: Setting) -> str:
    if setting.is_boolean:
        return "a boolean (true or false)"
    if setting.action.type is int:
        return "an integer"
    if setting.action.type is float:
        return "a number"
    return "a string"


def _converted(setting: Setting, text: str, where: str) -> Any:
    """The flag's value for `text`, through the option's type and choices, as argparse
    would convert it on the command line."""
    action = setting.action
    try:
        value = action.type(text) if callable(action.type) else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
        detail = str(error) if isinstance(error, argparse.ArgumentTypeError) else repr(text)
        raise ConfigError(
            f"{where}: expected {_expected(setting)} for {setting.flag}, got {detail}"
        ) from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(repr(choice) for choice in action.choices)
        raise ConfigError(f"{where}: {value!r} is not one of {choices}")
    return value


def _boolean(setting: Setting, value: bool) -> bool:
    return not value if setting.inverted else value


def _unknown(kind: str, name: str, known: Sequence[str], where: str) -> ConfigError:
    hint = difflib.get_close_matches(name, known, n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else ""
    return ConfigError(f"{where}: unknown {kind} {name!r}{suggestion}")


def from_file(path: str, settings: Mapping[str, Setting]) -> dict[str, Any]:
    """The file's settings, by dest, as flag values."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror or error}") from None
    except (ValueError, RecursionError) as error:
        # TOMLDecodeError, and what tomllib lets through: UnicodeDecodeError (not UTF-8),
        # ValueError (an integer of over 4,300 digits), RecursionError (nested too deep).
        raise ConfigError(f"config file {path}: not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in table.items():
        where = f"config file {path}: key {key!r}"
        name = key.replace("-", "_")
        setting = settings.get(name)
        if setting is None:
            known = [*settings, *(s.replace("_", "-") for s in settings)]
            if name.startswith("no_") and name[3:] in settings:
                raise ConfigError(f"{where}: unknown key; write {name[3:]} = false instead")
            raise _unknown("key", key, known, f"config file {path}")
        if name in seen:
            raise ConfigError(f"{where}: the same setting as key {seen[name]!r}")
        seen[name] = key
        if setting.is_boolean:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected {_expected(setting)}, got {value!r}")
            values[setting.action.dest] = _boolean(setting, value)
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(value, str) and setting.action.type not in (int, float):
            text = value
        elif setting.action.type is int and isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif setting.action.type is float and number:
            text = repr(value)
        else:
            form = FILE_FORMS.get(name)
            joined = form(value) if form else None
            if joined is None:
                raise ConfigError(f"{where}: expected {_expected(setting)}, got {value!r}")
            text = joined
        values[setting.action.dest] = _converted(setting, text, where)
    return values


def _is_foreign(variable: str) -> bool:
    return variable == CONFIG_VARIABLE or variable.startswith(FOREIGN_VARIABLE_PREFIXES)


def from_environment(environ: Mapping[str, str], settings: Mapping[str, Setting]) -> dict[str, Any]:
    """The environment's settings, by dest, as flag values."""
    by_variable = {setting.variable: setting for setting in settings.values()}
    values: dict[str, Any] = {}
    for variable, text in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or _is_foreign(variable):
            continue
        setting = by_variable.get(variable)
        if setting is None:
            raise _unknown("variable", variable, list(by_variable), "environment")
        where = f"environment variable {variable}"
        if setting.is_boolean:
            word = text.strip().lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                raise ConfigError(f"{where}: expected true or false, got {text!r}")
            values[setting.action.dest] = _boolean(setting, word in TRUE_WORDS)
        else:
            values[setting.action.dest] = _converted(setting, text, where)
    return values


def _given_on_command_line(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str]
) -> set[str]:
    """The dests the command line itself set (parsed again with every default suppressed)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(parser.parse_args(list(argv))))


@dataclass
class Configuration:
    arguments: argparse.Namespace
    sources: dict[str, str]  # dest -> flag, env, file or default
    settings: dict[str, Setting]
    config_path: str | None


def parse(
    build_parser: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str],
    environ: Mapping[str, str],
) -> Configuration:
    """Parse `argv` with the file's and the environment's settings as the defaults. Raises
    ConfigError for a bad file or variable; argparse exits 2 for a bad command line."""
    parser = build_parser()
    settings = settings_of(parser)
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--config")
    known, _ = early.parse_known_args(list(argv))
    config_path: str | None = known.config or environ.get(CONFIG_VARIABLE) or None
    file_values = from_file(config_path, settings) if config_path else {}
    env_values = from_environment(environ, settings)
    defaults = {**file_values, **env_values}
    parser.set_defaults(**defaults)
    for action in parser._actions:
        if action.dest in defaults:
            action.required = False  # a required flag (--id) may come from the file or env
    arguments = parser.parse_args(list(argv))
    flagged = _given_on_command_line(build_parser, argv)
    sources: dict[str, str] = {}
    for setting in settings.values():
        dest = setting.action.dest
        if dest in flagged:
            sources[dest] = FLAG
        elif dest in env_values:
            sources[dest] = ENV
        elif dest in file_values:
            sources[dest] = FILE
        else:
            sources[dest] = DEFAULT
    return Configuration(arguments, sources, settings, config_path)


def _toml_value(setting: Setting, value: Any) -> str:
    if setting.is_boolean:
        return "true" if _boolean(setting, bool(value)) else "false"
    if isinstance(value, tuple):
        return json.dumps("-".join(str(item) for item in value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # finite: options_from refuses nan and inf
    return json.dumps(str(value))


def render(configuration: Configuration) -> str:
    """The effective configuration as TOML that --config accepts, each value's source in a
    comment; a setting with no value is a comment alone."""
    header = "# raft-node effective configuration"
    if configuration.config_path:
        header += f" (config file: {configuration.config_path})"
    lines = [header, "# precedence: flag > env (RAFTKV_*) > file > default"]
    for setting in configuration.settings.values():
        dest = setting.action.dest
        value = getattr(configuration.arguments, dest)
        source = configuration.sources[dest]
        if value is None:
            lines.append(f"# {setting.name} is not set  # {source}")
        elif setting.name in SECRET_SETTINGS:
            lines.append(f"# {setting.name} = (set; a secret, not shown)  # {source}")
        else:
            lines.append(f"{setting.name} = {_toml_value(setting, value)}  # {source}")
    return "\n".join(lines) + "\n"
