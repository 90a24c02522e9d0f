"""clawstate's configuration: ``clawstate.toml``, then ``CLAWSTATE_*`` variables, then ``open()``.

Why it is built this way:

* **One place decides every setting.** The rest of clawstate reads typed, frozen
  :class:`Config` / :class:`Limits` / :class:`NamespacePolicy` records and never
  parses a string again; codecs, backends and the server take plain values from here
  (``codec.py`` builds its own ``CodecPolicy`` out of a :class:`NamespacePolicy`).
* **Layers, lowest first: file < environment < keyword arguments.** The checked-in
  file sets the baseline, the environment adjusts one deployment (containers, CI), and
  code that passes an argument to ``clawstate.open()`` has the last word.
* **A mistake fails at open(), loudly and precisely.** Every problem is a
  :class:`~clawstate.errors.ConfigError` whose ``field`` is the TOML dotted name of the
  setting (``namespaces.carts.serializer``, ``limits.max_value_bytes``) and whose message
  says what was expected, what was found and where it came from.  Unknown tables, options
  and ``CLAWSTATE_*`` variables are errors too: a typo silently ignored is a setting
  silently not applied, found out in production.
* **Some limits only go down.** Key size (1024 bytes), namespace name length (128) and
  TTL (10 years) are baked into storage layouts and the wire protocol, so configuration
  may lower them but never raise them.
* **Relative paths follow the file.** A relative ``sqlite:///`` path or ``file:`` keyring
  in ``clawstate.toml`` resolves against the file's directory, so the same file means the
  same database whatever the working directory of the process; values from the
  environment or from arguments resolve against the working directory.
* **The keyring follows the store.** With no ``[keyring] source``, the keyring is beside
  the config file, else beside the SQLite file — never in the working directory, where a
  ``cd`` would silently swap it for another (see :func:`_default_keyring`).

Adding a namespace option (cache policy, backend routing…) takes two lines: a field on
:class:`NamespacePolicy` and its check in ``_NAMESPACE_OPTIONS``.  TOML parsing,
environment and argument layering, inheritance from ``[namespaces."*"]``, error messages
and :func:`validate_namespace_options` then handle it; an import-time check refuses a
field without a check.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import msgspec

from clawstate.errors import ClawStateError, ConfigError

__all__ = [
    "BACKEND_NAME_RE",
    "CACHE_MODES",
    "CONFIG_ENV_VAR",
    "CONFIG_FILENAME",
    "DEFAULT_BACKEND",
    "DEFAULT_KEYRING",
    "DEFAULT_URL",
    "ENV_VARS",
    "MAX_KEY_BYTES",
    "MAX_NAMESPACE_LEN",
    "MAX_TTL_SECONDS",
    "NAMESPACE_NAME_RE",
    "NON_CONFIG_ENV_PREFIXES",
    "NON_CONFIG_ENV_VARS",
    "URL_SCHEMES",
    "CacheConsistency",
    "CacheMode",
    "Config",
    "Durability",
    "ErrorFactory",
    "Limits",
    "NamespacePolicy",
    "ParsedUrl",
    "Serializer",
    "check_namespace_name",
    "load_config",
    "parse_duration",
    "parse_size",
    "parse_url",
    "validate_namespace_options",
]

# --------------------------------------------------------------------------- constants

#: Fixed ceilings.  Storage layouts and the wire protocol are built around them, so the
#: matching limits may be lowered but never raised.
MAX_KEY_BYTES: Final = 1024
MAX_NAMESPACE_LEN: Final = 128
MAX_TTL_SECONDS: Final = 10 * 365 * 86400

#: What a namespace name looks like (matched with ``fullmatch``).  Names starting with
#: ``_`` are left to clawstate's own namespaces.
NAMESPACE_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
#: Names of ``[backends.<name>]`` tables; ``default`` is the ``store.url`` backend.
BACKEND_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_BACKEND: Final = "default"

CONFIG_FILENAME: Final = "clawstate.toml"
CONFIG_ENV_VAR: Final = "CLAWSTATE_CONFIG"
DEFAULT_URL: Final = "sqlite:///.clawstate/state.db"
DEFAULT_KEYRING: Final = "file:.clawstate/keyring.json"

#: ``CLAWSTATE_*`` variables that are not configuration, so :func:`load_config` does not
#: refuse them as typos.  A module that reads a variable of its own adds it here at
#: import time: ``NON_CONFIG_ENV_VARS.add("CLAWSTATE_MY_FLAG")``.
NON_CONFIG_ENV_VARS: set[str] = {"CLAWSTATE_REQUIRE_SERVICES", "CLAWSTATE_TOKEN"}
#: Prefixes of variables that belong to clawstate's own test and benchmark
#: harnesses, never to the configuration.
NON_CONFIG_ENV_PREFIXES: tuple[str, ...] = ("CLAWSTATE_TEST_", "CLAWSTATE_BENCH_")

#: URL schemes :func:`parse_url` accepts (``postgres`` is read as ``postgresql``).
URL_SCHEMES: Final = (
    "sqlite",
    "memory",
    "postgresql",
    "postgres",
    "redis",
    "rediss",
    "http",
    "https",
)

_ENV_PREFIX: Final = "CLAWSTATE_"
_DEFAULT_TABLE: Final = "*"
_OFF_WORDS: Final = frozenset({"off", "none", "never"})

Serializer = Literal["msgpack", "json"]
Durability = Literal["process", "power"]
#: A namespace's cache mode (see docs/cache.md); ``"none"`` keeps the cache out of the way.
CacheMode = Literal["none", "read-through", "write-through", "write-back"]
CacheConsistency = Literal["eventual", "strong"]
CACHE_MODES: Final = ("none", "read-through", "write-through", "write-back")

#: Builds the exception to raise from ``(field, message)``: :class:`ConfigError` for
#: configuration, a factory producing ``InvalidRequest`` for options given in code.
ErrorFactory = Callable[[str, str], ClawStateError]

#: A check takes a raw value (TOML, environment string or Python object) and returns the
#: typed value, or raises :class:`_Invalid` with a message that does not name the field.
_Check = Callable[[object], Any]


class _Invalid(Exception):
    """A value failed a check; whoever knows the field's name turns it into an error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- formatting


_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(*parts: str) -> str:
    """A TOML dotted key, quoting parts that are not bare keys: ``namespaces."*".encrypt``."""
    return ".".join(p if _BARE_KEY_RE.fullmatch(p) else json.dumps(p) for p in parts)


def _show(value: object) -> str:
    """A value as the user wrote it, TOML-flavoured: ``"xml"``, ``true``, ``-1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return repr(value)


def _seconds_text(seconds: float) -> str:
    """``315360000`` -> ``"10y"``: limits quoted back in the unit a person would use."""
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    message = f"unknown {kind} (known: {', '.join(known)})"
    close = difflib.get_close_matches(name, known, n=1)
    return message + (f"; did you mean {close[0]}?" if close else "")


# --------------------------------------------------------------------------- durations


_DURATION_UNITS: Final[Mapping[str, float]] = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_DURATION_TERM_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*")
_DURATION_RE: Final = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w|y)\s*)+")
_NUMBER_RE: Final = re.compile(r"[+-]?\d+(?:\.\d+)?")
_DURATION_HINT: Final = 'seconds, or a string like "30s", "15m", "24h", "7d"'


def _duration_value(value: object) -> float:
    """Seconds from a number or a string (``"90"``, ``"30s"``, ``"1h30m"``); not range-checked."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"must be a duration ({_DURATION_HINT}), got {_show(value)}")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER_RE.fullmatch(text):
            seconds = float(text)
        elif _DURATION_RE.fullmatch(text):
            seconds = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_TERM_RE.findall(text)
            )
        else:
            raise _Invalid(
                f"must be a duration ({_DURATION_HINT}; units: ms, s, m, h, d, w, y), "
                f"got {_show(value)}"
            )
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if not math.isfinite(seconds):
        raise _Invalid(f"must be a finite duration, got {_show(value)}")
    return seconds


def parse_duration(value: object, *, field: str = "duration") -> float:
    """Seconds (float) from a number of seconds or a string: ``"500ms"``, ``"30s"``, ``"15m"``,
    ``"24h"``, ``"7d"``, ``"2w"``, ``"10y"`` (365 days), ``"1h30m"``, ``"86400"``.

    Booleans, negative and non-finite values raise :class:`ConfigError` naming ``field``.
    """
    try:
        seconds = _duration_value(value)
        if seconds < 0:
            raise _Invalid(f"must be a duration >= 0, got {_show(value)}")
    except _Invalid as exc:
        raise ConfigError(field, exc.message) from None
    return seconds


# --------------------------------------------------------------------------- sizes


_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_SIZE_HINT: Final = 'bytes, or a string like "4KiB", "16MiB", "1MB"'


def _size_value(value: object) -> int:
    """Bytes from an int or a string (``"4096"``, ``"4KiB"``, ``"1.5MB"``); not range-checked."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(f"must be a size ({_SIZE_HINT}), got {_show(value)}")
    if isinstance(value, int):
        return value
    text = value.strip()
    if _NUMBER_RE.fullmatch(text) and "." not in text:
        return int(text)
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise _Invalid(
            f"must be a size ({_SIZE_HINT}; units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), "
            f"got {_show(value)}"
        )
    size = Decimal(match.group(1)) * _SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise _Invalid(f"must be a whole number of bytes, got {_show(value)} ({size} bytes)")
    return int(size)


def parse_size(value: object, *, field: str = "size") -> int:
    """Bytes (int) from an int or a string: ``"512"``, ``"512B"``, ``"4KiB"``, ``"16MiB"``,
    ``"1MB"`` (10**6), ``"1.5GiB"``.  Units are case-insensitive; ``KiB`` is 1024, ``KB`` 1000.

    Booleans, floats, negative and fractional byte counts raise :class:`ConfigError`
    naming ``field``.
    """
    try:
        size = _size_value(value)
        if size < 0:
            raise _Invalid(f"must be a size >= 0, got {_show(value)}")
    except _Invalid as exc:
        raise ConfigError(field, exc.message) from None
    return size


# --------------------------------------------------------------------------- option checks


def _above(kind: str, minimum: int, value: object, *, strict: bool = False) -> _Invalid:
    if strict:
        bound = f"> {minimum}"
    elif minimum == 1:
        bound = "> 0"  # reads better than ">= 1" for whole numbers
    else:
        bound = f">= {minimum}"
    return _Invalid(f"must be a {kind} {bound}, got {_show(value)}")


def _below(kind: str, maximum: str, note: str, value: object) -> _Invalid:
    return _Invalid(f"must be a {kind} <= {maximum}{note}, got {_show(value)}")


def _off(value: object) -> bool:
    """``None`` or ``"off"``/``"none"``/``"never"``: how TOML, which has no null, says "unset"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _OFF_WORDS)


def _size_check(
    *, minimum: int, maximum: int | None = None, note: str = "", optional: bool = False
) -> _Check:
    def check(value: object) -> int | None:
        if optional and _off(value):
            return None
        try:
            size = _size_value(value)
        except _Invalid as exc:
            if not optional:
                raise
            raise _Invalid(f'must be a size ({_SIZE_HINT}) or "off", got {_show(value)}') from exc
        if size < minimum:
            raise _above("size", minimum, value)
        if maximum is not None and size > maximum:
            raise _below("size", f"{maximum} bytes", note, value)
        return size

    return check


def _count_check(*, minimum: int, maximum: int | None = None, note: str = "") -> _Check:
    def check(value: object) -> int:
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise _Invalid(f"must be a whole number, got {_show(value)}") from None
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise _Invalid(f"must be a whole number, got {_show(value)}")
        if number < minimum:
            raise _above("whole number", minimum, value)
        if maximum is not None and number > maximum:
            raise _below("whole number", str(maximum), note, value)
        return number

    return check


def _int_range_check(minimum: int, maximum: int) -> _Check:
    def check(value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (minimum <= value <= maximum)
        ):
            raise _Invalid(
                f"must be a whole number from {minimum} to {maximum}, got {_show(value)}"
            )
        return value

    return check


def _duration_check(
    *,
    allow_zero: bool,
    maximum: float | None = None,
    note: str = "",
    optional: bool = False,
) -> _Check:
    def check(value: object) -> float | None:
        if optional and _off(value):
            return None
        try:
            seconds = _duration_value(value)
        except _Invalid as exc:
            if not optional:
                raise
            raise _Invalid(
                f'must be a duration ({_DURATION_HINT}) or "off", got {_show(value)}'
            ) from exc
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise _above("duration", 0, value, strict=not allow_zero)
        if maximum is not None and seconds > maximum:
            raise _below("duration", _seconds_text(maximum), note, value)
        return seconds

    return check


def _choice_check(choices: tuple[str, ...]) -> _Check:
    quoted = [json.dumps(c) for c in choices]
    wanted = (
        " or ".join(quoted)
        if len(quoted) == 2
        else "one of " + ", ".join(quoted[:-1]) + " or " + quoted[-1]
    )

    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _Invalid(f"must be {wanted}, got {_show(value)}")
        return value

    return check


def _bool_check(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _backend_name_check(value: object) -> str:
    if not isinstance(value, str) or not BACKEND_NAME_RE.fullmatch(value):
        raise _Invalid(
            f"must be the name of a [backends.<name>] table (letters, digits, _ and -), "
            f"got {_show(value)}"
        )
    return value


def _paths_check(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Invalid(
            f'must be a list of dotted paths like ["status", "customer.id"], got {_show(value)}'
        )
    paths: list[str] = []
    for path in value:
        if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
            raise _Invalid(f'must hold dotted paths like "customer.id", got {_show(path)}')
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def _cache_l2_check(value: object) -> str | None:
    """``cache_l2``: a ``redis://`` / ``rediss://`` URL, or false/"off" for no shared tier."""
    if value is False or _off(value) or value == "false":
        return None
    if not isinstance(value, str):
        raise _Invalid(
            f'must be a Redis URL such as "redis://127.0.0.1:6379/0", or false, got {_show(value)}'
        )
    parsed = _parse_url(value)
    if parsed.scheme not in ("redis", "rediss"):
        raise _Invalid(
            f"must be a redis:// or rediss:// URL (the shared cache tier is Redis), "
            f"got {_show(_redact(value))}"
        )
    return value


def _url_check(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a URL such as {_URL_EXAMPLES}, got {_show(value)}")
    _parse_url(value)
    return value


def _keyring_check(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f'must be "file:<path>" or "env:<VARIABLE>", got {_show(value)}')
    if value.startswith("env:"):
        if not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
            raise _Invalid(f'must be "env:<VARIABLE>" with a variable name, got {_show(value)}')
        return value
    _keyring_path(value)
    return value


def _keyring_path(value: object) -> str:
    """The path of a ``file:`` keyring source (``file:rel``, ``file:/abs``, ``file:///abs``)."""
    if isinstance(value, str):
        scheme, sep, rest = value.partition(":")
        if sep and scheme == "file":
            if rest.startswith("///"):
                rest = rest[2:]
            elif rest.startswith("//"):
                raise _Invalid(f"file: keyrings cannot name a host, got {_show(value)}")
            if rest:
                return rest
    raise _Invalid(
        f'must be "file:<path>" (e.g. "file:/etc/clawstate/keys.json"), got {_show(value)}'
    )


# --------------------------------------------------------------------------- URLs


class ParsedUrl(msgspec.Struct, frozen=True, kw_only=True):
    """A storage URL taken apart; ``repr`` hides the password.

    ``path`` is the SQLite file (as written: relative or absolute) or the base path of an
    ``http(s)`` server; ``database`` is the PostgreSQL database name or the Redis database
    number; ``params`` holds the query string.
    """

    scheme: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    username: str | None = None
    password: str | None = None
    params: dict[str, str] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        fields = [
            f"{name}={'***' if name == 'password' else value!r}"
            for name in self.__struct_fields__
            if (value := getattr(self, name)) not in (None, {})
        ]
        return f"ParsedUrl({', '.join(fields)})"


_URL_EXAMPLES: Final = (
    '"sqlite:///relative/state.db", "sqlite:////absolute/state.db", "memory://", '
    '"postgresql://user@host/db", "redis://host:6379/0" or "https://host"'
)
_SQLITE_MEMORY_WHY: Final = (
    'SQLite ":memory:" databases are not supported: clawstate opens one SQLite connection '
    "per thread and every in-memory connection would get its own, different database; "
    'use "memory://" for the in-memory backend'
)


def _redact(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for an error message."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


def _parse_url(url: object) -> ParsedUrl:
    if not isinstance(url, str) or not url.strip():
        raise _Invalid(f"must be a URL such as {_URL_EXAMPLES}, got {_show(url)}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise _Invalid(f"must be a URL such as {_URL_EXAMPLES}, got {_show(_redact(url))}")
    if scheme not in URL_SCHEMES:
        raise _Invalid(f"unknown scheme {_show(scheme)} (known: {', '.join(URL_SCHEMES)})")
    if scheme == "sqlite":
        return _parse_sqlite_url(url, rest)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Invalid(f"is not a valid URL ({exc}), got {_show(_redact(url))}") from None
    if parts.fragment:
        raise _Invalid(f"must not have a #fragment, got {_show(_redact(url))}")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise _Invalid(
                '"memory://" takes no host or path (the in-memory backend is private to the '
                f"process), got {_show(_redact(url))}"
            )
        return ParsedUrl(scheme="memory", params=params)
    common: dict[str, Any] = {
        "host": parts.hostname or None,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "params": params,
    }
    path = parts.path
    if scheme in ("postgresql", "postgres"):
        database = path[1:] if path.startswith("/") else path
        if "/" in database:
            raise _Invalid(f"must name one database after the host, got {_show(_redact(url))}")
        return ParsedUrl(scheme="postgresql", database=unquote(database) or None, **common)
    if scheme in ("redis", "rediss"):
        database = path.strip("/")
        if database and not (database.isascii() and database.isdigit()):
            raise _Invalid(f"Redis databases are numbers (/0 to /15), got {_show(_redact(url))}")
        return ParsedUrl(scheme=scheme, database=database or None, **common)
    # http, https
    if not common["host"]:
        raise _Invalid(f"{scheme}:// URLs need a host, got {_show(_redact(url))}")
    return ParsedUrl(scheme=scheme, path=path.rstrip("/") or None, **common)


def _parse_sqlite_url(url: str, rest: str) -> ParsedUrl:
    path, _, query = rest.partition("?")
    if not path.startswith("/"):
        raise _Invalid(
            'sqlite URLs take no host: write "sqlite:///relative/path.db" or '
            f'"sqlite:////absolute/path.db", got {_show(url)}'
        )
    path = path[1:]
    params = dict(parse_qsl(query, keep_blank_values=True))
    if path == ":memory:" or path.startswith("file::memory:") or params.get("mode") == "memory":
        raise _Invalid(_SQLITE_MEMORY_WHY)
    if not path or path.endswith("/"):
        raise _Invalid(f"must name a database file after sqlite:///, got {_show(url)}")
    return ParsedUrl(scheme="sqlite", path=path, params=params)


def parse_url(url: str, *, field: str = "store.url") -> ParsedUrl:
    """Take a storage URL apart, or raise :class:`ConfigError` naming ``field``.

    * ``sqlite:///relative/state.db``, ``sqlite:////absolute/state.db`` (``path``);
      ``sqlite:///:memory:`` is refused: each per-thread connection would see a different
      database.  Use ``memory://`` for the in-memory backend.
    * ``memory://``
    * ``postgresql://user:pass@host:5432/db?sslmode=require`` (``postgres://`` too)
    * ``redis://host:6379/0``, ``rediss://`` (TLS)
    * ``http://host:port/base``, ``https://…`` (a clawstate server)
    """
    try:
        return _parse_url(url)
    except _Invalid as exc:
        raise ConfigError(field, exc.message) from None


def _absolute(path: str, base_dir: Path) -> Path:
    """``path`` made absolute against ``base_dir`` (``~`` expanded, ``..`` folded, no symlinks)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(os.path.normpath(base_dir / p))


def _resolve_url(url: str, base_dir: Path) -> str:
    """A relative ``sqlite:///`` path rewritten as absolute; other URLs returned unchanged."""
    parsed = _parse_url(url)
    if parsed.scheme != "sqlite" or parsed.path is None:
        return url
    path = _absolute(parsed.path, base_dir)
    if str(path) == parsed.path:
        return url
    _, sep, query = url.partition("?")
    return "sqlite:///" + path.as_posix() + sep + query  # "sqlite:////abs/state.db"


def _resolve_keyring(source: str, base_dir: Path) -> str:
    if source.startswith("env:"):
        return source
    return "file:" + _absolute(_keyring_path(source), base_dir).as_posix()


def _default_keyring(url: str, config_dir: Path | None) -> str | None:
    """Where a store keeps its keyring when none is configured: found from the store,
    never from the working directory, so a ``cd`` cannot swap it for another.

    Beside the config file (``<its dir>/.clawstate/keyring.json``) when the store's URL
    comes from that file (or is the default beside it), else beside the SQLite file
    (``<db dir>/keyring.json``; for the default URL that is ``.clawstate/keyring.json``
    next to ``state.db``).  A PostgreSQL, Redis or memory
    store without a config file has no directory of its own: None, and the store then
    needs an explicit ``[keyring] source`` before it seals a value (a memory-only store
    uses a keyring that lives and dies with the process, as its values do)."""
    if config_dir is not None:
        return "file:" + (config_dir / ".clawstate" / "keyring.json").as_posix()
    parsed = _parse_url(url)
    if parsed.scheme == "sqlite" and parsed.path is not None:
        return "file:" + (Path(parsed.path).parent / "keyring.json").as_posix()
    return None


def _optional_keyring_check(value: object) -> str | None:
    """``Config.keyring``: a source, or None for "none configured and no default place"."""
    return None if value is None else _keyring_check(value)


# --------------------------------------------------------------------------- records


def _normalize(record: msgspec.Struct, checks: Mapping[str, tuple[str, _Check]]) -> None:
    """Check every field of a freshly built record, storing the typed value back.

    ``Limits(max_value_bytes="1MiB")`` thus holds ``1048576``, and a record built in code
    can never hold what the configuration loader would have refused.
    """
    for name, (field_name, check) in checks.items():
        value = getattr(record, name)
        try:
            typed = check(value)
        except _Invalid as exc:
            raise ConfigError(field_name, exc.message) from None
        if typed is not value:
            msgspec.structs.force_setattr(record, name, typed)


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Bounds every request is checked against before anything is written.

    ``max_key_bytes`` (UTF-8 bytes, at most 1024), ``max_namespace_len`` (at most 128) and
    ``max_ttl_seconds`` (at most 10 years) may be lowered, never raised.  ``max_batch``
    bounds the writes of one ``put_many`` or transaction; ``default_query_limit`` is the
    page size when a query gives none and may not exceed ``max_query_limit``.
    """

    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = 16 * 1024 * 1024
    max_batch: int = 1000
    max_query_depth: int = 8
    max_query_limit: int = 10_000
    default_query_limit: int = 1_000
    max_namespace_len: int = MAX_NAMESPACE_LEN
    max_ttl_seconds: float = float(MAX_TTL_SECONDS)

    def __post_init__(self) -> None:
        _normalize(self, _LIMIT_FIELDS)
        _check_query_limits(self.default_query_limit, self.max_query_limit)


class NamespacePolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False
):
    """How one namespace stores its values.

    ``compress_above``: values larger than this many encoded bytes are compressed
    (``None`` never compresses; ``"off"`` in TOML), at zstd ``compression_level`` 1..22.
    ``encrypt``: values are encrypted with the keyring's current key.  ``default_ttl``:
    seconds a value lives when a write gives no TTL (``None``: forever).
    ``changelog_values``: the change log records new values, not just keys and versions,
    so that point-in-time recovery can replay them.  ``backend``: the name of the
    ``[backends.<name>]`` table holding this namespace (``"default"``: ``store.url``).
    ``indexes``: dotted paths of value fields the backend should index for queries
    (PostgreSQL expression indexes; ignored where the backend has no indexes).

    The ``cache*`` options are the namespace's cache policy (docs/cache.md): ``cache``
    the mode (``"none"``, ``"read-through"``, ``"write-through"``, ``"write-back"`` —
    which acknowledges writes *before* they are durable), ``cache_l1_bytes`` the
    in-process tier's budget, ``cache_l2`` a Redis URL for the tier shared by processes
    (``None``: none), ``cache_ttl`` how long an entry may be served, ``cache_negative_ttl``
    how long a miss is remembered (``None`` or 0: never), ``cache_consistency``
    ``"eventual"`` (invalidated from the change log within the propagation delay) or
    ``"strong"`` (every read checks the change log's watermark first), and
    ``cache_flush_delay`` the longest a write-back write waits before its batch flushes.
    """

    serializer: Serializer = "msgpack"
    compress_above: int | None = 4096
    compression_level: int = 3
    encrypt: bool = False
    default_ttl: float | None = None
    changelog_values: bool = False
    backend: str = DEFAULT_BACKEND
    indexes: tuple[str, ...] = ()
    cache: CacheMode = "none"
    cache_l1_bytes: int = 64 * 1024 * 1024
    cache_l2: str | None = None
    cache_ttl: float = 300.0
    cache_negative_ttl: float | None = 30.0
    cache_consistency: CacheConsistency = "eventual"
    cache_flush_delay: float = 0.1

    def __post_init__(self) -> None:
        _normalize(self, _POLICY_FIELDS)


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything :func:`clawstate.open` needs, validated; build it with :func:`load_config`.

    Durations are seconds.  ``sweep_interval`` 0 disables the background sweep of expired
    items.  ``namespaces`` holds the ``[namespaces.<name>]`` tables (already merged over
    ``default_namespace``, the ``[namespaces."*"]`` table); ask :meth:`policy_for` rather
    than reading it.  ``source`` is the file the configuration was read from, if any.
    Built directly, a ``Config`` keeps relative paths as given; :func:`load_config`
    resolves them.  Treat the ``namespaces`` dict as read-only.
    """

    url: str = DEFAULT_URL
    durability: Durability = "process"
    idempotency_window: float = 86400.0
    sweep_interval: float = 60.0
    changelog_retention: float = 7 * 86400.0
    #: the keyring source; None: none configured and the store has no place for one
    #: (a server store without a config file; see ``_default_keyring``)
    keyring: str | None = DEFAULT_KEYRING
    #: ``[audit] keep_days`` / ``keep_records``: the audit log's retention (None: keep all)
    audit_keep_days: float | None = None
    audit_keep_records: int | None = None
    limits: Limits = msgspec.field(default_factory=Limits)
    namespaces: dict[str, NamespacePolicy] = msgspec.field(default_factory=dict)
    default_namespace: NamespacePolicy = msgspec.field(default_factory=NamespacePolicy)
    #: ``[backends.<name>]`` tables: name -> URL.  ``default`` is always ``url``.
    backends: dict[str, str] = msgspec.field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        _normalize(self, _CONFIG_FIELDS)
        for name, url in self.backends.items():
            field_name = _dotted("backends", str(name))
            if name == DEFAULT_BACKEND:
                raise ConfigError(
                    field_name, f'"{DEFAULT_BACKEND}" is the store.url backend; choose another name'
                )
            try:
                _backend_name_check(name)
                _url_check(url)
            except _Invalid as exc:
                raise ConfigError(field_name, exc.message) from None
        known = {DEFAULT_BACKEND, *self.backends}
        for name, policy in (("*", self.default_namespace), *self.namespaces.items()):
            if isinstance(policy, NamespacePolicy) and policy.backend not in known:
                raise ConfigError(
                    _dotted("namespaces", name, "backend"),
                    f"names no backend: {policy.backend!r} (defined: {', '.join(sorted(known))})",
                )
        for name, kind in (("limits", Limits), ("default_namespace", NamespacePolicy)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(name, f"must be a {kind.__name__}")
        problem = _ttl_problem(self.default_namespace, self.limits)
        if problem:
            raise ConfigError(_dotted("namespaces", _DEFAULT_TABLE, "default_ttl"), problem)
        for name, policy in self.namespaces.items():
            prefix = _dotted("namespaces", str(name))
            check_namespace_name(name, self.limits, field=prefix)
            if not isinstance(policy, NamespacePolicy):
                raise ConfigError(prefix, "must be a NamespacePolicy")
            problem = _ttl_problem(policy, self.limits)
            if problem:
                raise ConfigError(f"{prefix}.default_ttl", problem)

    def backend_urls(self) -> dict[str, str]:
        """Every backend by name, ``default`` (``store.url``) first."""
        return {DEFAULT_BACKEND: self.url, **self.backends}

    def policy_for(self, name: str) -> NamespacePolicy:
        """The policy of namespace ``name``: its own table, else ``[namespaces."*"]``."""
        return self.namespaces.get(name, self.default_namespace)


# --------------------------------------------------------------------------- option tables

_STORE_OPTIONS: Final[Mapping[str, _Check]] = {
    "url": _url_check,
    "durability": _choice_check(("process", "power")),
    "idempotency_window": _duration_check(allow_zero=False),
    "sweep_interval": _duration_check(allow_zero=True),
    "changelog_retention": _duration_check(allow_zero=False),
}

_KEYRING_OPTIONS: Final[Mapping[str, _Check]] = {"source": _keyring_check}


def _optional(check: _Check) -> _Check:
    """``check``, or None for an unset (``"off"``) value."""

    def optional(value: object) -> Any:
        return None if _off(value) else check(value)

    return optional


def _days_check(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"must be a number of days > 0, got {_show(value)}")
    try:
        days = float(value)
    except ValueError:
        raise _Invalid(f"must be a number of days > 0, got {_show(value)}") from None
    if not (0 < days <= 36500):  # also refuses NaN and infinity
        raise _Invalid(f"must be a number of days > 0 and <= 36500, got {_show(value)}")
    return days


#: ``[audit]``: the server audit log's retention (docs/server.md); unset keeps everything.
_AUDIT_OPTIONS: Final[Mapping[str, _Check]] = {
    "keep_days": _optional(_days_check),
    "keep_records": _optional(_count_check(minimum=1)),
}

_LIMIT_OPTIONS: Final[Mapping[str, _Check]] = {
    "max_key_bytes": _size_check(
        minimum=1, maximum=MAX_KEY_BYTES, note=" (the fixed maximum; it may only be lowered)"
    ),
    "max_value_bytes": _size_check(minimum=1),
    "max_batch": _count_check(minimum=1),
    "max_query_depth": _count_check(minimum=1),
    "max_query_limit": _count_check(minimum=1),
    "default_query_limit": _count_check(minimum=1),
    "max_namespace_len": _count_check(
        minimum=1, maximum=MAX_NAMESPACE_LEN, note=" (the fixed maximum; it may only be lowered)"
    ),
    "max_ttl_seconds": _duration_check(
        allow_zero=False,
        maximum=MAX_TTL_SECONDS,
        note=" (the fixed maximum; it may only be lowered)",
    ),
}

#: One check per :class:`NamespacePolicy` field; a new field needs its entry here.
_NAMESPACE_OPTIONS: Final[Mapping[str, _Check]] = {
    "serializer": _choice_check(("msgpack", "json")),
    "compress_above": _size_check(minimum=0, optional=True),
    "compression_level": _int_range_check(1, 22),
    "encrypt": _bool_check,
    "default_ttl": _duration_check(
        allow_zero=False, maximum=MAX_TTL_SECONDS, note=" (the fixed maximum)", optional=True
    ),
    "changelog_values": _bool_check,
    "backend": _backend_name_check,
    "indexes": _paths_check,
    # the cache policy: docs/cache.md
    "cache": _choice_check(CACHE_MODES),
    "cache_l1_bytes": _size_check(minimum=0),
    "cache_l2": _cache_l2_check,
    "cache_ttl": _duration_check(
        allow_zero=False, maximum=MAX_TTL_SECONDS, note=" (the fixed maximum)"
    ),
    "cache_negative_ttl": _duration_check(
        allow_zero=True, maximum=MAX_TTL_SECONDS, note=" (the fixed maximum)", optional=True
    ),
    "cache_consistency": _choice_check(("eventual", "strong")),
    "cache_flush_delay": _duration_check(
        allow_zero=False, maximum=60, note=" (write-back must flush within a minute)"
    ),
}

#: The TOML tables holding plain options, and the option tables checking them.
_TABLES: Final[Mapping[str, Mapping[str, _Check]]] = {
    "store": _STORE_OPTIONS,
    "keyring": _KEYRING_OPTIONS,
    "limits": _LIMIT_OPTIONS,
    "audit": _AUDIT_OPTIONS,
}
_KNOWN_TABLES: Final = (*_TABLES, "namespaces", "backends")

_LIMIT_FIELDS: Final = {n: (_dotted("limits", n), c) for n, c in _LIMIT_OPTIONS.items()}
_POLICY_FIELDS: Final = {n: (f"NamespacePolicy.{n}", c) for n, c in _NAMESPACE_OPTIONS.items()}
_CONFIG_FIELDS: Final = {
    **{n: (_dotted("store", n), c) for n, c in _STORE_OPTIONS.items()},
    "keyring": ("keyring.source", _optional_keyring_check),
    **{f"audit_{n}": (_dotted("audit", n), c) for n, c in _AUDIT_OPTIONS.items()},
}

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


def _check_tables_match_records() -> None:
    for record, options in ((Limits, _LIMIT_OPTIONS), (NamespacePolicy, _NAMESPACE_OPTIONS)):
        if set(record.__struct_fields__) != set(options):
            raise RuntimeError(  # pragma: no cover - a programming error, caught by any test
                f"clawstate.config: {record.__name__} fields and their checks differ: "
                f"{sorted(set(record.__struct_fields__) ^ set(options))}"
            )


_check_tables_match_records()


# --------------------------------------------------------------------------- validation


def _check_query_limits(default: int, maximum: int, origin: str = "") -> None:
    if default > maximum:
        raise ConfigError(
            "limits.default_query_limit",
            f"must be <= limits.max_query_limit ({maximum}), got {default}{origin}",
        )


def _ttl_problem(policy: NamespacePolicy, limits: Limits) -> str | None:
    ttl = policy.default_ttl
    if ttl is not None and ttl > limits.max_ttl_seconds:
        return (
            f"must be <= limits.max_ttl_seconds ({_seconds_text(limits.max_ttl_seconds)}), "
            f"got {_seconds_text(ttl)}"
        )
    return None


def check_namespace_name(
    name: object,
    limits: Limits | None = None,
    *,
    field: str = "namespace",
    error: ErrorFactory = ConfigError,
) -> str:
    """Return ``name`` if it is a valid namespace name, else raise ``error(field, …)``.

    Valid: ``[A-Za-z0-9][A-Za-z0-9_.:-]*``, at most ``limits.max_namespace_len``
    characters (128 without ``limits``).
    """
    max_len = limits.max_namespace_len if limits is not None else MAX_NAMESPACE_LEN
    problem = _namespace_name_problem(name, max_len)
    if problem:
        raise error(field, problem)
    assert isinstance(name, str)  # no problem means it is a str
    return name


def _namespace_name_problem(name: object, max_len: int) -> str | None:
    if not isinstance(name, str) or not NAMESPACE_NAME_RE.fullmatch(name):
        return (
            f"invalid namespace name {_show(name)}: it must start with a letter or digit "
            "and contain only letters, digits and _ . : -"
        )
    if len(name) > max_len:
        return (
            f"namespace name is {len(name)} characters, more than "
            f"limits.max_namespace_len ({max_len})"
        )
    return None


class _Setting(NamedTuple):
    """One raw value and where it came from."""

    value: object
    #: Appended to error messages: ``" (in /srv/app/clawstate.toml)"``.
    origin: str
    #: The directory relative paths in ``value`` resolve against.
    base_dir: Path


def _coerce(
    field_name: str, setting: _Setting, check: _Check, error: ErrorFactory = ConfigError
) -> Any:
    try:
        return check(setting.value)
    except _Invalid as exc:
        raise error(field_name, exc.message + setting.origin) from None


def _build_policy(
    name: str,
    settings: Mapping[str, _Setting],
    base: NamespacePolicy,
    limits: Limits,
    error: ErrorFactory,
    name_origin: str = "",
) -> NamespacePolicy:
    prefix = _dotted("namespaces", name)
    if name != _DEFAULT_TABLE:
        problem = _namespace_name_problem(name, limits.max_namespace_len)
        if problem:
            raise error(prefix, problem + name_origin)
    values: dict[str, Any] = {}
    for option, setting in settings.items():
        field_name = f"{prefix}.{_dotted(option)}"
        check = _NAMESPACE_OPTIONS.get(option)
        if check is None:
            raise error(field_name, _unknown("option", option, _NAMESPACE_OPTIONS) + setting.origin)
        values[option] = _coerce(field_name, setting, check, error)
    policy = msgspec.structs.replace(base, **values) if values else base
    problem = _ttl_problem(policy, limits)
    if problem:
        ttl = settings.get("default_ttl")
        origin = ttl.origin if ttl else f" (inherited from {_dotted('namespaces', _DEFAULT_TABLE)})"
        raise error(f"{prefix}.default_ttl", problem + origin)
    return policy


def validate_namespace_options(
    name: str,
    options: Mapping[str, Any],
    base: NamespacePolicy,
    limits: Limits,
    *,
    error: ErrorFactory = ConfigError,
) -> NamespacePolicy:
    """``base`` with ``options`` applied, checked as strictly as ``[namespaces.<name>]``.

    For options given in code (``store.namespace("carts", encrypt=True)``): values are
    Python objects (``None`` unsets ``compress_above``/``default_ttl``), ``name`` is checked
    too (``"*"`` builds the default policy), and every problem is raised as
    ``error(field, message)`` with ``field`` in the form ``namespaces.carts.encrypt``.  The
    store passes a factory producing ``InvalidRequest``.
    """
    settings = {option: _Setting(value, "", Path()) for option, value in options.items()}
    return _build_policy(name, settings, base, limits, error)


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
    (a server store without a file must be given one; see ``_default_keyring``).

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
