"""Settings: precedence, validation messages, formats, the example file and round trips."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.settings import (
    KeySettings,
    Settings,
    SettingsError,
    Source,
    env_var_name,
    format_duration,
    format_size,
    load_settings,
    parse_duration,
    parse_size,
    setting_keys,
    settings_as_dict,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hivectl.toml"
    path.write_text(text)
    return path


def value_of(settings: Settings, key: str) -> Any:
    table, name = key.split(".")
    return getattr(getattr(settings, table), name)


def problems_of(**kwargs: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(**kwargs)
    return caught.value.problems


# -- precedence ---------------------------------------------------------------------------------

# key -> (value in the file, text in the environment, override value, flag), then the value
# each layer should produce: default, file, env, override.
PRECEDENCE = {
    "server.host": (
        ('"file.example"', "env.example", "flag.example", "--host"),
        ("127.0.0.1", "file.example", "env.example", "flag.example"),
    ),
    "server.port": (
        ("1001", "1002", 1003, "--port"),
        (8765, 1001, 1002, 1003),
    ),
    "limits.ping_interval": (
        ('"1s"', "2s", "3s", "--ping-interval"),
        (10.0, 1.0, 2.0, 3.0),
    ),
}
LAYERS = [Source.DEFAULT, Source.FILE, Source.ENV, Source.OVERRIDE]


@pytest.mark.parametrize("top", LAYERS, ids=lambda source: source.name.lower())
@pytest.mark.parametrize("key", list(PRECEDENCE))
def test_each_layer_overrides_the_one_below(tmp_path: Path, key: str, top: Source) -> None:
    (in_file, in_env, override, flag), expected = PRECEDENCE[key]
    table, name = key.split(".")
    rank = LAYERS.index(top)
    path = write_toml(tmp_path, f"[{table}]\n{name} = {in_file}\n") if rank >= 1 else None
    env = {env_var_name(key): in_env} if rank >= 2 else {}
    overrides = {key: override} if rank >= 3 else {}

    loaded = load_settings(config_file=path, env=env, overrides=overrides)

    assert value_of(loaded.settings, key) == expected[rank]
    labels = ["", str(path), env_var_name(key), flag]
    assert loaded.sources[key] == (top, labels[rank])


def test_a_layer_replaces_only_the_keys_it_sets(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[server]\nhost = "0.0.0.0"\nport = 1001\n')
    loaded = load_settings(
        config_file=path, env={"HIVECTL_SERVER_PORT": "1002"}, overrides={"log.level": "debug"}
    )
    assert loaded.settings.server.host == "0.0.0.0"
    assert loaded.settings.server.port == 1002
    assert loaded.settings.log.level == "debug"
    assert loaded.sources["server.host"] == (Source.FILE, str(path))
    assert loaded.sources["server.port"] == (Source.ENV, "HIVECTL_SERVER_PORT")
    assert loaded.sources["log.level"] == (Source.OVERRIDE, "--level")
    assert loaded.sources["limits.burst"] == (Source.DEFAULT, "")


def test_override_labels_name_the_flag() -> None:
    loaded = load_settings(overrides={"log.level": "debug"}, override_labels={"log.level": "-L"})
    assert loaded.sources["log.level"] == (Source.OVERRIDE, "-L")


def test_the_config_file_comes_from_hivectl_config_unless_given(tmp_path: Path) -> None:
    named = write_toml(tmp_path, "[server]\nport = 1001\n")
    given = tmp_path / "given.toml"
    given.write_text("[server]\nport = 1002\n")

    from_env = load_settings(env={"HIVECTL_CONFIG": str(named)})
    assert from_env.settings.server.port == 1001
    assert from_env.config_file == named

    explicit = load_settings(config_file=given, env={"HIVECTL_CONFIG": str(named)})
    assert explicit.settings.server.port == 1002
    assert explicit.config_file == given

    assert load_settings().config_file is None


def test_a_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert problems_of(config_file=missing) == [f"{missing}: config file not found"]
    assert problems_of(env={"HIVECTL_CONFIG": str(missing)}) == [
        f"{missing}: config file not found (from HIVECTL_CONFIG)"
    ]


def test_toml_syntax_errors_carry_line_and_column(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nport = \n")
    (problem,) = problems_of(config_file=path)
    assert problem.startswith(f"{path}: invalid TOML: ")
    assert "line 2, column" in problem


# -- problems name the key and the source -------------------------------------------------------


def test_problem_message_format(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "")
    assert problems_of(config_file=path, env={"HIVECTL_SERVER_PORT": "80a"}) == [
        f'{path}: [server].port: expected an integer from 0 to 65535, got "80a"'
        " (from HIVECTL_SERVER_PORT)"
    ]


@pytest.mark.parametrize(
    ("layer", "source"),
    [("file", "{path}: "), ("env", "(from HIVECTL_SERVER_PORT)"), ("override", "(from --port)")],
)
def test_a_problem_names_the_key_and_its_source(tmp_path: Path, layer: str, source: str) -> None:
    if layer == "file":
        (problem,) = problems_of(config_file=write_toml(tmp_path, '[server]\nport = "80a"\n'))
    elif layer == "env":
        (problem,) = problems_of(env={"HIVECTL_SERVER_PORT": "80a"})
    else:
        (problem,) = problems_of(overrides={"server.port": "80a"})
    assert "[server].port: " in problem
    assert source.format(path=tmp_path / "hivectl.toml") in problem


def test_every_value_is_validated_and_every_problem_reported() -> None:
    not_a_setting = {"a": "table"}
    problems = problems_of(overrides=dict.fromkeys(setting_keys(), not_a_setting))
    assert len(problems) == len(setting_keys())
    for key, problem in zip(setting_keys(), problems, strict=True):
        table, name = key.split(".")
        assert problem.startswith(f"[{table}].{name}: expected ")
        assert problem.endswith(f"(from --{name.replace('_', '-')})")


@pytest.mark.parametrize(
    ("key", "bad", "expected"),
    [
        ("server.port", 65536, "an integer from 0 to 65535"),
        ("server.api_port", -1, "an integer from 0 to 65535"),
        ("server.port", True, "an integer from 0 to 65535"),
        ("server.api_enabled", "yes", "true or false"),
        ("server.shutdown_timeout", "10x", 'a duration like "10s"'),
        ("auth.algorithm", "none", 'one of "HS256", "RS256", "ES256"'),
        ("auth.leeway", -1, 'a duration like "10s"'),
        ("presence.grace", "soon", 'a duration like "10s"'),
        ("limits.max_message_size", "0B", 'a positive size like "64KiB"'),
        ("limits.send_queue_bytes", "4 MiBs", 'a positive size like "64KiB"'),
        ("limits.max_messages_per_frame", 0, "an integer of at least 1"),
        ("limits.burst", 2.5, "an integer of at least 1"),
        ("limits.max_subscriptions", -1, "an integer of at least 0"),
        ("limits.auth_timeout", "0s", 'a positive duration like "10s"'),
        ("limits.ping_interval", "-1s", 'a duration like "10s"'),
        ("limits.allowed_origins", ["https://a.example", 1], "a list of strings"),
        ("limits.compression", "gzip", 'one of "none", "deflate"'),
        ("storage.backend", "postgres", 'one of "sqlite", "memory"'),
        ("storage.batch_window", math.nan, 'a duration like "10s"'),
        ("cluster.replicas", 6, "an integer from 1 to 5"),
        ("cluster.stream", "HIVE.LOG", "a stream name"),
        ("cluster.lease_ttl", 0, 'a positive duration like "10s"'),
        ("log.level", "verbose", 'one of "debug", "info", "warning", "error"'),
        ("client.url", "http://127.0.0.1:8765/ws", 'a "ws://" or "wss://" URL'),
        ("auth.keys", {"kid": "a"}, "a list of tables"),
    ],
)
def test_bad_values_are_explained(key: str, bad: object, expected: str) -> None:
    (problem,) = problems_of(overrides={key: bad})
    table, name = key.split(".")
    assert problem.startswith(f"[{table}].{name}: expected {expected}")


def test_choices_ignore_case_and_come_back_canonical() -> None:
    settings = load_settings(env={"HIVECTL_LOG_LEVEL": "DEBUG", "HIVECTL_AUTH_ALGORITHM": "hs256"})
    assert settings.settings.log.level == "debug"
    assert settings.settings.auth.algorithm == "HS256"


def test_a_bad_secret_is_not_echoed() -> None:
    (problem,) = problems_of(overrides={"auth.secret": 123456789})
    assert problem == "[auth].secret: expected a string (from --secret)"


# -- the environment -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("no", False), ("False", False)],
)
def test_environment_booleans(text: str, expected: bool) -> None:
    loaded = load_settings(env={"HIVECTL_SERVER_API_ENABLED": text})
    assert loaded.settings.server.api_enabled is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://a.example, https://b.example", ("https://a.example", "https://b.example")),
        ('["https://a.example", "https://b.example"]', ("https://a.example", "https://b.example")),
        ("https://a.example", ("https://a.example",)),
        ("", ()),
    ],
)
def test_environment_lists(text: str, expected: tuple[str, ...]) -> None:
    loaded = load_settings(env={"HIVECTL_LIMITS_ALLOWED_ORIGINS": text})
    assert loaded.settings.limits.allowed_origins == expected


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("HIVECTL_SERVER_API_ENABLED", "maybe"),
        ("HIVECTL_LIMITS_ALLOWED_ORIGINS", '["unclosed"'),
        ("HIVECTL_LIMITS_ALLOWED_ORIGINS", "[1, 2]"),
        ("HIVECTL_LIMITS_BURST", "many"),
    ],
)
def test_bad_environment_values(variable: str, text: str) -> None:
    (problem,) = problems_of(env={variable: text})
    assert problem.endswith(f"(from {variable})")


def test_auth_keys_come_only_from_the_file() -> None:
    assert problems_of(env={"HIVECTL_AUTH_KEYS": "[]"}) == [
        "[auth].keys: can only be set in the config file (from HIVECTL_AUTH_KEYS)"
    ]


def test_env_var_names() -> None:
    assert env_var_name("server.port") == "HIVECTL_SERVER_PORT"
    assert env_var_name("limits.ping_interval") == "HIVECTL_LIMITS_PING_INTERVAL"


# -- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("[server]\nprot = 1\n", "[server].prot: unknown setting, did you mean [server].port?"),
        ("[servr]\nport = 1\n", "[servr]: unknown setting, did you mean [server]?"),
        ("port = 1\n", "port: unknown setting, did you mean [server].port?"),
        (
            '[[auth.keys]]\nkid = "a"\nsecret_file = "k"\nkidd = "b"\n',
            "[auth].keys[0].kidd: unknown setting, did you mean [auth].keys[0].kid?",
        ),
    ],
)
def test_unknown_file_keys_warn_and_fail_when_strict(
    tmp_path: Path, text: str, warning: str
) -> None:
    path = write_toml(tmp_path, text)
    assert load_settings(config_file=path).warnings == [f"{path}: {warning}"]
    assert problems_of(config_file=path, strict=True) == [f"{path}: {warning}"]


def test_unknown_setting_variables_warn() -> None:
    env = {"HIVECTL_SERVER_PROT": "1", "HIVECTL_CONFIG": "", "HIVECTL_OTHER_THING": "x"}
    assert load_settings(env=env).warnings == [
        "HIVECTL_SERVER_PROT: unknown setting, did you mean HIVECTL_SERVER_PORT?"
    ]
    assert len(problems_of(env=env, strict=True)) == 1


def test_unknown_overrides_are_errors() -> None:
    assert problems_of(overrides={"server.prot": 1}) == [
        '"server.prot": unknown setting, did you mean "server.port"? (from --prot)'
    ]


# -- checks across fields ----------------------------------------------------------------------


def test_public_key_algorithms_need_a_public_key() -> None:
    assert problems_of(env={"HIVECTL_AUTH_ALGORITHM": "RS256"}) == [
        "[auth].algorithm: RS256 needs [auth].public_key_file (or [[auth.keys]])"
        " (from HIVECTL_AUTH_ALGORITHM)"
    ]
    loaded = load_settings(
        env={"HIVECTL_AUTH_ALGORITHM": "ES256", "HIVECTL_AUTH_PUBLIC_KEY_FILE": "key.pub.pem"}
    )
    assert loaded.settings.auth.public_key_file == "key.pub.pem"


def test_secret_and_secret_file_in_one_layer_are_an_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[auth]\nsecret = "s"\nsecret_file = "secret.txt"\n')
    assert problems_of(config_file=path) == [
        f"{path}: [auth].secret_file: set together with [auth].secret in the same place;"
        " use one of them"
    ]
    env = {"HIVECTL_AUTH_SECRET": "s", "HIVECTL_AUTH_SECRET_FILE": "secret.txt"}
    assert len(problems_of(env=env)) == 1


def test_the_higher_layer_of_secret_and_secret_file_wins(tmp_path: Path) -> None:
    """The documented precedence: what `config init` writes (a secret_file) gives way to
    HIVECTL_AUTH_SECRET, which gives way to a --secret-file flag."""
    path = write_toml(tmp_path, '[auth]\nsecret_file = "secret.txt"\n')
    loaded = load_settings(config_file=path, env={"HIVECTL_AUTH_SECRET": "from-env"})
    assert (loaded.settings.auth.secret, loaded.settings.auth.secret_file) == ("from-env", "")
    assert loaded.sources["auth.secret"] == (Source.ENV, "HIVECTL_AUTH_SECRET")
    assert loaded.sources["auth.secret_file"] == (Source.DEFAULT, "")
    flagged = load_settings(
        config_file=path,
        env={"HIVECTL_AUTH_SECRET": "from-env"},
        overrides={"auth.secret_file": "flag.secret"},
    )
    assert (flagged.settings.auth.secret, flagged.settings.auth.secret_file) == ("", "flag.secret")
    path = write_toml(tmp_path, '[auth]\nsecret = "in-file"\n')
    env_file = load_settings(config_file=path, env={"HIVECTL_AUTH_SECRET_FILE": "env.secret"})
    assert (env_file.settings.auth.secret, env_file.settings.auth.secret_file) == ("", "env.secret")


def test_rotation_keys_are_checked(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[auth]\nalgorithm = "ES256"\n'
        '[[auth.keys]]\nkid = "new"\nalgorithm = "ES256"\npublic_key_file = "new.pem"\n'
        '[[auth.keys]]\nkid = "new"\nsecret = "a"\nsecret_file = "b"\n'
        "[[auth.keys]]\n"
        '[[auth.keys]]\nkid = "old"\nalgorithm = "RS256"\n',
    )
    assert problems_of(config_file=path) == [
        f'{path}: [auth].keys[1]: kid "new" is used twice',
        f"{path}: [auth].keys[1]: secret and secret_file are both set; use one of them",
        f"{path}: [auth].keys[2]: kid is missing",
        f"{path}: [auth].keys[2]: HS256 needs secret or secret_file",
        f"{path}: [auth].keys[3]: RS256 needs public_key_file",
    ]


def test_valid_rotation_keys_load(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[[auth.keys]]\nkid = "a"\nsecret_file = "a.secret"\n'
        '[[auth.keys]]\nkid = "b"\nalgorithm = "ES256"\npublic_key_file = "b.pem"\n',
    )
    loaded = load_settings(config_file=path)
    assert loaded.settings.auth.keys == (
        KeySettings(kid="a", secret_file="a.secret"),
        KeySettings(kid="b", algorithm="ES256", public_key_file="b.pem"),
    )
    assert loaded.sources["auth.keys"] == (Source.FILE, str(path))


def test_the_api_port_must_differ_from_the_websocket_port() -> None:
    assert problems_of(overrides={"server.port": 9000, "server.api_port": 9000}) == [
        "[server].api_port: must differ from [server].port (9000); 0 picks a free port"
        " (from --api-port, --port)"
    ]
    load_settings(overrides={"server.port": 0, "server.api_port": 0})
    same_port_no_api = {"server.port": 9000, "server.api_port": 9000, "server.api_enabled": False}
    load_settings(overrides=same_port_no_api)


def test_the_lease_is_renewed_before_it_expires() -> None:
    (problem,) = problems_of(env={"HIVECTL_CLUSTER_LEASE_INTERVAL": "5s"})
    assert problem == (
        "[cluster].lease_interval: must be shorter than [cluster].lease_ttl (5s)"
        " (from HIVECTL_CLUSTER_LEASE_INTERVAL)"
    )


def test_all_problems_are_collected_before_raising(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[server]\nport = "x"\nhost = 1\n[log]\nlevel = "loud"\n')
    problems = problems_of(
        config_file=path,
        env={"HIVECTL_LIMITS_BURST": "0", "HIVECTL_AUTH_ALGORITHM": "RS256"},
        overrides={"storage.backend": "disk"},
    )
    assert len(problems) == 6
    with pytest.raises(SettingsError, match=r"\[log\]\.level") as caught:
        load_settings(config_file=path)
    assert str(caught.value) == "\n".join(caught.value.problems)


# -- durations and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("0.1s", 0.1),
        ("2 m", 120.0),
        ("45", 45.0),
        (10, 10.0),
        (0.5, 0.5),
        ("0s", 0.0),
        ("1h30m", 5400.0),
        ("2m30s", 150.0),
        ("1d2h", 93600.0),
        ("1m0.5s", 60.5),
        ("1h 30m", 5400.0),
        ("1s500ms", 1.5),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        *("", "s", "10x", "5min", "-5s", "1e3s", "ten", ".5s", -1, math.inf, True, None, [1]),
        *("30m1h", "1h1h", "1h30", "h30m", "-1h30m", "1h-30m", "1hm"),
    ],
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 65536),
        ("1MiB", 1048576),
        ("1GiB", 1073741824),
        ("512B", 512),
        ("1KB", 1000),
        ("2MB", 2_000_000),
        ("1.5KiB", 1536),
        ("4096", 4096),
        (4096, 4096),
        ("0", 0),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "64kib", "1.5B", "KiB", "-1KiB", "1 TiB", -1, 1.5, True])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (10.0, "10s"), (90, "90s"), (300, "5m"), (86400, "1d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0B"), (512, "512B"), (1000, "1000B"), (65536, "64KiB"), (2**30, "1GiB")]
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False))
def test_durations_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**50))
def test_sizes_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


# -- the example config file --------------------------------------------------------------------


def documented_keys(lines: list[str]) -> dict[str, list[str]]:
    """Each key the example documents -> the comment lines that describe it.

    A key is documented by a ``name = value`` line in its table with a comment block just
    above it, or (when deliberately left out) by a ``# name: ...`` comment line.
    """
    found: dict[str, list[str]] = {}
    table = ""
    for number, line in enumerate(lines):
        if header := re.fullmatch(r"\[(\w+)\]", line):
            table = header[1]
        elif assignment := re.fullmatch(r"(\w+) = .*", line):
            comments: list[str] = []
            for above in reversed(lines[:number]):
                if not above.startswith("# "):
                    break
                comments.insert(0, above)
            found[f"{table}.{assignment[1]}"] = comments
        elif table and (left_out := re.fullmatch(r"# (\w+): .*", line)):
            found[f"{table}.{left_out[1]}"] = [line]
    return found


def test_the_example_documents_every_setting() -> None:
    documented = documented_keys(EXAMPLE.read_text().splitlines())
    for key in setting_keys():
        assert key in documented, f"config.example.toml does not document {key}"
        assert any("Default" in line for line in documented[key]), f"{key}: no default stated"
    assert set(documented) == set(setting_keys())


def test_the_example_parses_and_loads_to_the_defaults() -> None:
    with EXAMPLE.open("rb") as file:
        tomllib.load(file)
    loaded = load_settings(config_file=EXAMPLE, strict=True)
    assert loaded.warnings == []
    assert loaded.settings == Settings()
    from_file = {key for key, (source, _) in loaded.sources.items() if source is Source.FILE}
    assert from_file == set(setting_keys()) - {"auth.secret", "auth.keys", "limits.rates"}


def test_the_example_leaves_the_secret_out_and_its_rotation_keys_work(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert "HIVECTL_AUTH_SECRET" in text
    assert "# [[auth.keys]]" in text
    uncommented = re.sub(r"^# (\[\[\w+\.\w+\]\]|\w+ = .*)$", r"\1", text, flags=re.MULTILINE)
    loaded = load_settings(config_file=write_toml(tmp_path, uncommented), strict=True)
    assert [key.kid for key in loaded.settings.auth.keys] == ["2026-11"]
    assert [rate.sub for rate in loaded.settings.limits.rates] == ["bridge-*"]


# -- back to TOML ------------------------------------------------------------------------------

CUSTOM = {
    "server.host": "0.0.0.0",
    "server.port": 9000,
    "server.api_enabled": False,
    "server.shutdown_timeout": "1.5s",
    "auth.secret": "s3cret-value",
    "auth.leeway": 0.1,
    "auth.keys": [
        {"kid": "a", "secret": "key-secret"},
        {"kid": "b", "algorithm": "ES256", "public_key_file": "b.pem"},
    ],
    "presence.grace": "2m",
    "limits.max_message_size": "1.5KiB",
    "limits.send_queue_bytes": 1000,
    "limits.allowed_origins": ["https://a.example"],
    "limits.ping_interval": 7.25,
    "limits.compression": "deflate",
    "storage.backend": "memory",
    "storage.batch_window": "250ms",
    "cluster.replicas": 3,
    "client.token": "client-token",
}


@pytest.mark.parametrize("overrides", [{}, CUSTOM], ids=["defaults", "custom"])
def test_settings_as_dict_round_trips(tmp_path: Path, overrides: dict[str, object]) -> None:
    settings = load_settings(overrides=overrides).settings
    path = tmp_path / "written.toml"
    path.write_text(tomli_w.dumps(settings_as_dict(settings, redact=False)))
    reloaded = load_settings(config_file=path, strict=True)
    assert reloaded.settings == settings
    assert reloaded.warnings == []


def test_settings_as_dict_writes_durations_and_sizes_as_strings() -> None:
    as_dict = settings_as_dict(Settings())
    assert as_dict["server"]["shutdown_timeout"] == "10s"
    assert as_dict["limits"]["max_message_size"] == "64KiB"
    assert as_dict["storage"]["batch_window"] == "10ms"
    assert as_dict["limits"]["allowed_origins"] == []


def test_secrets_are_redacted() -> None:
    settings = load_settings(overrides=CUSTOM).settings
    redacted = settings_as_dict(settings)
    assert redacted["auth"]["secret"] == "***"
    assert redacted["auth"]["keys"][0]["secret"] == "***"
    assert redacted["auth"]["keys"][1]["secret"] == ""
    assert redacted["client"]["token"] == "***"
    for secret in ("s3cret-value", "key-secret", "client-token"):
        assert secret not in repr(redacted)
    assert settings_as_dict(Settings())["auth"]["secret"] == ""
    assert settings_as_dict(settings, redact=False)["auth"]["secret"] == "s3cret-value"


def test_setting_keys_lists_every_key_once() -> None:
    keys = setting_keys()
    assert len(keys) == len(set(keys))
    assert {"server.port", "limits.ping_interval", "auth.keys", "client.token_file"} <= set(keys)
    assert len(keys) == sum(len(table) for table in settings_as_dict(Settings()).values())
