"""The conformance suites, unchanged, against a live ``clawstate serve`` over HTTP.

One server subprocess (SQLite, test control on) serves the whole module; every
``store_factory`` call asks it for a fresh, empty store (``POST /_test/stores``) and
opens the HTTP client on it, so each test sees exactly what it would see in-process.
Tests on a FakeClock move the server's clock too: the client sends its clock's reading
with every request (``Clawstate-Test-Clock``), honoured only by a test-control server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("litestar")
pytest.importorskip("httpx")

from clawstate.server.testing import ServerProcess
from clawstate.testing.conformance import (
    AsyncStoreConformance,
    AsyncStoreFactory,
    StoreConformance,
    StoreFactory,
)

DEFAULTS: dict[str, Any] = {"sweep_interval": 0}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(test_control=True, extra_args=["--rate-limit", "0"]) as proc:
        yield proc
        assert proc.stop() == 0, proc.logs


@pytest.fixture
def store_factory(server: ServerProcess) -> Iterator[StoreFactory]:
    opened: list[Any] = []
    yield server.store_factory(opened, defaults=DEFAULTS)  # type: ignore[misc]
    for store, sid in opened:
        store.close()
        server.drop_test_store(sid)


@pytest.fixture
async def async_store_factory(
    server: ServerProcess, anyio_backend: str
) -> AsyncIterator[AsyncStoreFactory]:
    opened: list[Any] = []
    yield server.store_factory(opened, asynchronous=True, defaults=DEFAULTS)  # type: ignore[misc]
    for astore, sid in opened:
        await astore.close()
        server.drop_test_store(sid)


class TestHTTPStore(StoreConformance):
    """The sync facade over the HTTP client."""


class TestHTTPAsyncStore(AsyncStoreConformance):
    """The async facade over the HTTP client."""
