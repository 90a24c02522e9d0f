"""``clawstate.api``: code written once against the Protocols runs embedded and remote.

``session_flow`` / ``session_flow_async`` are application code typed only with
``StoreAPI`` / ``AsyncStoreAPI``: they never name ``Store`` or the HTTP client.  Each
runs on an embedded SQLite store and on a remote store (a ``clawstate serve``
subprocess with test control, as in ``test_server_conformance.py``), and both runs
must produce the same observable summary — the same values, versions, buffered
reads inside a transaction, outbox events and change-log entries.  mypy checks
the static half of the claim (``clawstate/_api_check.py``); this is the run-time half.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import require_module

require_module("litestar")
require_module("httpx")

import clawstate  # noqa: E402
from clawstate import NO_STREAM, AsyncStoreAPI, Event, Item, StoreAPI  # noqa: E402
from clawstate._open import open_local  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402

OPTIONS: dict[str, Any] = {"sweep_interval": 0}


def _add(item: str) -> Any:
    return lambda value: {"items": [*value["items"], item]}


def session_flow(store: StoreAPI, who: str) -> dict[str, Any]:
    """A cart, an order written with its outbox event, and what a watcher saw."""
    start = store.last_seq
    carts = store.namespace("carts")
    created = carts.put(who, {"items": []}, if_absent=True)
    updated = carts.update(who, _add("sku-1"))
    with store.transaction() as tx:
        orders = tx.namespace("orders")
        orders.put(f"o-{who}", {"cart": who, "items": updated.value["items"]})
        seen_in_tx = orders.get(f"o-{who}")  # the transaction reads its own write
        tx.events.append(
            f"order-{who}", [Event("Placed", {"items": 1})], expected_version=NO_STREAM
        )
    (order,) = tx.result
    assert isinstance(order, Item)
    watch = store.watch(start, namespace="carts", timeout=5)
    changes = watch.poll()
    watch.close()
    current = carts.get(who)
    return {
        "versions": [created.version, updated.version, order.version],
        "in_tx": None if seen_in_tx is None else seen_in_tx.value,
        "value": None if current is None else current.value,
        "keys": [i.key for i in carts.scan(prefix=who[:1]).items],
        "appended": [a.version for a in tx.appended],
        "events": [(e.type, e.data, e.version) for e in store.events.read(f"order-{who}")],
        "streams": [s.stream for s in store.events.streams(prefix="order-").streams],
        "changes": [(c.namespace, c.key, str(c.op), c.version) for c in changes],
        "count": carts.count(),
    }


async def session_flow_async(store: AsyncStoreAPI, who: str) -> dict[str, Any]:
    """``session_flow`` on the awaitable face (the same steps, awaited)."""
    start = await store.last_seq()
    carts = store.namespace("carts")
    created = await carts.put(who, {"items": []}, if_absent=True)
    updated = await carts.update(who, _add("sku-1"))
    async with store.transaction() as tx:
        orders = tx.namespace("orders")
        orders.put(f"o-{who}", {"cart": who, "items": updated.value["items"]})  # buffered
        seen_in_tx = await orders.get(f"o-{who}")
        seen_many = await orders.get_many([f"o-{who}", "absent"])
        tx.events.append(
            f"order-{who}", [Event("Placed", {"items": 1})], expected_version=NO_STREAM
        )
    (order,) = tx.result
    assert isinstance(order, Item)
    watch = store.watch(start, namespace="carts", timeout=5)
    changes = await watch.poll()
    watch.close()
    sub = store.events.subscribe(0, timeout=5)
    polled = await sub.poll()
    await sub.close()
    current = await carts.get(who)
    events = await store.events.read(f"order-{who}")
    page = await store.events.streams(prefix="order-")
    return {
        "versions": [created.version, updated.version, order.version],
        "in_tx": None if seen_in_tx is None else seen_in_tx.value,
        "in_tx_many": {k: i.value for k, i in seen_many.items()},
        "value": None if current is None else current.value,
        "keys": [i.key for i in (await carts.scan(prefix=who[:1])).items],
        "changes": [(c.namespace, c.key, c.version) for c in changes],
        "polled": [(e.stream, e.type) for e in polled],
        "appended": [a.version for a in tx.appended],
        "events": [(e.type, e.data, e.version) for e in events],
        "streams": [s.stream for s in page.streams],
        "count": await carts.count(),
        "last_position": await store.events.last_position(),
    }


EXPECTED: dict[str, Any] = {
    "versions": [1, 2, 1],
    "in_tx": {"cart": "u42", "items": ["sku-1"]},
    "value": {"items": ["sku-1"]},
    "keys": ["u42"],
    "appended": [1],
    "events": [("Placed", {"items": 1}, 1)],
    "streams": ["order-u42"],
    "count": 1,
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(test_control=True, extra_args=["--rate-limit", "0"]) as proc:
        yield proc
        assert proc.stop() == 0, proc.logs


def test_one_function_embedded_and_remote(server: ServerProcess, tmp_path: Path) -> None:
    embedded = clawstate.open(f"sqlite:///{tmp_path}/state.db", **OPTIONS)
    opened: list[Any] = []
    remote: StoreAPI = server.store_factory(opened, defaults=OPTIONS)()
    try:
        assert isinstance(embedded, clawstate.Store)
        assert not isinstance(remote, clawstate.Store)  # the HTTP client, not a subclass
        got = {"embedded": session_flow(embedded, "u42"), "remote": session_flow(remote, "u42")}
    finally:
        embedded.close()
        for store, sid in opened:
            store.close()
            server.drop_test_store(sid)
    for face, summary in got.items():
        changes = summary.pop("changes")
        # The watcher saw the cart's two writes, in order, on both faces.
        assert [(ns, key, version) for ns, key, _, version in changes] == [
            ("carts", "u42", 1),
            ("carts", "u42", 2),
        ], face
        assert summary == EXPECTED, face
    assert got["embedded"] == got["remote"]


def test_open_local_refuses_a_server(server: ServerProcess) -> None:
    """The server and maintenance code open the store itself: a server URL is refused
    in one line, before any request, instead of handing them an HTTP client."""
    with pytest.raises(clawstate.ConfigError) as info:
        open_local(server.url)
    assert info.value.field == "store.url" and "http(s)://" in str(info.value)


@pytest.mark.anyio
async def test_one_coroutine_embedded_and_remote(
    server: ServerProcess, tmp_path: Path, anyio_backend: str
) -> None:
    embedded = clawstate.open_async(f"sqlite:///{tmp_path}/state.db", **OPTIONS)
    opened: list[Any] = []
    remote: AsyncStoreAPI = server.store_factory(opened, asynchronous=True, defaults=OPTIONS)()
    try:
        assert isinstance(embedded, clawstate.AsyncStore)
        got = {
            "embedded": await session_flow_async(embedded, "u42"),
            "remote": await session_flow_async(remote, "u42"),
        }
    finally:
        await embedded.close()
        for store, sid in opened:
            await store.close()
            server.drop_test_store(sid)
    for face, summary in got.items():
        assert summary.pop("last_position") == 1, face
        assert summary.pop("in_tx_many") == {"o-u42": EXPECTED["in_tx"]}, face
        assert summary.pop("changes") == [("carts", "u42", 1), ("carts", "u42", 2)], face
        assert summary.pop("polled") == [("order-u42", "Placed")], face
        assert summary == EXPECTED, face
    assert got["embedded"] == got["remote"]
