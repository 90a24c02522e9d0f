"""The event-store conformance suites, unchanged, against a live ``clawstate serve``.

The same arrangement as ``test_server_conformance.py``: one server subprocess (SQLite,
test control on) for the module, a fresh server-side store per ``store_factory`` call,
the HTTP client on it, and the client's clock sent with every request so tests on a
FakeClock move the server's clock too.  Projections and aggregates run in this process
against the remote store, as an application's worker would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services import require_module

require_module("litestar")
require_module("httpx")

from clawstate.server.testing import ServerProcess  # noqa: E402
from clawstate.testing.conformance import AsyncStoreFactory, StoreFactory  # noqa: E402
from clawstate.testing.events import (  # noqa: E402
    AsyncEventStoreConformance,
    EventStoreConformance,
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


class TestHTTPEventStore(EventStoreConformance):
    """``store.events`` over the HTTP client."""


class TestHTTPAsyncEventStore(AsyncEventStoreConformance):
    """``astore.events`` over the async HTTP client."""
