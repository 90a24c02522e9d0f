"""The event suites' shared pieces: the refusal snapshot and check, a read-model
reader, and the sample aggregate (``Cart``) and projection (``OrderTotals``)
the tests (and the property tests) use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clawstate import Event, InvalidRequest, RecordedEvent, Store
from clawstate.events import Aggregate, Projection, ReadModel, applies, handles

__all__ = [
    "Cart",
    "EventsSnapshot",
    "OrderTotals",
    "assert_events_refused",
    "events_snapshot",
    "read_model",
]

#: (last position, every event of the log as (position, stream, version, id, type),
#:  every namespace's (key, version) pairs)
EventsSnapshot = tuple[int, list[tuple[int, str, int, str, str]], dict[str, list[tuple[str, int]]]]


def events_snapshot(store: Store) -> EventsSnapshot:
    """What a refused request must leave untouched: the whole log and every namespace."""
    log: list[tuple[int, str, int, str, str]] = []
    after = 0
    while True:
        page = store.events.read_all(after, 1000)
        log += [(e.position, e.stream, e.version, e.id, e.type) for e in page]
        if len(page) < 1000:
            break
        after = page[-1].position
    items: dict[str, list[tuple[str, int]]] = {}
    for name in store.namespaces():
        ns = store._any_namespace(name)
        items[name] = []
        cursor = None
        while True:
            p = ns.scan(limit=1000, cursor=cursor)
            items[name] += [(it.key, it.version) for it in p.items]
            cursor = p.cursor
            if cursor is None:
                break
    return store.events.last_position, log, items


def assert_events_refused(
    store: Store, field: str, action: Callable[[], object], *, prefix: bool = False
) -> InvalidRequest:
    """``action`` raises InvalidRequest naming ``field`` (or a field starting with it)
    and changes nothing."""
    before = events_snapshot(store)
    with pytest.raises(InvalidRequest) as info:
        action()
    err = info.value
    if prefix:
        assert err.field.startswith(field), (err.field, str(err))
    else:
        assert err.field == field, (err.field, str(err))
    assert str(err), "the error must say why"
    assert events_snapshot(store) == before, "a refused request changed the store"
    return err


def read_model(store: Store, namespace: str) -> dict[str, Any]:
    """Every item of a read-model namespace, as ``{key: value}``."""
    out: dict[str, Any] = {}
    cursor = None
    ns = store.namespace(namespace)
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        out.update((it.key, it.value) for it in page.items)
        cursor = page.cursor
        if cursor is None:
            return out


class Cart(Aggregate):
    """The aggregate the suite exercises."""

    stream_prefix = "cart-"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.items: list[str] = []
        self.checked_out = False

    @classmethod
    def create(cls, id: str) -> Cart:
        cart = cls(id)
        cart.record("CartCreated", {"id": id})
        return cart

    def add(self, sku: str) -> None:
        if self.checked_out:
            raise ValueError("checked out")
        self.record("ItemAdded", {"sku": sku})

    def checkout(self) -> None:
        self.record("CheckedOut")

    @applies("ItemAdded")
    def _added(self, data: dict[str, Any]) -> None:
        self.items.append(data["sku"])

    def apply_CheckedOut(self, data: dict[str, Any]) -> None:  # the naming convention
        self.checked_out = True


class OrderTotals(Projection):
    """The projection the suite exercises: per-customer totals and order counts."""

    name = "order-totals"
    namespace = "totals"
    stream_prefix = "order-"

    @handles("OrderPlaced")
    def placed(self, event: RecordedEvent, view: ReadModel) -> None:
        customer = event.data["customer"]
        view.update(
            customer,
            lambda doc: {
                "total": (doc or {}).get("total", 0) + event.data["total"],
                "orders": (doc or {}).get("orders", 0) + 1,
            },
        )

    @handles("OrderCancelled")
    def cancelled(self, event: RecordedEvent, view: ReadModel) -> None:
        view.delete(event.data["customer"])


def _placed(customer: str, total: int) -> Event:
    return Event("OrderPlaced", {"customer": customer, "total": total})
