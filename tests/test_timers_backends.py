"""The timers conformance suite on PostgreSQL (a fresh schema per store) and Redis
(database 12, a fresh key prefix per store, deleted at teardown)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import clawstate
from _backends import (
    DEFAULT_OPTIONS,
    Prefixes,
    drop_prefix,
    pg,
    pg_store_factory,
    raw,
    schemas,
)
from clawstate.testing.conformance import Clock, StoreFactory
from clawstate.testing.conformance.timers import TimersConformance
from services import REDIS_URL

# fixtures, re-exported for pytest
__all__ = ["pg", "pg_store_factory", "raw", "schemas"]

#: The Redis database these tests use (other suites use other numbers).
REDIS_DB = 12


def db_url(prefix: str) -> str:
    """The test server's URL on :data:`REDIS_DB` with key prefix ``prefix``."""
    head = REDIS_URL.split("?", 1)[0]
    scheme, _, rest = head.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{REDIS_DB}?prefix={prefix}"


class TestPostgresTimers(TimersConformance):
    """Timers on PostgreSQL (the module's ``store_factory`` is ``pg_store_factory``)."""


class TestRedisTimers(TimersConformance):
    """Timers on Redis database 12."""

    @pytest.fixture
    def store_factory(self, raw: Any) -> Iterator[StoreFactory]:
        import redis

        client = redis.Redis.from_url(db_url("x").split("?")[0])
        prefixes = Prefixes(client)
        opened: list[clawstate.Store] = []

        def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
            store = clawstate.open(
                db_url(prefixes.new()), clock=clock, **{**DEFAULT_OPTIONS, **options}
            )
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()
        for prefix in prefixes.used:
            drop_prefix(client, prefix)
        client.close()
