"""``clawstate.open``: from a URL or a config file to a Store on the right backend."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Final

from .backends.base import Backend, BackendClass, BackendOptions
from .config import Config, load_config, parse_url
from .errors import ConfigError
from .keyring import Keyring
from .store import Clock, Store

if TYPE_CHECKING:
    from .api import AsyncStoreAPI, StoreAPI
    from .client import RemoteStore

__all__ = [
    "BACKENDS",
    "backend_class",
    "make_backend",
    "make_backends",
    "open",
    "open_async",
    "open_local",
]

#: Every backend by URL scheme (``postgres://`` is parsed as ``postgresql``):
#: ``module:Class``, imported on first use, so a store on SQLite never imports
#: psycopg or redis.  Each class is built the same way: ``Cls.from_url(url, options)``.
BACKENDS: Final[dict[str, str]] = {
    "memory": "clawstate.backends.memory:MemoryBackend",
    "sqlite": "clawstate.backends.sqlite:SQLiteBackend",
    "postgresql": "clawstate.backends.postgres:PostgresBackend",
    "redis": "clawstate.backends.redis:RedisBackend",
    "rediss": "clawstate.backends.redis:RedisBackend",
}


if TYPE_CHECKING:  # mypy checks that every class of the table is a BackendClass
    from .backends.memory import MemoryBackend
    from .backends.postgres import PostgresBackend
    from .backends.redis import RedisBackend
    from .backends.sqlite import SQLiteBackend

    _TABLE_CLASSES: tuple[BackendClass, ...] = (
        MemoryBackend,
        SQLiteBackend,
        PostgresBackend,
        RedisBackend,
    )


def backend_class(scheme: str) -> BackendClass:
    """The backend class for a URL scheme, or the :class:`ConfigError` saying why not."""
    target = BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(
            "store.url",
            f"{scheme}:// does not name a storage backend (known: "
            f"{', '.join(f'{s}://' for s in BACKENDS)}; http(s):// is a server)",
        )
    module, _, name = target.partition(":")
    cls: BackendClass = getattr(importlib.import_module(module), name)
    return cls


def make_backends(config: Config, *, create: bool = True) -> dict[str, Backend]:
    """Every backend the configuration names (``default`` is ``store.url``), opened.

    If one fails to open, those already opened are closed before the error propagates.
    ``create=False``: see :func:`make_backend`.
    """
    opened: dict[str, Backend] = {}
    try:
        for name, url in config.backend_urls().items():
            opened[name] = make_backend(config, url, create=create)
    except BaseException:
        for backend in opened.values():
            backend.close()
        raise
    return opened


def make_backend(config: Config, url_text: str | None = None, *, create: bool = True) -> Backend:
    """The backend ``url_text`` (default: ``config.url``) names, built from the scheme
    table with the options ``config`` gives every backend.

    ``create=False`` opens only a store that exists and creates nothing, on every
    backend: a missing SQLite file, a PostgreSQL schema without clawstate's tables or
    a Redis prefix without its ``meta`` hash is a :class:`ConfigError` "no store at …"
    (the CLI's read commands open this way)."""
    url = parse_url(url_text or config.url)
    options = BackendOptions.from_config(config, create=create)
    return backend_class(url.scheme).from_url(url, options)


def open(
    url: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    token: str | None = None,
    clock: Clock | None = None,
    keyring: Keyring | str | None = None,
    create: bool = True,
    **options: Any,
) -> StoreAPI:
    """Open a store.

    The result is typed :class:`~clawstate.api.StoreAPI`: the methods an embedded
    :class:`~clawstate.Store` and the HTTP client's ``RemoteStore`` share, because the
    URL — and ``CLAWSTATE_URL``, or the config file's ``store.url`` — decides at run
    time which of the two it is.  Code that needs the embedded store itself (its
    ``backend``, ``rotate_keys``…) narrows with ``isinstance(store, clawstate.Store)``.

    ``clawstate.open()`` is the embedded default (``./.clawstate/state.db``);
    ``open("sqlite:///path/state.db")``, ``open("memory://")``; ``open(config="clawstate.toml")``
    reads the file (``CLAWSTATE_*`` variables override it, keyword options override both:
    ``durability="power"``, ``idempotency_window=3600``, ``limits={...}``, ``namespaces={...}``).
    ``keyring`` is a source string (``"file:keys.json"``, ``"env:VAR"``) or a loaded Keyring.
    ``create=False`` opens an existing store only and creates nothing (the CLI's read
    commands): a missing embedded store is a :class:`ConfigError` "no store at …".
    """
    if url is not None:
        options["url"] = url
    client_options = {k: options.pop(k) for k in _CLIENT_OPTIONS if k in options}
    if isinstance(keyring, str):  # a keyring source ("file:..." / "env:..."), like the config's
        options["keyring"], keyring = keyring, None
    cfg = load_config(config, **options)
    if parse_url(cfg.url).scheme in ("http", "https"):
        return _remote(cfg.url, token, clock, keyring, options, client_options)
    if token is not None:
        raise ConfigError("token", "a token is only used with http(s):// stores")
    if client_options:
        name = sorted(client_options)[0]
        raise ConfigError(name, "is an option of the HTTP client, for http(s):// stores only")
    return Store(make_backends(cfg, create=create), cfg, clock=clock, keyring=keyring)


#: ``open()`` options that configure the HTTP client rather than a store.
_CLIENT_OPTIONS = ("timeout", "retry", "headers", "verify", "max_connections", "heartbeat")


def _remote(
    url: str,
    token: str | None,
    clock: Clock | None,
    keyring: Keyring | None,
    options: dict[str, Any],
    client_options: dict[str, Any],
) -> RemoteStore:
    """The HTTP client: the same facade over HTTP (both satisfy ``api.StoreAPI``)."""
    server_side = sorted(set(options) - {"url", "sweep_interval", "keyring"})
    if keyring is not None or "keyring" in options:
        server_side.insert(0, "keyring")
    if server_side:
        raise ConfigError(
            server_side[0],
            "is a store setting; for an http(s):// store it is configured on the server",
        )
    from .client import RemoteStore

    return RemoteStore(url, token=token, clock=clock, **client_options)


def open_async(
    url: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    token: str | None = None,
    clock: Clock | None = None,
    keyring: Keyring | str | None = None,
    max_workers: int = 32,
    **options: Any,
) -> AsyncStoreAPI:
    """Like :func:`open`, but every method is awaitable: an :class:`AsyncStore` over
    the embedded store, or the HTTP client's ``AsyncRemoteStore`` (typed
    :class:`~clawstate.api.AsyncStoreAPI`, what both share)."""
    store = open(url, config=config, token=token, clock=clock, keyring=keyring, **options)
    if isinstance(store, Store):
        from .aio import AsyncStore

        return AsyncStore(store, max_workers=max_workers)
    from .client import AsyncRemoteStore, RemoteStore

    assert isinstance(store, RemoteStore)  # open() builds no third kind
    return AsyncRemoteStore(store)


def open_local(
    url: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    keyring: Keyring | str | None = None,
    create: bool = True,
    **options: Any,
) -> Store:
    """:func:`open`, for code that needs the store itself rather than any store (the
    server that serves it, maintenance): an ``http(s)://`` URL is a
    :class:`ConfigError` (``store.url``) instead of an HTTP client."""
    if url is not None and parse_url(url).scheme in ("http", "https"):
        raise ConfigError("store.url", _NOT_A_SERVER)
    store = open(url, config=config, clock=clock, keyring=keyring, create=create, **options)
    if not isinstance(store, Store):  # the URL came from the config file or CLAWSTATE_URL
        store.close()
        raise ConfigError("store.url", _NOT_A_SERVER)
    return store


_NOT_A_SERVER = (
    "names a clawstate server (http(s)://); this needs the store itself: give the "
    "database URL (sqlite:///…, postgresql://…, redis://…)"
)
