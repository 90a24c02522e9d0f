"""The conformance suites' shared vocabulary: factory protocols, snapshots, and the
oracle and refusal checks every area's mixin (and backend-specific tests) use.

Public: backend test modules import ``scan_all``, ``snapshot``, ``assert_refused``
and the factory protocols from :mod:`clawstate.testing.conformance`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pytest

from clawstate import AsyncStore, Change, InvalidRequest, Item, Namespace, Store

__all__ = [
    "RECREATES",
    "REMOVALS",
    "TEN_YEARS",
    "UNICODE_KEYS",
    "AsyncStoreFactory",
    "Clock",
    "Snapshot",
    "StoreFactory",
    "all_changes",
    "assert_refused",
    "assert_sound",
    "scan_all",
    "snapshot",
]

Clock = Callable[[], float]

#: (last change-log seq, {namespace: [(key, version, etag, value), ...]})
Snapshot = tuple[int, dict[str, list[tuple[str, int, str, Any]]]]

TEN_YEARS = 10 * 365 * 86400


class StoreFactory(Protocol):
    """Opens a fresh, empty :class:`Store`; ``options`` go to :func:`clawstate.open`."""

    def __call__(self, clock: Clock | None = None, **options: Any) -> Store: ...


class AsyncStoreFactory(Protocol):
    """Opens a fresh, empty :class:`AsyncStore`; ``options`` go to ``open_async``."""

    def __call__(self, clock: Clock | None = None, **options: Any) -> AsyncStore: ...


# -- helpers (public: backend-specific tests use them too) ---------------------------


def scan_all(ns: Namespace, prefix: str = "", limit: int = 1000) -> list[Item]:
    """Every live item under ``prefix``, following cursors to the end."""
    out: list[Item] = []
    cursor: str | None = None
    while True:
        page = ns.scan(prefix=prefix, limit=limit, cursor=cursor)
        out.extend(page.items)
        if page.cursor is None:
            return out
        assert page.items, "a page with a cursor must not be empty"
        cursor = page.cursor


def snapshot(store: Store) -> Snapshot:
    """What a refused request must leave untouched: the log's end and every item."""
    data: dict[str, list[tuple[str, int, str, Any]]] = {}
    for name in store.namespaces():
        # System namespaces (``_timers``, ``_machine.<name>``…) too: a refused request
        # must not have armed a timer or moved a machine either.
        items = scan_all(store._any_namespace(name))
        data[name] = [(it.key, it.version, it.etag, it.value) for it in items]
    return store.last_seq, data


def all_changes(store: Store, namespace: str | None = None, prefix: str = "") -> list[Change]:
    """Every change-log row available now, without waiting."""
    return store.watch(0, namespace=namespace, prefix=prefix, timeout=0).poll()


def assert_sound(store: Store) -> None:
    """The oracle: ``store.check()`` finds no problem (shallow and deep)."""
    report = store.check()
    assert report.ok, report.problems
    deep = store.check(deep=True)
    assert deep.ok, deep.problems


def assert_refused(
    store: Store, field: str, action: Callable[[], object], *, prefix: bool = False
) -> InvalidRequest:
    """``action`` raises InvalidRequest naming ``field`` and changes nothing."""
    before = snapshot(store)
    with pytest.raises(InvalidRequest) as info:
        action()
    err = info.value
    if prefix:
        assert err.field.startswith(field), (err.field, str(err))
    else:
        assert err.field == field, (err.field, str(err))
    assert str(err), "the error must say why"
    assert snapshot(store) == before, "a refused request changed the store"
    return err


def _utf8(key: str) -> bytes:
    return key.encode("utf-8")


#: Keys that exercise UTF-8 byte order (1- to 4-byte sequences, controls, the top).
UNICODE_KEYS = [
    "A",
    "Z",
    "a",
    "aa",
    "a\x01",
    "a\x7f",
    "a\u0080",
    "ä",
    "z",
    "\x7f",
    "\u00ff",
    "\u07ff",
    "\u0800",
    "é",
    "€",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "😀",
    "\U00010000",
    "\U0010ffff",
    "k 1",
    "k\n2",
    "日本語",
]


#: How the earlier incarnation of a key ends (see NoVersionReuseConformance).
REMOVALS = (
    "delete",
    "delete_if_version",
    "idempotent_delete",
    "tx_delete",
    "delete_many",
    "expire_overwrite",
    "expire_sweep",
)
#: How the key is then written again.
RECREATES = ("put", "if_absent", "put_many", "tx_put")
