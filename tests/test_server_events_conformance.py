"""The event-store conformance suites, unchanged, against a live ``clawstate serve``.

The same arrangement as ``test_server_conformance.py`` (the fixtures live in
``_server.py``): one server subprocess (SQLite, test control on) for the module, a
fresh server-side store per ``store_factory`` call, the HTTP client on it, and the
client's clock sent with every request so tests on a FakeClock move the server's clock
too.  Projections and aggregates run in this process against the remote store, as an
application's worker would.
"""

from __future__ import annotations

from services import require_module

require_module("litestar")
require_module("httpx")

from _server import async_store_factory, server, store_factory  # noqa: E402, F401
from clawstate.testing.events import (  # noqa: E402
    AsyncEventStoreConformance,
    EventStoreConformance,
)


class TestHTTPEventStore(EventStoreConformance):
    """``store.events`` over the HTTP client."""


class TestHTTPAsyncEventStore(AsyncEventStoreConformance):
    """``astore.events`` over the async HTTP client."""
