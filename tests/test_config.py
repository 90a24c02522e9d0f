"""clawstate.config: file < environment < arguments, and every error naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from clawstate import config as config_module
from clawstate.config import (
    ENV_VARS,
    MAX_TTL_SECONDS,
    NON_CONFIG_ENV_VARS,
    Config,
    Limits,
    NamespacePolicy,
    check_namespace_name,
    load_config,
    parse_duration,
    parse_size,
    parse_url,
    validate_namespace_options,
)
from clawstate.errors import ConfigError, InvalidRequest

FULL = """
[store]
url = "sqlite:////var/lib/app/state.db"
durability = "power"
idempotency_window = "24h"
sweep_interval = "60s"
changelog_retention = "7d"

[keyring]
source = "file:/etc/clawstate/keys.json"

[limits]
max_value_bytes = "16MiB"
max_key_bytes = 512
max_batch = 200

[namespaces.carts]
serializer = "json"
compress_above = "4KiB"
encrypt = true
default_ttl = "30m"

[namespaces."*"]
serializer = "msgpack"
changelog_values = true
"""


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in an empty working directory, so no clawstate.toml is picked up."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(text: str, **kwargs: Any) -> ConfigError:
    """The ConfigError loading ``text`` as clawstate.toml raises."""
    path = write(Path.cwd() / "clawstate.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=kwargs.pop("env", {}), **kwargs)
    return caught.value


# --------------------------------------------------------------------------- defaults


def test_defaults_without_a_file_resolve_against_the_cwd() -> None:
    cfg = load_config(env={})
    cwd = Path.cwd()
    assert cfg.url == f"sqlite:///{(cwd / '.clawstate' / 'state.db').as_posix()}"
    assert cfg.keyring == f"file:{(cwd / '.clawstate' / 'keyring.json').as_posix()}"
    assert cfg.durability == "process"
    assert cfg.idempotency_window == 86400
    assert cfg.sweep_interval == 60
    assert cfg.changelog_retention == 7 * 86400
    assert cfg.limits == Limits()
    assert cfg.namespaces == {}
    assert cfg.default_namespace == NamespacePolicy()
    assert cfg.source is None


def test_default_records() -> None:
    limits = Limits()
    assert limits.max_key_bytes == 1024
    assert limits.max_value_bytes == 16 * 1024 * 1024
    assert limits.max_batch == 1000
    assert limits.max_query_depth == 8
    assert limits.max_query_limit == 10_000
    assert limits.default_query_limit == 1_000
    assert limits.max_namespace_len == 128
    assert limits.max_ttl_seconds == 10 * 365 * 86400
    policy = NamespacePolicy()
    assert (policy.serializer, policy.compress_above, policy.compression_level) == (
        "msgpack",
        4096,
        3,
    )
    assert (policy.encrypt, policy.default_ttl, policy.changelog_values) == (False, None, False)
    cfg = Config()
    assert cfg.url == "sqlite:///.clawstate/state.db"  # built directly: nothing resolved
    assert cfg.keyring == "file:.clawstate/keyring.json"


def test_records_are_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.url = "memory://"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.limits.max_batch = 5  # type: ignore[misc]


# --------------------------------------------------------------------------- full file


def test_full_file() -> None:
    path = write(Path.cwd() / "conf" / "clawstate.toml", FULL)
    cfg = load_config(path, env={})
    assert cfg.source == str(path)
    assert cfg.url == "sqlite:////var/lib/app/state.db"
    assert cfg.durability == "power"
    assert cfg.idempotency_window == 86400.0
    assert cfg.sweep_interval == 60.0
    assert cfg.changelog_retention == 7 * 86400.0
    assert cfg.keyring == "file:/etc/clawstate/keys.json"
    assert cfg.limits == Limits(max_value_bytes=16 * 2**20, max_key_bytes=512, max_batch=200)

    default = cfg.default_namespace
    assert default == NamespacePolicy(serializer="msgpack", changelog_values=True)
    carts = cfg.policy_for("carts")
    assert carts.serializer == "json"
    assert carts.compress_above == 4096
    assert carts.encrypt is True
    assert carts.default_ttl == 1800.0
    assert carts.changelog_values is True  # inherited from [namespaces."*"]
    assert cfg.policy_for("sessions") is default
    assert "*" not in cfg.namespaces


def test_clawstate_toml_in_cwd_is_found() -> None:
    write(Path.cwd() / "clawstate.toml", '[store]\ndurability = "power"\n')
    cfg = load_config(env={})
    assert cfg.durability == "power"
    assert cfg.source == str(Path.cwd() / "clawstate.toml")


def test_clawstate_config_variable_names_the_file(tmp_path: Path) -> None:
    write(Path.cwd() / "clawstate.toml", '[store]\ndurability = "process"\n')
    other = write(tmp_path / "elsewhere.toml", '[store]\ndurability = "power"\n')
    assert load_config(env={"CLAWSTATE_CONFIG": str(other)}).durability == "power"
    # An explicit path wins over the variable.
    cwd_file = Path.cwd() / "clawstate.toml"
    assert load_config(cwd_file, env={"CLAWSTATE_CONFIG": str(other)}).durability == "process"


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_config_file_is_an_error(via_env: bool) -> None:
    with pytest.raises(ConfigError) as caught:
        if via_env:
            load_config(env={"CLAWSTATE_CONFIG": "nope.toml"})
        else:
            load_config("nope.toml", env={})
    assert caught.value.field == "config"
    assert "not found" in str(caught.value)
    assert ("CLAWSTATE_CONFIG" in str(caught.value)) is via_env


def test_directory_as_config_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not a file") as caught:
        load_config(Path.cwd(), env={})
    assert caught.value.field == "config"


def test_empty_file_gives_defaults() -> None:
    path = write(Path.cwd() / "clawstate.toml", "")
    cfg = load_config(path, env={})
    assert cfg.limits == Limits()
    assert cfg.default_namespace == NamespacePolicy()


# --------------------------------------------------------------------------- layering


def test_env_overrides_file() -> None:
    path = write(Path.cwd() / "clawstate.toml", FULL)
    env = {
        "CLAWSTATE_URL": "memory://",
        "CLAWSTATE_DURABILITY": "process",
        "CLAWSTATE_KEYRING": "file:/run/keys.json",
        "CLAWSTATE_IDEMPOTENCY_WINDOW": "1h",
        "CLAWSTATE_SWEEP_INTERVAL": "0",
        "CLAWSTATE_CHANGELOG_RETENTION": "2d",
        "CLAWSTATE_LIMITS_MAX_VALUE_BYTES": "1MiB",
        "CLAWSTATE_LIMITS_MAX_TTL_SECONDS": "30d",
        "CLAWSTATE_LIMITS_MAX_QUERY_LIMIT": "10_000",
        "CLAWSTATE_TOKEN": "not config, allowed",
    }
    cfg = load_config(path, env=env)
    assert cfg.url == "memory://"
    assert cfg.durability == "process"
    assert cfg.keyring == "file:/run/keys.json"
    assert cfg.idempotency_window == 3600
    assert cfg.sweep_interval == 0
    assert cfg.changelog_retention == 2 * 86400
    assert cfg.limits.max_value_bytes == 2**20
    assert cfg.limits.max_ttl_seconds == 30 * 86400
    assert cfg.limits.max_key_bytes == 512  # untouched file value survives
    assert cfg.policy_for("carts").serializer == "json"


def test_empty_env_variable_counts_as_unset() -> None:
    cfg = load_config(env={"CLAWSTATE_DURABILITY": "", "CLAWSTATE_CONFIG": ""})
    assert cfg.durability == "process"


def test_every_limit_has_an_env_variable() -> None:
    for name in Limits.__struct_fields__:
        assert ENV_VARS[f"CLAWSTATE_LIMITS_{name.upper()}"] == f"limits.{name}"


def test_arguments_override_env() -> None:
    path = write(Path.cwd() / "clawstate.toml", FULL)
    env = {"CLAWSTATE_DURABILITY": "process", "CLAWSTATE_LIMITS_MAX_BATCH": "10"}
    cfg = load_config(
        path,
        env=env,
        durability="power",
        url="memory://",
        idempotency_window=5,
        limits={"max_batch": 20},
        keyring=None,  # None means "not given"
    )
    assert cfg.durability == "power"
    assert cfg.url == "memory://"
    assert cfg.idempotency_window == 5.0
    assert cfg.limits.max_batch == 20
    assert cfg.limits.max_key_bytes == 512  # limits= merges over the lower layers
    assert cfg.keyring == "file:/etc/clawstate/keys.json"


def test_namespace_arguments_merge_option_by_option() -> None:
    path = write(Path.cwd() / "clawstate.toml", FULL)
    cfg = load_config(
        path,
        env={},
        namespaces={"carts": {"encrypt": False}, "*": {"compression_level": 9}, "new": {}},
    )
    carts = cfg.policy_for("carts")
    assert carts.encrypt is False  # argument wins
    assert carts.serializer == "json"  # file value kept
    assert carts.compression_level == 9  # new "*" default reaches file namespaces
    assert cfg.policy_for("new") == cfg.default_namespace
    assert cfg.default_namespace.changelog_values is True


def test_limits_instance_argument_replaces_all_limits() -> None:
    path = write(Path.cwd() / "clawstate.toml", FULL)
    cfg = load_config(path, env={}, limits=Limits(max_batch=7))
    assert cfg.limits == Limits(max_batch=7)


def test_namespace_policy_instance_argument() -> None:
    cfg = load_config(env={}, namespaces={"carts": NamespacePolicy(serializer="json")})
    assert cfg.policy_for("carts") == NamespacePolicy(serializer="json")


def test_unknown_argument() -> None:
    with pytest.raises(ConfigError, match="did you mean durability") as caught:
        load_config(env={}, durabilty="power")
    assert caught.value.field == "durabilty"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            '[namespaces.carts]\nserializer = "xml"',
            "namespaces.carts.serializer",
            'must be "msgpack" or "json", got "xml"',
        ),
        ("[limits]\nmax_value_bytes = -1", "limits.max_value_bytes", "must be a size > 0, got -1"),
        (
            '[namespaces.carts]\ncolour = "red"',
            "namespaces.carts.colour",
            "unknown option (known: serializer, compress_above, ",
        ),
        ('[store]\ndurability = "fast"', "store.durability", '"process" or "power"'),
        ("[store]\nurl = 5", "store.url", "must be a URL"),
        ('[store]\nurl = "mysql://h/db"', "store.url", 'unknown scheme "mysql"'),
        ('[store]\nurl = "sqlite:///:memory:"', "store.url", "per thread"),
        ('[store]\nidempotency_window = "soon"', "store.idempotency_window", "must be a duration"),
        ("[store]\nidempotency_window = 0", "store.idempotency_window", "> 0"),
        ("[store]\nsweep_interval = -1", "store.sweep_interval", ">= 0"),
        ('[store]\nchangelog_retention = "0s"', "store.changelog_retention", "> 0"),
        ("[store]\nsweep_interval = true", "store.sweep_interval", "got true"),
        ('[store]\nkeyring = "file:x"', "store.keyring", "unknown option"),
        ('[keyring]\nsource = "vault:x"', "keyring.source", 'must be "file:<path>"'),
        ('[keyring]\nsrc = "file:x"', "keyring.src", "unknown option"),
        ("[limits]\nmax_key_bytes = 2048", "limits.max_key_bytes", "<= 1024 bytes"),
        ('[limits]\nmax_key_bytes = "2KiB"', "limits.max_key_bytes", "may only be lowered"),
        ("[limits]\nmax_namespace_len = 129", "limits.max_namespace_len", "<= 128"),
        ('[limits]\nmax_ttl_seconds = "11y"', "limits.max_ttl_seconds", "<= 10y"),
        ("[limits]\nmax_batch = 0", "limits.max_batch", "must be a whole number > 0, got 0"),
        ("[limits]\nmax_batch = 1.5", "limits.max_batch", "whole number"),
        ("[limits]\nmax_query_depth = true", "limits.max_query_depth", "got true"),
        ('[limits]\nmax_value_bytes = "16 furlongs"', "limits.max_value_bytes", "units:"),
        ("[limits]\nmax_rows = 5", "limits.max_rows", "unknown option"),
        (
            "[limits]\nmax_query_limit = 100\ndefault_query_limit = 200",
            "limits.default_query_limit",
            "must be <= limits.max_query_limit (100), got 200",
        ),
        ("[namespaces.carts]\ncompress_above = true", "namespaces.carts.compress_above", "true"),
        ("[namespaces.carts]\ncompress_above = -1", "namespaces.carts.compress_above", ">= 0"),
        ("[namespaces.carts]\ncompression_level = 0", "namespaces.carts.compression_level", "1"),
        (
            "[namespaces.carts]\ncompression_level = 23",
            "namespaces.carts.compression_level",
            "from 1 to 22",
        ),
        ('[namespaces.carts]\nencrypt = "yes"', "namespaces.carts.encrypt", "true or false"),
        ("[namespaces.carts]\nencrypt = 1", "namespaces.carts.encrypt", "got 1"),
        ("[namespaces.carts]\nchangelog_values = 0", "namespaces.carts.changelog_values", "true"),
        ("[namespaces.carts]\ndefault_ttl = 0", "namespaces.carts.default_ttl", "> 0"),
        ('[namespaces.carts]\ndefault_ttl = "11y"', "namespaces.carts.default_ttl", "<= 10y"),
        (
            '[limits]\nmax_ttl_seconds = "1d"\n[namespaces.carts]\ndefault_ttl = "2d"',
            "namespaces.carts.default_ttl",
            "must be <= limits.max_ttl_seconds (1d), got 2d",
        ),
        ('[namespaces."*"]\nserializer = "xml"', 'namespaces."*".serializer', "msgpack"),
        ('[namespaces."bad name"]\nencrypt = true', 'namespaces."bad name"', "invalid namespace"),
        ('[namespaces."_system"]\nencrypt = true', "namespaces._system", "letter or digit"),
        (f"[namespaces.{'n' * 129}]\nencrypt = true", f"namespaces.{'n' * 129}", "129 characters"),
        (
            "[limits]\nmax_namespace_len = 4\n[namespaces.carts]\nencrypt = true",
            "namespaces.carts",
            "limits.max_namespace_len (4)",
        ),
        ("[namespaces.a.b]\nencrypt = true", "namespaces.a.b", 'quoted: [namespaces."a.b"]'),
        ("[namespaces]\ncarts = 1", "namespaces.carts", "must be a table"),
        ("store = 1", "store", "must be a table"),
        ("[storage]\nurl = 'memory://'", "storage", "unknown table (known: store, keyring"),
        ('url = "memory://"', "url", "did you mean store.url?"),
    ],
)
def test_errors_name_their_field(text: str, field: str, message: str) -> None:
    error = config_error(text)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert message in str(error)
    assert "clawstate.toml" in str(error) or field == "config"  # says where it came from


def test_error_is_a_config_error_with_problem_fields() -> None:
    error = config_error('[store]\ndurability = "fast"')
    assert error.to_problem()["title"] == "ConfigError"


@pytest.mark.parametrize(
    "text",
    ["[store]\nurl = ", "[store\n", '[store]\ndurability = "power"\ndurability = "process"\n'],
)
def test_toml_syntax_errors(text: str) -> None:
    error = config_error(text)
    assert error.field == "config"
    assert "invalid TOML" in str(error)


def test_toml_syntax_error_has_line_and_column() -> None:
    error = config_error('[store]\ndurability = "power"\nurl = = 1\n')
    assert error.field == "config"
    assert "line 3, column" in str(error)


def test_non_utf8_file() -> None:
    path = Path.cwd() / "clawstate.toml"
    path.write_bytes(b'[store]\nurl = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8") as caught:
        load_config(path, env={})
    assert caught.value.field == "config"


def test_env_errors_name_the_field_and_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"CLAWSTATE_LIMITS_MAX_VALUE_BYTES": "-1"})
    assert caught.value.field == "limits.max_value_bytes"
    assert "(from CLAWSTATE_LIMITS_MAX_VALUE_BYTES)" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(env={"CLAWSTATE_DURABILITY": "fast"})
    assert caught.value.field == "store.durability"
    assert "CLAWSTATE_DURABILITY" in str(caught.value)


def test_argument_errors_name_the_field_and_the_argument() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, namespaces={"carts": {"serializer": "xml"}})
    assert caught.value.field == "namespaces.carts.serializer"
    assert "namespaces= argument" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, limits={"max_rows": 1})
    assert caught.value.field == "limits.max_rows"
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, limits=5)
    assert caught.value.field == "limits"


# --------------------------------------------------------------------------- environment names


def test_unknown_clawstate_variable_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"CLAWSTATE_DURABILTY": "power"})
    assert caught.value.field == "CLAWSTATE_DURABILTY"
    assert "did you mean CLAWSTATE_DURABILITY?" in str(caught.value)


def test_allow_listed_and_foreign_variables_are_ignored() -> None:
    env = {
        "CLAWSTATE_REQUIRE_SERVICES": "1",
        "CLAWSTATE_TOKEN": "secret",
        "PATH": "/bin",
        "clawstate_url": "lowercase is not ours",
    }
    assert load_config(env=env).durability == "process"
    with pytest.raises(ConfigError):
        load_config(env={"CLAWSTATE_MY_FLAG": "1"})
    # The documented way: add to the shared set (rebinding the name would not reach
    # the loader, which holds the set itself).
    NON_CONFIG_ENV_VARS.add("CLAWSTATE_MY_FLAG")
    try:
        assert load_config(env={"CLAWSTATE_MY_FLAG": "1"}).durability == "process"
    finally:
        NON_CONFIG_ENV_VARS.discard("CLAWSTATE_MY_FLAG")


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAWSTATE_DURABILITY", "power")
    assert load_config().durability == "power"


# --------------------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("10y", 10 * 365 * 86400.0),
        ("1h30m", 5400.0),
        (" 1h 30m ", 5400.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", [True, None, "", "soon", "5 parsecs", "-5s", -1, float("inf"), float("nan"), "1M", [1]]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(value, field="store.sweep_interval")
    assert caught.value.field == "store.sweep_interval"


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("512B", 512),
        ("4KiB", 4096),
        ("4kib", 4096),
        ("16MiB", 16 * 2**20),
        ("1MB", 10**6),
        ("1 GB", 10**9),
        ("2GiB", 2 * 2**30),
        ("1TiB", 2**40),
        ("1.5KiB", 1536),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value", [True, False, None, 1.0, "", "big", "16 MiBs", "-1", -1, "1.1KiB", "4K", "0.5B"]
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_size(value, field="limits.max_value_bytes")
    assert caught.value.field == "limits.max_value_bytes"


@pytest.mark.parametrize("word", ["off", "none", "Never"])
def test_off_unsets_optional_options(word: str) -> None:
    text = (
        f'[namespaces."*"]\ndefault_ttl = "1h"\n'
        f'[namespaces.carts]\ncompress_above = "{word}"\ndefault_ttl = "{word}"\n'
    )
    path = write(Path.cwd() / "clawstate.toml", text)
    cfg = load_config(path, env={})
    assert cfg.policy_for("carts").compress_above is None
    assert cfg.policy_for("carts").default_ttl is None
    assert cfg.policy_for("other").default_ttl == 3600


# --------------------------------------------------------------------------- relative paths


def test_relative_paths_resolve_against_the_file_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    text = (
        '[store]\nurl = "sqlite:///data/state.db?timeout=5"\n[keyring]\nsource = "file:keys.json"'
    )
    path = write(project / "clawstate.toml", text)
    cfg = load_config(path, env={})
    assert cfg.url == f"sqlite:///{(project / 'data' / 'state.db').as_posix()}?timeout=5"
    assert cfg.keyring == f"file:{(project / 'keys.json').as_posix()}"
    assert parse_url(cfg.url).params == {"timeout": "5"}


def test_defaults_resolve_against_the_file_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    path = write(project / "clawstate.toml", '[store]\ndurability = "power"\n')
    cfg = load_config(path, env={})
    assert cfg.url == f"sqlite:///{(project / '.clawstate' / 'state.db').as_posix()}"
    assert cfg.keyring == f"file:{(project / '.clawstate' / 'keyring.json').as_posix()}"


def test_env_and_argument_paths_resolve_against_the_cwd(tmp_path: Path) -> None:
    path = write(tmp_path / "project" / "clawstate.toml", "")
    cwd = Path.cwd()
    cfg = load_config(path, env={"CLAWSTATE_URL": "sqlite:///env.db"}, keyring="file:k.json")
    assert cfg.url == f"sqlite:///{(cwd / 'env.db').as_posix()}"
    assert cfg.keyring == f"file:{(cwd / 'k.json').as_posix()}"


def test_absolute_paths_are_kept() -> None:
    cfg = load_config(env={}, url="sqlite:////srv/state.db", keyring="file:///etc/keys.json")
    assert cfg.url == "sqlite:////srv/state.db"
    assert cfg.keyring == "file:/etc/keys.json"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(env={}, url="sqlite:///~/state.db")
    assert cfg.url == f"sqlite:///{(tmp_path / 'state.db').as_posix()}"


# --------------------------------------------------------------------------- URLs


def test_parse_url_schemes() -> None:
    sqlite = parse_url("sqlite:///rel/state.db")
    assert (sqlite.scheme, sqlite.path) == ("sqlite", "rel/state.db")
    assert parse_url("sqlite:////abs/state.db").path == "/abs/state.db"
    assert parse_url("memory://") == config_module.ParsedUrl(scheme="memory")
    pg = parse_url("postgres://app:s%40cret@db.example:5433/state?sslmode=require")
    assert (pg.scheme, pg.host, pg.port, pg.database) == ("postgresql", "db.example", 5433, "state")
    assert (pg.username, pg.password, pg.params) == ("app", "s@cret", {"sslmode": "require"})
    assert parse_url("postgresql:///state").host is None
    redis = parse_url("redis://cache:6379/2")
    assert (redis.scheme, redis.host, redis.port, redis.database) == ("redis", "cache", 6379, "2")
    assert parse_url("rediss://cache").database is None
    http = parse_url("https://state.example/api/")
    assert (http.scheme, http.host, http.port, http.path) == (
        "https",
        "state.example",
        None,
        "/api",
    )


def test_parsed_url_repr_hides_the_password() -> None:
    parsed = parse_url("postgresql://app:hunter2@db/state")
    assert "hunter2" not in repr(parsed)
    assert "***" in repr(parsed)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://h/db", 'unknown scheme "mysql"'),
        ("state.db", "must be a URL"),
        ("", "must be a URL"),
        ("sqlite:///:memory:", 'use "memory://"'),
        ("sqlite:///file::memory:?cache=shared", "per thread"),
        ("sqlite://host/state.db", "take no host"),
        ("sqlite:///", "must name a database file"),
        ("memory://name", "takes no host"),
        ("redis://h/cache", "Redis databases are numbers"),
        ("postgresql://h/a/b", "one database"),
        ("http:///path", "need a host"),
        ("postgresql://u:hunter2@h:99999/db", "not a valid URL"),
    ],
)
def test_parse_url_rejects(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(url)
    assert caught.value.field == "store.url"
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


# --------------------------------------------------------------------------- code-given options


def test_validate_namespace_options_applies_over_base() -> None:
    base = NamespacePolicy(serializer="json", compression_level=5)
    policy = validate_namespace_options(
        "carts", {"encrypt": True, "default_ttl": "30m", "compress_above": None}, base, Limits()
    )
    assert policy == NamespacePolicy(
        serializer="json",
        compression_level=5,
        encrypt=True,
        default_ttl=1800.0,
        compress_above=None,
    )
    assert validate_namespace_options("carts", {}, base, Limits()) is base


def test_validate_namespace_options_with_an_error_factory() -> None:
    def invalid(field: str, message: str) -> InvalidRequest:
        return InvalidRequest(field, message)

    with pytest.raises(InvalidRequest) as caught:
        validate_namespace_options(
            "carts", {"colour": "red"}, NamespacePolicy(), Limits(), error=invalid
        )
    assert caught.value.field == "namespaces.carts.colour"
    with pytest.raises(InvalidRequest) as caught:
        validate_namespace_options(
            "carts",
            {"default_ttl": 120},
            NamespacePolicy(),
            Limits(max_ttl_seconds=60),
            error=invalid,
        )
    assert caught.value.field == "namespaces.carts.default_ttl"
    with pytest.raises(InvalidRequest) as caught:
        validate_namespace_options("no/slash", {}, NamespacePolicy(), Limits(), error=invalid)
    assert caught.value.field == 'namespaces."no/slash"'


def test_check_namespace_name() -> None:
    assert check_namespace_name("tenant-1:carts.v2") == "tenant-1:carts.v2"
    for bad in ["", "*", "_sys", "-x", "a b", "a/b", "é", "a\n", 7]:
        with pytest.raises(ConfigError) as caught:
            check_namespace_name(bad)
        assert caught.value.field == "namespace"
    with pytest.raises(ConfigError, match="max_namespace_len"):
        check_namespace_name("abcde", Limits(max_namespace_len=4))


# --------------------------------------------------------------------------- records built in code


def test_records_built_in_code_are_checked_and_normalized() -> None:
    assert Limits(max_value_bytes="1MiB").max_value_bytes == 2**20  # type: ignore[arg-type]
    assert NamespacePolicy(default_ttl="1h").default_ttl == 3600.0  # type: ignore[arg-type]
    assert Config(sweep_interval="5m").sweep_interval == 300.0  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        Limits(max_key_bytes=4096)
    assert caught.value.field == "limits.max_key_bytes"
    with pytest.raises(ConfigError) as caught:
        Limits(max_query_limit=10)
    assert caught.value.field == "limits.default_query_limit"
    with pytest.raises(ConfigError) as caught:
        NamespacePolicy(serializer="xml")  # type: ignore[arg-type]
    assert caught.value.field == "NamespacePolicy.serializer"
    with pytest.raises(ConfigError) as caught:
        Config(durability="fast")  # type: ignore[arg-type]
    assert caught.value.field == "store.durability"
    with pytest.raises(ConfigError) as caught:
        Config(namespaces={"bad name": NamespacePolicy()})
    assert caught.value.field == 'namespaces."bad name"'
    with pytest.raises(ConfigError) as caught:
        Config(limits=Limits(max_ttl_seconds=60), namespaces={"c": NamespacePolicy(default_ttl=61)})
    assert caught.value.field == "namespaces.c.default_ttl"


def test_lowering_max_query_limit_lowers_the_default() -> None:
    cfg = load_config(env={"CLAWSTATE_LIMITS_MAX_QUERY_LIMIT": "50"})
    assert (cfg.limits.max_query_limit, cfg.limits.default_query_limit) == (50, 50)


def test_every_policy_field_has_a_check() -> None:
    fields = {f.name for f in msgspec.structs.fields(NamespacePolicy)}
    assert fields == set(config_module._NAMESPACE_OPTIONS)
    assert {f.name for f in msgspec.structs.fields(Limits)} == set(config_module._LIMIT_OPTIONS)


def test_max_ttl_constant() -> None:
    assert MAX_TTL_SECONDS == 10 * 365 * 86400
