"""Shared fixtures: every store-level suite runs over every backend listed in BACKENDS.

Adding a backend (PostgreSQL, Redis, the HTTP client) is one entry in ``BACKENDS``:
a function from (a per-test temporary directory, a unique number) to an open() URL.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import clawstate
from clawstate.testing.conformance import AsyncStoreFactory, Clock, StoreFactory

#: backend id -> (tmp dir, n) -> URL.  Every store is fresh and empty.
BACKENDS: dict[str, Callable[[Path, int], str]] = {
    "memory": lambda tmp, n: "memory://",
    "sqlite": lambda tmp, n: f"sqlite:///{tmp}/state-{n}.db",
}

#: Options every test store gets unless the test overrides them: no background
#: sweeper thread, so TTL tests decide when a sweep runs.
DEFAULT_OPTIONS: dict[str, Any] = {"sweep_interval": 0}


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_factory(backend_name: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """``store_factory(clock=None, **options)`` -> a fresh Store; all closed at teardown."""
    opened: list[clawstate.Store] = []
    counter = itertools.count()

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
        url = BACKENDS[backend_name](tmp_path, next(counter))
        store = clawstate.open(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def async_store_factory(
    backend_name: str, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[AsyncStoreFactory]:
    """``async_store_factory(clock=None, **options)`` -> a fresh AsyncStore; closed at teardown."""
    opened: list[clawstate.AsyncStore] = []
    counter = itertools.count()

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.AsyncStore:
        url = BACKENDS[backend_name](tmp_path, next(counter))
        astore = clawstate.open_async(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(astore)
        return astore

    yield factory
    for astore in opened:
        await astore.close()
