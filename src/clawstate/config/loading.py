"""Loading: ``clawstate.toml``, then ``CLAWSTATE_*`` variables, then ``open()`` arguments,
merged option by option into one :class:`~clawstate.config.Config`.

Each layer only gathers raw values with their origin (``_Layers``); ``_build`` then
checks them all at once, resolves relative paths against where each value came from,
and builds ``[namespaces."*"]`` first so that every other namespace inherits from it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from clawstate.errors import ConfigError

from ._common import (
    _DEFAULT_TABLE,
    _ENV_PREFIX,
    CONFIG_ENV_VAR,
    CONFIG_FILENAME,
    DEFAULT_URL,
    NON_CONFIG_ENV_PREFIXES,
    NON_CONFIG_ENV_VARS,
    _Check,
    _dotted,
    _show,
    _unknown,
)
from .checks import _coerce, _keyring_check, _Setting, _url_check
from .limits import _LIMIT_OPTIONS, Limits, _check_query_limits
from .namespaces import _NAMESPACE_OPTIONS, NamespacePolicy, _build_policy
from .record import _AUDIT_OPTIONS, _KEYRING_OPTIONS, _STORE_OPTIONS, Config
from .urls import _absolute, _default_keyring, _resolve_keyring, _resolve_url

#: The TOML tables holding plain options, and the option tables checking them.
_TABLES: Final[Mapping[str, Mapping[str, _Check]]] = {
    "store": _STORE_OPTIONS,
    "keyring": _KEYRING_OPTIONS,
    "limits": _LIMIT_OPTIONS,
    "audit": _AUDIT_OPTIONS,
}
_KNOWN_TABLES: Final = (*_TABLES, "namespaces", "backends")

#: ``open()``/``load_config`` keyword arguments naming a plain option: (table, option).
_ARGUMENTS: Final[Mapping[str, tuple[str, str]]] = {
    **{name: ("store", name) for name in _STORE_OPTIONS},
    "keyring": ("keyring", "source"),
}

#: Configuration variables: name -> (table, option).
_ENV_OPTIONS: Final[Mapping[str, tuple[str, str]]] = {
    **{f"{_ENV_PREFIX}{name.upper()}": ("store", name) for name in _STORE_OPTIONS},
    f"{_ENV_PREFIX}KEYRING": ("keyring", "source"),
    **{f"{_ENV_PREFIX}LIMITS_{name.upper()}": ("limits", name) for name in _LIMIT_OPTIONS},
}

#: Every configuration variable and the TOML field it overrides.
ENV_VARS: Final[Mapping[str, str]] = {
    **{var: _dotted(table, opt) for var, (table, opt) in _ENV_OPTIONS.items()},
    CONFIG_ENV_VAR: "config",
}


# --------------------------------------------------------------------------- layers


class _Layers:
    """Raw settings merged from file, environment and arguments, the last one winning."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, _Setting]] = {table: {} for table in _TABLES}
        self.namespaces: dict[str, dict[str, _Setting]] = {}
        self.backends: dict[str, _Setting] = {}
        #: Where each namespace name first appeared, for errors about the name itself.
        self.namespace_origins: dict[str, str] = {}

    def add_namespace(self, name: str, origin: str) -> dict[str, _Setting]:
        self.namespace_origins.setdefault(name, origin)
        return self.namespaces.setdefault(name, {})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("config", f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path}: invalid TOML: {exc}") from None


def _ingest_file(doc: Mapping[str, Any], layers: _Layers, origin: str, base_dir: Path) -> None:
    for table, content in doc.items():
        if table not in _KNOWN_TABLES:
            if isinstance(content, Mapping):
                raise ConfigError(_dotted(table), _unknown("table", table, _KNOWN_TABLES) + origin)
            homes = [_dotted(t, table) for t, opts in _TABLES.items() if table in opts]
            hint = f"; did you mean {homes[0]}?" if homes else ""
            raise ConfigError(
                _dotted(table),
                f"unknown top-level option (options go in the tables "
                f"{', '.join(f'[{t}]' for t in _KNOWN_TABLES)}){hint}{origin}",
            )
        if not isinstance(content, Mapping):
            raise ConfigError(_dotted(table), f"must be a table, got {_show(content)}{origin}")
        if table == "namespaces":
            _ingest_namespaces(content, layers, origin, base_dir, "table")
            continue
        if table == "backends":
            _ingest_backends(content, layers, origin, base_dir)
            continue
        options = _TABLES[table]
        for key, value in content.items():
            if key not in options:
                raise ConfigError(_dotted(table, key), _unknown("option", key, options) + origin)
            layers.tables[table][key] = _Setting(value, origin, base_dir)


def _ingest_namespaces(
    content: Mapping[Any, Any], layers: _Layers, origin: str, base_dir: Path, what: str
) -> None:
    for name, options in content.items():
        if not isinstance(name, str):
            raise ConfigError("namespaces", f"names must be strings, got {_show(name)}{origin}")
        prefix = _dotted("namespaces", name)
        if isinstance(options, NamespacePolicy):
            options = msgspec.structs.asdict(options)
        if not isinstance(options, Mapping):
            raise ConfigError(
                prefix, f"must be a {what} of namespace options, got {_show(options)}{origin}"
            )
        target = layers.add_namespace(name, origin)
        for key, value in options.items():
            if key not in _NAMESPACE_OPTIONS:
                message = _unknown("option", str(key), _NAMESPACE_OPTIONS)
                if isinstance(value, Mapping):
                    message += (
                        '; a namespace name containing "." must be quoted: '
                        f"[{_dotted('namespaces', f'{name}.{key}')}]"
                    )
                raise ConfigError(f"{prefix}.{_dotted(str(key))}", message + origin)
            target[key] = _Setting(value, origin, base_dir)


def _ingest_backends(
    content: Mapping[Any, Any], layers: _Layers, origin: str, base_dir: Path
) -> None:
    """``[backends.<name>] url = "..."`` (a table) or, as an argument, ``{name: url}``."""
    for name, options in content.items():
        field_name = _dotted("backends", str(name))
        if isinstance(options, str):
            url = options
        elif isinstance(options, Mapping):
            unknown = [k for k in options if k != "url"]
            if unknown:
                raise ConfigError(
                    f"{field_name}.{_dotted(str(unknown[0]))}",
                    _unknown("option", str(unknown[0]), ["url"]) + origin,
                )
            if "url" not in options:
                raise ConfigError(f"{field_name}.url", "is required" + origin)
            url = options["url"]
        else:
            raise ConfigError(
                field_name, f"must be a table with a url, got {_show(options)}{origin}"
            )
        layers.backends[str(name)] = _Setting(url, origin, base_dir)


def _check_env_names(env: Mapping[str, str]) -> None:
    known = set(ENV_VARS) | NON_CONFIG_ENV_VARS
    for name in sorted(env):
        if name.startswith(NON_CONFIG_ENV_PREFIXES):
            continue
        if name.startswith(_ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise ConfigError(
                name,
                "unknown clawstate environment variable"
                + (f"; did you mean {close[0]}?" if close else "")
                + f" (configuration variables: {', '.join(ENV_VARS)}; a variable another "
                "tool needs goes in clawstate.config.NON_CONFIG_ENV_VARS)",
            )


def _ingest_env(env: Mapping[str, str], layers: _Layers, cwd: Path) -> None:
    for var, (table, option) in _ENV_OPTIONS.items():
        value = env.get(var)
        if value:  # an empty variable counts as unset, as in `CLAWSTATE_URL= app`
            layers.tables[table][option] = _Setting(value, f" (from {var})", cwd)


def _ingest_arguments(arguments: Mapping[str, Any], layers: _Layers, cwd: Path) -> None:
    for name, value in arguments.items():
        if value is None:  # open(url=None, ...) means "not given"
            continue
        origin = f" (from the {name}= argument)"
        if name == "limits":
            if isinstance(value, Limits):
                value = msgspec.structs.asdict(value)
            if not isinstance(value, Mapping):
                raise ConfigError(
                    "limits", f"must be a dict of limits or a Limits, got {_show(value)}{origin}"
                )
            for key, item in value.items():
                if key not in _LIMIT_OPTIONS:
                    raise ConfigError(
                        _dotted("limits", str(key)),
                        _unknown("option", str(key), _LIMIT_OPTIONS) + origin,
                    )
                layers.tables["limits"][key] = _Setting(item, origin, cwd)
        elif name == "namespaces":
            if not isinstance(value, Mapping):
                raise ConfigError(
                    "namespaces", f"must be a dict of namespace options, got {_show(value)}{origin}"
                )
            _ingest_namespaces(value, layers, origin, cwd, "dict")
        elif name == "backends":
            if not isinstance(value, Mapping):
                raise ConfigError(
                    "backends", f"must be a dict of name -> URL, got {_show(value)}{origin}"
                )
            _ingest_backends(value, layers, origin, cwd)
        elif name in _ARGUMENTS:
            table, option = _ARGUMENTS[name]
            layers.tables[table][option] = _Setting(value, origin, cwd)
        else:
            raise ConfigError(
                name,
                _unknown("argument", name, [*_ARGUMENTS, "limits", "namespaces", "backends"]),
            )


def _build(layers: _Layers, anchor: Path, source: str | None) -> Config:
    limit_settings = layers.tables["limits"]
    limits_values = {
        name: _coerce(_dotted("limits", name), s, _LIMIT_OPTIONS[name])
        for name, s in limit_settings.items()
    }
    defaults = Limits()
    max_query = limits_values.get("max_query_limit", defaults.max_query_limit)
    if "default_query_limit" in limits_values:
        _check_query_limits(
            limits_values["default_query_limit"],
            max_query,
            limit_settings["default_query_limit"].origin,
        )
    elif defaults.default_query_limit > max_query:
        limits_values["default_query_limit"] = max_query  # lowering the max lowers the default
    limits = Limits(**limits_values)

    values: dict[str, Any] = {}
    for option, setting in layers.tables["store"].items():
        values[option] = _coerce(_dotted("store", option), setting, _STORE_OPTIONS[option])
    url = layers.tables["store"].get("url", _Setting(DEFAULT_URL, "", anchor))
    values["url"] = _resolve_url(values.get("url", DEFAULT_URL), url.base_dir)
    keyring = layers.tables["keyring"].get("source")
    if keyring is None:
        # The file anchors the keyring only for a store it names (its url, or the
        # default beside it): a URL from the environment or an argument is found
        # from itself, even when a ./clawstate.toml happens to be in the cwd.
        from_file = source is not None and url.origin in ("", f" (in {source})")
        values["keyring"] = _default_keyring(values["url"], anchor if from_file else None)
    else:
        _coerce("keyring.source", keyring, _keyring_check)
        values["keyring"] = _resolve_keyring(str(keyring.value), keyring.base_dir)
    for option, setting in layers.tables["audit"].items():
        values[f"audit_{option}"] = _coerce(
            _dotted("audit", option), setting, _AUDIT_OPTIONS[option]
        )

    default = _build_policy(
        _DEFAULT_TABLE,
        layers.namespaces.get(_DEFAULT_TABLE, {}),
        NamespacePolicy(),
        limits,
        ConfigError,
    )
    namespaces = {
        name: _build_policy(
            name, settings, default, limits, ConfigError, layers.namespace_origins[name]
        )
        for name, settings in layers.namespaces.items()
        if name != _DEFAULT_TABLE
    }
    backends: dict[str, str] = {}
    for name, setting in layers.backends.items():
        field_name = _dotted("backends", name, "url")
        if not isinstance(setting.value, str):
            raise ConfigError(
                field_name, f"must be a URL, got {_show(setting.value)}{setting.origin}"
            )
        _coerce(field_name, setting, _url_check)
        backends[name] = _resolve_url(setting.value, setting.base_dir)
    try:
        return Config(
            **values,
            limits=limits,
            namespaces=namespaces,
            default_namespace=default,
            backends=backends,
            source=source,
        )
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(exc.field, f"{str(exc).split(': ', 1)[-1]} (in {source})") from None


def _locate(path: str | os.PathLike[str] | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """The configuration file to read: ``path``, else ``$CLAWSTATE_CONFIG``, else
    ``./clawstate.toml`` if it exists, else none."""
    if path is not None:
        given, origin = os.fspath(path), ""
    elif env.get(CONFIG_ENV_VAR):
        given, origin = env[CONFIG_ENV_VAR], f" (from {CONFIG_ENV_VAR})"
    else:
        default = cwd / CONFIG_FILENAME
        return default if default.is_file() else None
    file = _absolute(given, cwd)
    if not file.exists():
        raise ConfigError("config", f"config file not found: {file}{origin}")
    if not file.is_file():
        raise ConfigError("config", f"config path is not a file: {file}{origin}")
    return file


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Read the configuration: ``clawstate.toml``, then ``CLAWSTATE_*`` variables, then
    ``overrides``, each layer winning over the one before.

    ``path`` None: ``$CLAWSTATE_CONFIG``, else ``./clawstate.toml`` if it exists, else the
    defaults.  A file that was asked for and does not exist is an error.  ``env`` defaults to
    ``os.environ``; an empty variable counts as unset and an unknown ``CLAWSTATE_*`` name
    is an error (see :data:`NON_CONFIG_ENV_VARS`).

    ``overrides`` are the ``[store]`` options (``url``, ``durability``,
    ``idempotency_window``, ``sweep_interval``, ``changelog_retention``), ``keyring``,
    ``limits`` (a dict merged over the lower layers, or a :class:`Limits` replacing them)
    and ``namespaces`` (a dict of option dicts, merged option by option; ``"*"`` is the
    default).  ``None`` means "not given".  Relative paths resolve against the file's
    directory when a file was read (for values from the file and for defaults), else
    against the working directory.  An unset keyring is found from the store, never the
    working directory: beside the file, else beside the SQLite database, else None
    (a server store without a file must be given one; see ``urls._default_keyring``).

    Raises :class:`ConfigError` naming the field (``namespaces.carts.serializer``), or
    ``config`` for a missing or unparsable file.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    _check_env_names(environ)
    cwd = Path.cwd()
    file = _locate(path, environ, cwd)
    layers = _Layers()
    anchor = cwd
    if file is not None:
        anchor = file.parent
        _ingest_file(_read_toml(file), layers, f" (in {file})", anchor)
    _ingest_env(environ, layers, cwd)
    _ingest_arguments(overrides, layers, cwd)
    return _build(layers, anchor, str(file) if file is not None else None)
