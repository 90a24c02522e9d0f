"""Shared test plumbing for the server backends and for child processes.

One home for what the PostgreSQL, Redis and crash tests used to copy into each
file: a fresh schema (PostgreSQL) or key prefix (Redis) per store, dropped at
teardown; the URLs that select them; the pytest fixtures built on those; and
the launcher of the crash writer (``tests/crash/writer.py``) with the reader of
its acknowledgement logs.

A test module uses a fixture from here by importing it (pytest finds fixtures by
name in the module's namespace) and listing it in ``__all__`` so linters keep it::

    from _backends import pg, schemas

    __all__ = ["pg", "schemas"]  # fixtures, re-exported for pytest

``psycopg`` and ``redis`` are imported lazily, so a module that needs neither
can still import the crash helpers from here.  Reachability goes through
``services.require`` (skip on a laptop, fail under ``CLAWSTATE_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

import clawstate
from clawstate.testing.conformance import AsyncStoreFactory, Clock, StoreFactory
from services import POSTGRES_URL, REDIS_URL, require

if TYPE_CHECKING:
    import psycopg
    import redis

__all__ = [
    "CRASH_WRITER",
    "DEFAULT_OPTIONS",
    "ROOT",
    "Prefixes",
    "child_env",
    "drop_prefix",
    "drop_schema",
    "new_prefix",
    "new_schema",
    "pg",
    "pg_admin",
    "pg_async_store_factory",
    "pg_probe",
    "pg_store_factory",
    "pg_url",
    "prefixes",
    "raw",
    "read_acks",
    "redis_async_store_factory",
    "redis_client",
    "redis_store_factory",
    "redis_url",
    "run_child",
    "schemas",
    "start_crash_writer",
]

ROOT = Path(__file__).resolve().parent.parent
#: Options every test store gets unless a test overrides them (as conftest's): no
#: background sweep thread racing a test's FakeClock.
DEFAULT_OPTIONS: dict[str, Any] = {"sweep_interval": 0}
#: The crash tests' child: acknowledged writes on three or more threads, logged after
#: each acknowledgement, until the parent SIGKILLs it.
CRASH_WRITER = ROOT / "tests" / "crash" / "writer.py"


def _with_query(base: str, params: dict[str, object]) -> str:
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return base + ("&" if "?" in base else "?") + query


# -- PostgreSQL -------------------------------------------------------------------------


def pg_admin() -> psycopg.Connection[Any]:
    """An autocommit connection to the test server, for set-up and inspection."""
    import psycopg

    return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)


def pg_probe() -> None:
    with pg_admin() as conn:
        conn.execute("SELECT 1")


def new_schema(tag: str = "cs_test") -> str:
    """A schema name no other test (or run) uses: ``<tag>_<8 hex>``."""
    return f"{tag}_{uuid.uuid4().hex[:8]}"


def pg_url(schema: str, **params: object) -> str:
    """The test server's URL selecting ``schema``, plus backend URL parameters."""
    return _with_query(POSTGRES_URL, {"schema": schema, **params})


def drop_schema(schema: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg() -> None:
    """Skip (or fail, in CI) without a reachable PostgreSQL."""
    require("postgresql", pg_probe)


@pytest.fixture
def schemas(pg: None) -> Iterator[Callable[[], str]]:
    """``schemas()`` -> a fresh schema name, dropped at teardown."""
    made: list[str] = []

    def make() -> str:
        made.append(new_schema())
        return made[-1]

    yield make
    for schema in made:
        drop_schema(schema)


@pytest.fixture(name="store_factory")
def pg_store_factory(schemas: Callable[[], str]) -> Iterator[StoreFactory]:
    """``store_factory`` on PostgreSQL (overrides conftest's): a fresh schema per store."""
    opened: list[clawstate.Store] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
        store = clawstate.open(pg_url(schemas()), clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture(name="async_store_factory")
async def pg_async_store_factory(
    schemas: Callable[[], str], anyio_backend: str
) -> AsyncIterator[AsyncStoreFactory]:
    """``async_store_factory`` on PostgreSQL: a fresh schema per store."""
    opened: list[clawstate.AsyncStore] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.AsyncStore:
        url = pg_url(schemas())
        astore = clawstate.open_async(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(astore)
        return astore

    yield factory
    for astore in opened:
        await astore.close()


# -- Redis ------------------------------------------------------------------------------


def redis_client() -> redis.Redis:
    """A plain redis-py client on the test server."""
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=10)


def new_prefix() -> str:
    """A key prefix no other test uses: ``clawstate-test:<12 hex>:``."""
    return f"clawstate-test:{uuid.uuid4().hex[:12]}:"


def redis_url(prefix: str, **params: object) -> str:
    """The test server's URL selecting ``prefix``, plus backend URL parameters."""
    return _with_query(REDIS_URL, {"prefix": prefix, **params})


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (and only those: the server is shared)."""
    pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix) + "*"
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)


class Prefixes:
    """Hands out unique prefixes and deletes their keys at the end."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.used: list[str] = []

    def new(self) -> str:
        self.used.append(new_prefix())
        return self.used[-1]

    def cleanup(self) -> None:
        for prefix in self.used:
            drop_prefix(self.client, prefix)


@pytest.fixture(scope="module")
def raw() -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server (skips when it is unreachable)."""
    require("redis", lambda: redis_client().ping())
    client = redis_client()
    yield client
    client.close()


@pytest.fixture
def prefixes(raw: redis.Redis) -> Iterator[Prefixes]:
    """Fresh key prefixes, their keys deleted at teardown."""
    p = Prefixes(raw)
    yield p
    p.cleanup()


@pytest.fixture(name="store_factory")
def redis_store_factory(prefixes: Prefixes) -> Iterator[StoreFactory]:
    """``store_factory`` on Redis (overrides conftest's): a fresh prefix per store."""
    opened: list[clawstate.Store] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
        url = redis_url(prefixes.new())
        store = clawstate.open(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture(name="async_store_factory")
async def redis_async_store_factory(prefixes: Prefixes) -> AsyncIterator[AsyncStoreFactory]:
    """``async_store_factory`` on Redis: a fresh prefix per store."""
    opened: list[clawstate.AsyncStore] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.AsyncStore:
        url = redis_url(prefixes.new())
        astore = clawstate.open_async(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(astore)
        return astore

    yield factory
    for astore in opened:
        await astore.close()


# -- child processes --------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python process: this checkout's ``src`` and root
    first on the path (so ``-c`` scripts and ``-m tests.…`` import what is tested)."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    old = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{path}{os.pathsep}{old}" if old else path, **extra)


def run_child(code: str, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """Start ``python -c code args…`` in the checkout's root with :func:`child_env`."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=child_env(), **popen)


def start_crash_writer(
    url: str,
    logdir: Path,
    cycle: int,
    *,
    put_threads: int = 1,
    idempotent_tx: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the crash writer on ``url`` and return once it says it is writing.

    It logs each acknowledged write to ``<logdir>/<kind>-<cycle>.log`` (``kind`` in
    ``put``, ``put2``…, ``cas``, ``tx``); read them with :func:`read_acks` after the
    kill.  ``put_threads`` > 1 adds put threads (``put2``…) so a kill lands inside
    larger batches; ``idempotent_tx`` gives every transaction an idempotency key.
    """
    argv = [str(CRASH_WRITER), url, str(logdir), str(cycle), "--put-threads", str(put_threads)]
    if idempotent_tx:
        argv.append("--idempotent-tx")
    child = subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    ready = child.stdout.readline().strip()
    if ready != b"ready":
        child.kill()
        child.wait()
        raise AssertionError(f"the crash writer did not start: {ready!r}")
    return child


def read_acks(path: Path) -> list[dict[str, Any]]:
    """The acknowledgements a killed child logged; a line torn by the kill is skipped
    (it was never a completed acknowledgement)."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out
