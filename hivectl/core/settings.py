"""Settings: one typed, validated, frozen view of every knob, and where each value came from.

Precedence, lowest first. Every key starts at its built-in default. The TOML file (the one
passed in, else the one ``HIVECTL_CONFIG`` names) replaces the keys it sets. An environment
variable ``HIVECTL_<TABLE>_<KEY>`` (``HIVECTL_SERVER_PORT``) replaces the file's value. An
override (a command-line flag, given as a dotted key such as ``"server.port"``) replaces
everything below it. A layer replaces only the keys it sets; it never resets the others.
``[[auth.keys]]`` can only come from the file: a list of tables does not fit in a variable.
``[auth] secret`` and ``secret_file`` are two ways to give one key: when they come from different
layers, the higher layer's replaces the lower one's (``HIVECTL_AUTH_SECRET`` wins over the
file's ``secret_file``); only one layer setting both is an error.

Why one function does all of it: "why is it listening on 0.0.0.0?" must be answered by the
same code that decided it, so `load_settings` merges the layers and records, for every key,
the layer that won (`LoadedSettings.sources`).

Every value is validated whatever its layer, and all problems are collected before
`SettingsError` is raised, so one ``hivectl config check`` shows them all. A problem names
the config file, the key as ``[table].key`` and, for a value from the environment or a flag,
the variable or the flag. Unknown keys are warnings with a "did you mean" suggestion (errors
when ``strict``): a mistyped key would otherwise silently keep its default.

Durations are float seconds, written as numbers or as ``"250ms"``, ``"30s"``, ``"5m"``,
``"1h"``, ``"1d"``, or several of these from the largest unit down (``"1h30m"``, ``"2m30s"``).
Sizes are int bytes, written as numbers or as ``"512B"``, ``"64KiB"``,
``"1MiB"``, ``"1GiB"`` (binary) or ``"1KB"``, ``"1MB"``, ``"1GB"`` (decimal).

This module is pure: it reads the one TOML file it is given, takes the environment as a
mapping and reads no clock. It does not open ``secret_file`` or key files; the token code does.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")

ENV_PREFIX = "HIVECTL_"
CONFIG_ENV_VAR = "HIVECTL_CONFIG"
REDACTED = "***"


class SettingsError(Exception):
    """The settings are invalid; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Source(Enum):
    DEFAULT = "default"
    FILE = "file"
    ENV = "env"
    OVERRIDE = "override"


# -- durations and sizes ---------------------------------------------------------------------

_DURATION_UNITS = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_SIZE_UNITS = {
    "GiB": 1024**3,
    "MiB": 1024**2,
    "KiB": 1024,
    "GB": 1000**3,
    "MB": 1000**2,
    "KB": 1000,
    "B": 1,
}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_DURATION_EXPECTED = 'a duration like "30s", "250ms" or "1h30m" (units ms, s, m, h, d)'
_SIZE_EXPECTED = 'a size like "64KiB" or "512B" (units B, KB, MB, GB, KiB, MiB, GiB)'


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class _Invalid(ValueError):
    """A value that does not fit: what was expected, and what was given."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__(f"expected {expected}, got {_show(value)}")
        self.expected = expected


def _quantity(value: str, units: Mapping[str, Decimal | int], bare: str) -> Decimal | None:
    """``"1.5KiB"`` -> 1536: the number times its unit (`bare` when none), None if malformed."""
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        return None
    unit = units.get(match[2] or bare)
    return None if unit is None else Decimal(match[1]) * unit


def _compound_duration(text: str) -> Decimal | None:
    """``"1h30m"`` -> 5400: parts from the largest unit down, each unit once (as Go's
    ``time.ParseDuration`` reads them, without signs); None if malformed."""
    total, position, last_rank = Decimal(0), 0, -1
    ranks = list(_DURATION_UNITS)
    text = text.strip()
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None or ranks.index(match[2]) <= last_rank:
            return None
        last_rank = ranks.index(match[2])
        total += Decimal(match[1]) * _DURATION_UNITS[match[2]]
        position = match.end()
    return total if position else None


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string like ``"250ms"`` or ``"1h30m"``; never
    negative."""
    seconds: Decimal | None = None
    if isinstance(value, str):
        seconds = _quantity(value, _DURATION_UNITS, "s")
        if seconds is None:
            seconds = _compound_duration(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = Decimal(value)
    if seconds is not None and seconds.is_finite() and seconds >= 0:
        result = float(seconds)
        if math.isfinite(result):
            return result
    raise _Invalid(_DURATION_EXPECTED, value)


def parse_size(value: object) -> int:
    """Bytes from a number of bytes or a string like ``"64KiB"``; never negative."""
    if isinstance(value, str):
        size = _quantity(value, _SIZE_UNITS, "B")
        if size is not None and size == size.to_integral_value():
            return int(size)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _Invalid(_SIZE_EXPECTED, value)


def format_duration(seconds: float) -> str:
    """The largest unit that writes `seconds` exactly: 10.0 -> "10s", 0.25 -> "250ms"."""
    exact = Decimal(repr(float(seconds)))
    if exact == 0:
        return "0s"
    for unit, size in _DURATION_UNITS.items():
        count = exact / size
        if count == count.to_integral_value():
            return f"{int(count)}{unit}"
    return f"{exact:f}s"


def format_size(n: int) -> str:
    """The largest binary unit that writes `n` exactly: 65536 -> "64KiB", 1000 -> "1000B"."""
    for unit in ("GiB", "MiB", "KiB"):
        if n and n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return f"{n}B"


# -- value kinds: how each setting is checked, read from a variable and written back ----------


def _as_is(value: T) -> T:
    return value


@dataclass(frozen=True)
class _Spec:
    """How one setting is converted (raising `_Invalid`), read from the environment (None:
    file only) and written to TOML; `secret` values are never echoed; `item` is the dataclass
    of each entry of a list of tables."""

    convert: Callable[[object], object] = _as_is
    from_env: Callable[[str], object] | None = _as_is
    to_toml: Callable[[Any], object] = _as_is
    secret: bool = False
    item: type[Any] | None = None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid("a string", value)
    return value


def _matching(pattern: str, expected: str) -> Callable[[object], str]:
    regex = re.compile(pattern)

    def convert(value: object) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise _Invalid(expected, value)
        return value

    return convert


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("true or false", value)
    return value


def _integer(low: int, high: int | None) -> Callable[[object], int]:
    expected = f"an integer from {low} to {high}" if high else f"an integer of at least {low}"

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(expected, value)
        if value < low or (high is not None and value > high):
            raise _Invalid(expected, value)
        return value

    return convert


def _choice(*options: str) -> Callable[[object], str]:
    expected = "one of " + ", ".join(_show(option) for option in options)
    canonical = {option.lower(): option for option in options}

    def convert(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in canonical:
            raise _Invalid(expected, value)
        return canonical[value.lower()]

    return convert


def _duration(*, positive: bool) -> Callable[[object], float]:
    expected = 'a positive duration like "10s"' if positive else 'a duration like "10s"'

    def convert(value: object) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _Invalid(expected, value) from None
        if positive and seconds == 0:
            raise _Invalid(expected, value)
        return seconds

    return convert


def _positive_size(value: object) -> int:
    expected = 'a positive size like "64KiB"'
    try:
        size = parse_size(value)
    except ValueError:
        raise _Invalid(expected, value) from None
    if size == 0:
        raise _Invalid(expected, value)
    return size


def _text_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise _Invalid("a list of strings", value)
    return tuple(value)


def _int_from_env(text: str) -> object:
    stripped = text.strip()
    return int(stripped) if re.fullmatch(r"[+-]?\d+", stripped) else text


_ENV_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _bool_from_env(text: str) -> object:
    return _ENV_BOOLEANS.get(text.strip().lower(), text)


def _list_from_env(text: str) -> object:
    """A JSON list (``["a", "b"]``) or comma-separated values (``a, b``)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return [item.strip() for item in stripped.split(",") if item.strip()]


_TEXT = _Spec(_text)
_SECRET = _Spec(_text, secret=True)
_FLAG = _Spec(_boolean, from_env=_bool_from_env)
_PORT = _Spec(_integer(0, 65535), from_env=_int_from_env)
_DURATION = _Spec(_duration(positive=False), to_toml=format_duration)
_POSITIVE_DURATION = _Spec(_duration(positive=True), to_toml=format_duration)
_SIZE = _Spec(_positive_size, to_toml=format_size)
_TEXT_LIST = _Spec(_text_list, from_env=_list_from_env, to_toml=list)
_ALGORITHM = _Spec(_choice("HS256", "RS256", "ES256"))


def _count(low: int, high: int | None = None) -> _Spec:
    return _Spec(_integer(low, high), from_env=_int_from_env)


def _setting(default: T, spec: _Spec) -> T:
    result: T = field(default=default, metadata={"spec": spec})
    return result


def _spec(f: Any) -> _Spec:
    return cast(_Spec, f.metadata["spec"])


# -- the settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    host: str = _setting("127.0.0.1", _TEXT)
    port: int = _setting(8765, _PORT)
    api_port: int = _setting(8766, _PORT)
    api_enabled: bool = _setting(True, _FLAG)
    shutdown_timeout: float = _setting(10.0, _DURATION)
    node_id: str = _setting("", _TEXT)
    tls_cert: str = _setting("", _TEXT)
    tls_key: str = _setting("", _TEXT)


@dataclass(frozen=True)
class KeySettings:
    """One verification key of a rotation set, chosen by the token's ``kid`` header."""

    kid: str = _setting("", _TEXT)
    algorithm: str = _setting("HS256", _ALGORITHM)
    secret: str = _setting("", _SECRET)
    secret_file: str = _setting("", _TEXT)
    public_key_file: str = _setting("", _TEXT)


@dataclass(frozen=True)
class AuthSettings:
    algorithm: str = _setting("HS256", _ALGORITHM)
    secret: str = _setting("", _SECRET)
    secret_file: str = _setting("", _TEXT)
    public_key_file: str = _setting("", _TEXT)
    private_key_file: str = _setting("", _TEXT)
    issuer: str = _setting("", _TEXT)
    audience: str = _setting("", _TEXT)
    require_permissions: bool = _setting(False, _FLAG)
    leeway: float = _setting(0.0, _DURATION)
    max_token_ttl: float = _setting(0.0, _DURATION)
    keys: tuple[KeySettings, ...] = _setting((), _Spec(from_env=None, item=KeySettings))


@dataclass(frozen=True)
class PresenceSettings:
    grace: float = _setting(0.0, _DURATION)


@dataclass(frozen=True)
class RateSettings:
    """The message rate for connections whose token ``sub`` matches `sub` (an id pattern)."""

    sub: str = _setting("", _TEXT)
    messages_per_second: int = _setting(1000, _count(1))
    burst: int = _setting(2000, _count(1))


@dataclass(frozen=True)
class LimitsSettings:
    max_message_size: int = _setting(64 * 1024, _SIZE)
    max_messages_per_frame: int = _setting(1000, _count(1))
    messages_per_second: int = _setting(1000, _count(1))
    burst: int = _setting(2000, _count(1))
    messages_per_object: int = _setting(2, _count(0))
    rates: tuple[RateSettings, ...] = _setting((), _Spec(from_env=None, item=RateSettings))
    max_subscriptions: int = _setting(1000, _count(0))
    max_pubsub_subscriptions: int = _setting(1000, _count(0))
    send_queue_bytes: int = _setting(4 * 1024 * 1024, _SIZE)
    send_queue_max_bytes: int = _setting(64 * 1024 * 1024, _SIZE)
    send_stall_timeout: float = _setting(5.0, _POSITIVE_DURATION)
    auth_timeout: float = _setting(10.0, _POSITIVE_DURATION)
    # A provider that stops answering is declared gone when the pong to the next keepalive
    # ping is ping_timeout late: within 10 + 8 = 18 s, under 30 s even when timers fire late.
    ping_interval: float = _setting(10.0, _DURATION)
    ping_timeout: float = _setting(8.0, _DURATION)
    max_connections: int = _setting(10000, _count(1))
    max_connections_per_sub: int = _setting(0, _count(0))
    allowed_origins: tuple[str, ...] = _setting((), _TEXT_LIST)
    compression: str = _setting("none", _Spec(_choice("none", "deflate")))


@dataclass(frozen=True)
class StorageSettings:
    backend: str = _setting("sqlite", _Spec(_choice("sqlite", "memory")))
    path: str = _setting("hivectl.db", _TEXT)
    batch_window: float = _setting(0.01, _DURATION)
    ledger_window: float = _setting(1.0, _DURATION)


@dataclass(frozen=True)
class ClusterSettings:
    nats_url: str = _setting("", _TEXT)
    stream: str = _setting(
        "HIVE", _Spec(_matching(r"[A-Za-z0-9_-]+", "a stream name of letters, digits, _ and -"))
    )
    replicas: int = _setting(1, _count(1, 5))
    lease_ttl: float = _setting(5.0, _POSITIVE_DURATION)
    lease_interval: float = _setting(1.0, _POSITIVE_DURATION)
    check_interval: float = _setting(1.0, _POSITIVE_DURATION)
    reseed_timeout: float = _setting(10.0, _POSITIVE_DURATION)


@dataclass(frozen=True)
class LogSettings:
    level: str = _setting("info", _Spec(_choice("debug", "info", "warning", "error")))
    format: str = _setting("text", _Spec(_choice("text", "json")))


@dataclass(frozen=True)
class ClientSettings:
    url: str = _setting(
        "ws://127.0.0.1:8765/ws", _Spec(_matching(r"wss?://\S+", 'a "ws://" or "wss://" URL'))
    )
    token: str = _setting("", _SECRET)
    token_file: str = _setting("", _TEXT)
    ca_file: str = _setting("", _TEXT)


def _tile_url(value: object) -> str:
    """A slippy-map tile URL template, or "" for none: the console draws a plain map then."""
    if value == "":
        return ""
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"https?://[\w.\-:\[\]{}]+/\S*", value)
        or not all(part in value for part in ("{z}", "{x}", "{y}"))
    ):
        raise _Invalid('"" or an http(s) URL with {z}, {x} and {y}', value)
    return value


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console at ``/console`` (`server.io.console`)."""

    enabled: bool = _setting(True, _FLAG)
    tile_url: str = _setting("https://tile.openstreetmap.org/{z}/{x}/{y}.png", _Spec(_tile_url))


@dataclass(frozen=True)
class Settings:
    """Every setting, one frozen dataclass per TOML table."""

    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    log: LogSettings = field(default_factory=LogSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)


_TABLES: dict[str, type[Any]] = get_type_hints(Settings)


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: Mapping[str, tuple[Source, str]]
    warnings: list[str]
    config_file: Path | None


def env_var_name(key: str) -> str:
    """``"server.port"`` -> ``"HIVECTL_SERVER_PORT"``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def setting_keys() -> list[str]:
    """Every dotted key, table by table: ``"server.host"``, ..., ``"client.token_file"``."""
    return [f"{table}.{f.name}" for table, cls in _TABLES.items() for f in fields(cls)]


def _specs(cls: type[Any]) -> dict[str, _Spec]:
    return {f.name: _spec(f) for f in fields(cls)}


# -- problems and warnings ---------------------------------------------------------------------


class _Given(NamedTuple):
    value: object
    source: Source
    label: str


def _from(*given: _Given | None) -> str:
    """`` (from HIVECTL_SERVER_PORT)`` for values set by a variable or a flag; file values are
    already named by the message's file prefix, defaults by nothing."""
    labels = [g.label for g in given if g is not None and g.source in (Source.ENV, Source.OVERRIDE)]
    return f" (from {', '.join(labels)})" if labels else ""


def _did_you_mean(word: str, candidates: Mapping[str, str]) -> str:
    """``", did you mean [server].port?"`` for the closest candidate (a name -> how to show it)."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f", did you mean {candidates[close[0]]}?" if close else ""


class _Report:
    """Collects problems (errors) and warnings; messages about keys start with the file name."""

    def __init__(self, path: Path | None) -> None:
        self.prefix = f"{path}: " if path is not None else ""
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, where: str, reason: str, *given: _Given | None) -> None:
        self.problems.append(f"{self.prefix}{where}: {reason}{_from(*given)}")

    def unknown(self, where: str, suggestion: str, given: _Given | None = None) -> None:
        self.warnings.append(f"{self.prefix}{where}: unknown setting{_from(given)}{suggestion}")

    def raise_if_any(self, *, strict: bool) -> None:
        problems = self.problems + (self.warnings if strict else [])
        if problems:
            raise SettingsError(problems)


# -- the layers: each gives {table: {name: _Given}} ---------------------------------------------

_Layer = dict[str, dict[str, _Given]]


def _config_path(config_file: Path | None, env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The file to read, and how it was named (for the "not found" message)."""
    if config_file is not None:
        return config_file, ""
    named = env.get(CONFIG_ENV_VAR, "")
    return (Path(named), f" (from {CONFIG_ENV_VAR})") if named else (None, "")


def _read_toml(path: Path, named_by: str, report: _Report) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        report.problems.append(f"{path}: config file not found{named_by}")
    except tomllib.TOMLDecodeError as exc:
        report.problems.append(f"{path}: invalid TOML: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        report.problems.append(f"{path}: cannot read the config file: {exc}")
    return {}


def _file_layer(path: Path | None, named_by: str, report: _Report) -> _Layer:
    if path is None:
        return {}
    layer: _Layer = {}
    for table, body in _read_toml(path, named_by, report).items():
        if table not in _TABLES:
            _unknown_top_level(table, body, report)
        elif not isinstance(body, dict):
            report.problem(f"[{table}]", f"expected a table, got {_show(body)}")
        else:
            layer[table] = {name: _Given(v, Source.FILE, str(path)) for name, v in body.items()}
    return layer


def _unknown_top_level(name: str, body: object, report: _Report) -> None:
    """A misspelt table (``[servr]``) or a key outside its table (``port = 1``)."""
    keys = {f.name: f"[{table}].{f.name}" for table, cls in _TABLES.items() for f in fields(cls)}
    tables = {table: f"[{table}]" for table in _TABLES}
    if isinstance(body, dict):
        report.unknown(f"[{name}]", _did_you_mean(name, tables))
    else:
        report.unknown(name, _did_you_mean(name, keys | tables))


def _env_layer(env: Mapping[str, str], report: _Report) -> _Layer:
    layer: _Layer = {}
    for table, cls in _TABLES.items():
        for name, spec in _specs(cls).items():
            variable = env_var_name(f"{table}.{name}")
            if variable not in env:
                continue
            given = _Given(env[variable], Source.ENV, variable)
            if spec.from_env is None:
                report.problem(f"[{table}].{name}", "can only be set in the config file", given)
                continue
            layer.setdefault(table, {})[name] = given._replace(value=spec.from_env(env[variable]))
    _warn_unknown_variables(env, report)
    return layer


def _warn_unknown_variables(env: Mapping[str, str], report: _Report) -> None:
    """Warn about ``HIVECTL_SERVER_PROT``: a variable that starts like a table but names no key."""
    known = {env_var_name(key): env_var_name(key) for key in setting_keys()}
    prefixes = tuple(env_var_name(table) + "_" for table in _TABLES)
    for variable in env:
        if variable.startswith(prefixes) and variable not in known:
            report.warnings.append(f"{variable}: unknown setting{_did_you_mean(variable, known)}")


def _override_layer(
    overrides: Mapping[str, object], labels: Mapping[str, str], report: _Report
) -> _Layer:
    """Overrides come from code (the CLI), so an unknown key is an error, not a warning."""
    known = {key: f'"{key}"' for key in setting_keys()}
    layer: _Layer = {}
    for key, value in overrides.items():
        table, _, name = key.partition(".")
        given = _Given(value, Source.OVERRIDE, labels.get(key) or "--" + name.replace("_", "-"))
        if key in known:
            layer.setdefault(table, {})[name] = given
        else:
            report.problem(f'"{key}"', f"unknown setting{_did_you_mean(key, known)}", given)
    return layer


def _merge(*layers: _Layer) -> _Layer:
    merged: _Layer = {}
    for layer in layers:
        for table, given in layer.items():
            merged.setdefault(table, {}).update(given)
    _one_secret(merged.get("auth", {}))
    return merged


_RANKS = {source: rank for rank, source in enumerate(Source)}


def _one_secret(auth: dict[str, _Given]) -> None:
    """``secret`` and ``secret_file`` from different layers: keep the higher layer's, as the
    precedence says (``HIVECTL_AUTH_SECRET`` over a file's ``secret_file``, a flag's
    ``--secret-file`` over ``HIVECTL_AUTH_SECRET``). From one layer, both stay: an error."""
    secret, secret_file = auth.get("secret"), auth.get("secret_file")
    if secret is None or secret_file is None or not secret.value or not secret_file.value:
        return
    if _RANKS[secret.source] != _RANKS[secret_file.source]:
        lower = "secret" if _RANKS[secret.source] < _RANKS[secret_file.source] else "secret_file"
        del auth[lower]


# -- conversion ----------------------------------------------------------------------------------


def _build(cls: type[T], given: Mapping[str, _Given], where: str, report: _Report) -> T:
    """An instance of the dataclass `cls` from the given values; a bad value keeps its default
    (and is reported), an unknown name is reported with a suggestion."""
    specs = _specs(cls)
    values: dict[str, object] = {}
    for name, item in given.items():
        spec = specs.get(name)
        if spec is None:
            candidates = {known: f"{where}.{known}" for known in specs}
            report.unknown(f"{where}.{name}", _did_you_mean(name, candidates), item)
        elif spec.item is not None:
            values[name] = _build_entries(spec.item, item, f"{where}.{name}", report)
        else:
            try:
                values[name] = spec.convert(item.value)
            except _Invalid as exc:
                reason = f"expected {exc.expected}" if spec.secret else str(exc)
                report.problem(f"{where}.{name}", reason, item)
    return cls(**values)


def _build_entries(cls: type[T], given: _Given, where: str, report: _Report) -> tuple[T, ...]:
    """A list of tables (``[[auth.keys]]``), each entry built like a table."""
    entries = given.value
    if not isinstance(entries, list | tuple) or not all(isinstance(e, dict) for e in entries):
        report.problem(where, "expected a list of tables", given)
        return ()
    return tuple(
        _build(cls, {k: given._replace(value=v) for k, v in entry.items()}, f"{where}[{i}]", report)
        for i, entry in enumerate(entries)
    )


def _build_settings(merged: _Layer, report: _Report) -> Settings:
    tables = {
        table: _build(cls, merged.get(table, {}), f"[{table}]", report)
        for table, cls in _TABLES.items()
    }
    return Settings(**tables)


# -- checks across fields ----------------------------------------------------------------------


def _check_auth(auth: AuthSettings, given: Mapping[str, _Given], report: _Report) -> None:
    if auth.secret and auth.secret_file:
        report.problem(
            "[auth].secret_file",
            "set together with [auth].secret in the same place; use one of them",
            given.get("secret"),
            given.get("secret_file"),
        )
    if auth.algorithm != "HS256" and not (auth.public_key_file or auth.keys):
        report.problem(
            "[auth].algorithm",
            f"{auth.algorithm} needs [auth].public_key_file (or [[auth.keys]])",
            given.get("algorithm"),
        )
    seen: set[str] = set()
    for i, key in enumerate(auth.keys):
        for reason in _key_problems(key, seen):
            report.problem(f"[auth].keys[{i}]", reason, given.get("keys"))
        seen.add(key.kid)


def _key_problems(key: KeySettings, seen_kids: set[str]) -> list[str]:
    problems = []
    if not key.kid:
        problems.append("kid is missing")
    elif key.kid in seen_kids:
        problems.append(f"kid {_show(key.kid)} is used twice")
    if key.secret and key.secret_file:
        problems.append("secret and secret_file are both set; use one of them")
    if key.algorithm == "HS256" and not (key.secret or key.secret_file):
        problems.append("HS256 needs secret or secret_file")
    if key.algorithm != "HS256" and not key.public_key_file:
        problems.append(f"{key.algorithm} needs public_key_file")
    return problems


def _check_server(server: ServerSettings, given: Mapping[str, _Given], report: _Report) -> None:
    if bool(server.tls_cert) != bool(server.tls_key):
        named, missing = ("tls_cert", "tls_key") if server.tls_cert else ("tls_key", "tls_cert")
        report.problem(
            f"[server].{missing}",
            f"needed with [server].{named}: TLS takes a certificate and its key",
            given.get(named),
        )
    if server.api_enabled and server.port and server.api_port == server.port:
        report.problem(
            "[server].api_port",
            f"must differ from [server].port ({server.port}); 0 picks a free port",
            given.get("api_port"),
            given.get("port"),
        )


def _check_cluster(cluster: ClusterSettings, given: Mapping[str, _Given], report: _Report) -> None:
    if cluster.lease_interval >= cluster.lease_ttl:
        report.problem(
            "[cluster].lease_interval",
            f"must be shorter than [cluster].lease_ttl ({format_duration(cluster.lease_ttl)})",
            given.get("lease_interval"),
            given.get("lease_ttl"),
        )


# -- the one function --------------------------------------------------------------------------


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] = {},
    overrides: Mapping[str, object] = {},
    override_labels: Mapping[str, str] = {},
    strict: bool = False,
) -> LoadedSettings:
    """Defaults < TOML file < ``HIVECTL_*`` environment < overrides, validated as a whole.

    `overrides` are dotted keys (``{"server.port": 0}``), typically from command-line flags;
    `override_labels` names the flag of each (``{"log.level": "--log-level"}``) for `sources`
    and messages, defaulting to ``--`` and the key's last part (``"--port"``).
    Raises `SettingsError` listing every problem (and, when `strict`, every warning).
    """
    path, named_by = _config_path(config_file, env)
    report = _Report(path)
    merged = _merge(
        _file_layer(path, named_by, report),
        _env_layer(env, report),
        _override_layer(overrides, override_labels, report),
    )
    settings = _build_settings(merged, report)
    _check_server(settings.server, merged.get("server", {}), report)
    _check_auth(settings.auth, merged.get("auth", {}), report)
    _check_cluster(settings.cluster, merged.get("cluster", {}), report)
    report.raise_if_any(strict=strict)
    return LoadedSettings(settings, _sources(merged), report.warnings, path)


def _sources(merged: _Layer) -> dict[str, tuple[Source, str]]:
    sources = {}
    for key in setting_keys():
        table, _, name = key.partition(".")
        given = merged.get(table, {}).get(name)
        sources[key] = (given.source, given.label) if given is not None else (Source.DEFAULT, "")
    return sources


# -- back to TOML --------------------------------------------------------------------------------


def settings_as_dict(settings: Settings, *, redact: bool = True) -> dict[str, Any]:
    """The settings as a TOML-ready dict (durations and sizes as strings, lists as lists);
    a set secret shows as ``"***"`` unless `redact` is False."""
    return {f.name: _table_as_dict(getattr(settings, f.name), redact) for f in fields(settings)}


def _table_as_dict(table: DataclassInstance, redact: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for f in fields(table):
        value = getattr(table, f.name)
        spec = _spec(f)
        if spec.item is not None:
            result[f.name] = [_table_as_dict(entry, redact) for entry in value]
        elif spec.secret and redact and value:
            result[f.name] = REDACTED
        else:
            result[f.name] = spec.to_toml(value)
    return result
