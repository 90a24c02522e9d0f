"""The locks conformance suite on Redis (database 11, a fresh key prefix per store,
deleted at teardown), sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import clawstate
from _backends import DEFAULT_OPTIONS, Prefixes, drop_prefix, raw
from clawstate.testing.conformance import AsyncStoreFactory, Clock, StoreFactory
from clawstate.testing.conformance.locks import AsyncLocksConformance, LocksConformance
from services import REDIS_URL

__all__ = ["raw"]  # fixtures, re-exported for pytest

#: The Redis database these tests use (other suites use other numbers).
REDIS_DB = 11


def db_url(prefix: str) -> str:
    """The test server's URL on :data:`REDIS_DB` with key prefix ``prefix``."""
    head = REDIS_URL.split("?", 1)[0]
    scheme, _, rest = head.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{REDIS_DB}?prefix={prefix}"


@pytest.fixture
def db_prefixes(raw: Any) -> Iterator[Prefixes]:
    """Fresh prefixes in database 11, their keys deleted at teardown."""
    import redis

    client = redis.Redis.from_url(db_url("x").split("?")[0])
    p = Prefixes(client)
    yield p
    for prefix in p.used:
        drop_prefix(client, prefix)
    client.close()


@pytest.fixture
def store_factory(db_prefixes: Prefixes) -> Iterator[StoreFactory]:
    opened: list[clawstate.Store] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
        store = clawstate.open(
            db_url(db_prefixes.new()), clock=clock, **{**DEFAULT_OPTIONS, **options}
        )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
async def async_store_factory(
    db_prefixes: Prefixes, anyio_backend: str
) -> AsyncIterator[AsyncStoreFactory]:
    opened: list[clawstate.AsyncStore] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.AsyncStore:
        astore = clawstate.open_async(
            db_url(db_prefixes.new()), clock=clock, **{**DEFAULT_OPTIONS, **options}
        )
        opened.append(astore)
        return astore

    yield factory
    for astore in opened:
        await astore.close()


class TestRedisLocks(LocksConformance):
    """Leases and fenced writes on Redis (the fence check runs in the write script)."""


class TestRedisAsyncLocks(AsyncLocksConformance):
    """The awaitable face on Redis."""
