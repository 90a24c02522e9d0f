"""Shared fixtures for the suites that run against a live ``clawstate serve``.

Both ``test_server_conformance.py`` and ``test_server_events_conformance.py`` run
unchanged conformance suites over HTTP; they need the same arrangement, so it lives
here once: one server subprocess (SQLite, test control on, no rate limit) per module,
and a fresh server-side store per ``store_factory`` call, dropped again after the
test.  A module uses it with ``from _server import server, store_factory,
async_store_factory``; the fixtures are module-scoped by the importing module, so each
module still gets its own server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services import require_module

require_module("litestar")
require_module("httpx")

import httpx  # noqa: E402

from clawstate.server.testing import ServerProcess  # noqa: E402
from clawstate.testing.conformance import AsyncStoreFactory, StoreFactory  # noqa: E402

# The background sweeper would race the suites' own clock-driven expiry checks.
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


# -- raw HTTP callers on a test store of their own (hostile-input and scope tests) ----


@pytest.fixture(scope="module")
def sid(server: ServerProcess) -> Iterator[str]:
    store = server.new_test_store({"sweep_interval": 0})
    yield store
    server.drop_test_store(store)


@pytest.fixture(scope="module")
def admin(server: ServerProcess, sid: str) -> Iterator[Any]:
    with server.admin() as client:
        client.headers["clawstate-test-store"] = sid
        yield client


def token_for(admin: Any, *scopes: str) -> str:
    """A new token with ``scopes``, made through the admin route."""
    r = admin.post("/v1/admin/tokens", json={"scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def client_for(server: ServerProcess, sid: str, token: str) -> Any:
    """A raw HTTP client on the module's test store, as the holder of ``token``."""
    return httpx.Client(
        base_url=server.url,
        timeout=30,
        headers={"authorization": f"Bearer {token}", "clawstate-test-store": sid},
    )
