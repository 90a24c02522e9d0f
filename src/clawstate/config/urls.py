"""Storage URLs and keyring sources: taking them apart, and anchoring relative paths.

A relative ``sqlite:///`` path or ``file:`` keyring in ``clawstate.toml`` resolves
against the file's directory (``_resolve_url``, ``_resolve_keyring``); an unset keyring
is found from the store, never from the working directory (``_default_keyring``).
Passwords never reach an error message (``_redact``) or a ``repr`` (:class:`ParsedUrl`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import msgspec

from clawstate.errors import ConfigError

from ._common import URL_SCHEMES, _Invalid, _show


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
