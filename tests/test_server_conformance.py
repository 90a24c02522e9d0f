"""The conformance suites, unchanged, against a live ``clawstate serve`` over HTTP.

One server subprocess (SQLite, test control on) serves the whole module; every
``store_factory`` call asks it for a fresh, empty store (``POST /_test/stores``) and
opens the HTTP client on it, so each test sees exactly what it would see in-process.
Tests on a FakeClock move the server's clock too: the client sends its clock's reading
with every request (``Clawstate-Test-Clock``), honoured only by a test-control server.

The server is otherwise configured as in production: its write batching (plain puts of
one event-loop turn committed as one transaction) is on, and
``test_batched_path_runs_here`` proves that the suite's requests go through it.
Namespace policy cannot travel with a request; a test that needs one declares it when
its store is created (``store_factory(namespaces={...})``), like a ``clawstate.toml``.
The three suite tests that set policy in code (``store.namespace(name, **options)``)
are replaced below by the remote contract: such options are refused.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

from _server import async_store_factory, server, store_factory  # noqa: E402, F401
from clawstate import InvalidRequest, Store  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402
from clawstate.testing.conformance import (  # noqa: E402
    AsyncStoreConformance,
    StoreConformance,
    StoreFactory,
    assert_refused,
)


class TestHTTPStore(StoreConformance):
    """The sync facade over the HTTP client.

    Namespace options in code are the embedded store's: over HTTP they are refused
    (policy is the server operator's), so the three suite tests that use them are
    replaced by that contract."""

    def test_unknown_namespace_option_refused(self, store: Store) -> None:
        assert_refused(store, "options", lambda: store.namespace("x", colour=1))
        with pytest.raises(InvalidRequest, match="colour"):
            store.namespace("x", colour=1)
        assert store.namespaces() == []

    def test_bad_namespace_option_value_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest, match="serializer") as info:
            store.namespace("x", serializer="pickle")
        assert info.value.field == "options"
        assert "configuration" in str(info.value)

    def test_namespace_options_in_code(self, open_store: StoreFactory) -> None:
        store = open_store()
        with pytest.raises(InvalidRequest) as info:
            store.namespace("inline", serializer="json", compress_above=16)
        assert info.value.field == "options"
        # The same policy, declared where it belongs: with the store's settings.
        store = open_store(namespaces={"inline": {"serializer": "json", "compress_above": 16}})
        ns = store.namespace("inline")
        ns.put("k", {"long": "abc" * 100})
        got = store.namespace("inline").get("k")
        assert got is not None and got.value == {"long": "abc" * 100}


class TestHTTPAsyncStore(AsyncStoreConformance):
    """The async facade over the HTTP client."""


# -- the batched write path runs under this suite ------------------------------------------


def _counter(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text (0 when it has not appeared yet)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+]+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _shared(server: ServerProcess) -> tuple[float, float]:  # noqa: F811
    with server.admin() as http:
        text = http.get("/metrics").text
    return (
        _counter(text, "clawstate_server_shared_commits_total", 'outcome="committed"'),
        _counter(text, "clawstate_server_shared_commit_writes_total"),
    )


async def _burst(
    server: ServerProcess,  # noqa: F811
    sid: str,
    round_no: int,
    clocks: list[float | None],
    big: set[int],
) -> list[Any]:
    """Plain PUTs sent at once, one connection each, so they reach the server's event
    loop together: value ``i`` is ~2 KB (over the store's 1000-byte limit) for ``i`` in
    ``big``; request ``i`` carries clock ``clocks[i]`` (None: no clock header)."""
    limits = httpx.Limits(max_connections=len(clocks), max_keepalive_connections=0)
    headers = {"authorization": f"Bearer {server.admin_token}", "clawstate-test-store": sid}
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as http:

        async def one(i: int) -> Any:
            h = dict(headers)
            clock = clocks[i]
            if clock is not None:
                h["clawstate-test-clock"] = repr(clock)
            value = {"i": i, "pad": "x" * (2000 if i in big else 10)}
            path = f"/v1/namespaces/burst/items/r{round_no}-{i}"
            return await http.put(path, json=value, headers=h)

        return list(await asyncio.gather(*(one(i) for i in range(len(clocks)))))


def test_batched_path_runs_here(server: ServerProcess) -> None:  # noqa: F811
    """The write batcher is on in the server the suites use: a burst of plain puts is
    committed through shared transactions (the server's counter moves), a bad value in
    a burst is refused for its own request only, and each put keeps its own request's
    test clock even when it shares a commit."""
    sid = server.new_test_store({"sweep_interval": 0, "limits": {"max_value_bytes": 1000}})
    try:
        n = 48
        clocks: list[float | None] = [1000.0 if i % 2 else 2000.0 for i in range(n)]
        big = {i for i in range(n) if i % 8 == 3}
        before = _shared(server)
        rounds = 0
        while _shared(server)[0] == before[0]:
            rounds += 1
            assert rounds <= 20, "no burst of plain puts ever shared a commit"
            replies = asyncio.run(_burst(server, sid, rounds, clocks, big))
            for i, r in enumerate(replies):
                if i in big:
                    assert r.status_code == 400, r.text
                    assert r.json()["field"] == "value", r.text
                else:
                    assert r.status_code == 201, r.text
                    meta = r.json()
                    assert meta["created_at"] == meta["updated_at"] == clocks[i], (i, meta)
        after = _shared(server)
        assert after[1] - before[1] >= 2  # a shared commit holds several puts
        with server.admin() as http:
            h = {"clawstate-test-store": sid}
            for r_no in range(1, rounds + 1):
                for i in range(n):
                    got = http.get(f"/v1/namespaces/burst/items/r{r_no}-{i}", headers=h)
                    if i in big:
                        assert got.status_code == 404  # refused alone, nothing written
                    else:
                        assert got.json()["value"] == {"i": i, "pad": "x" * 10}
    finally:
        server.drop_test_store(sid)
