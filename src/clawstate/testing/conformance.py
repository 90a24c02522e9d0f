"""The conformance suites: one body of tests every store implementation must pass.

Modelled on the ``eventsourcing`` library's recorder test cases.  A backend's
test module (or ``conftest.py``) provides a ``store_factory`` fixture — a
callable ``store_factory(clock=None, **options) -> clawstate.Store`` that opens a
*fresh, empty* store, passing ``options`` (``limits=...``, ``namespaces=...``,
``idempotency_window=...``, ``keyring=...``) on to :func:`clawstate.open` — and
closes what it opened at teardown.  Then::

    from clawstate.testing.conformance import StoreConformance

    class TestMyBackend(StoreConformance):
        pass

runs every test here against it, unchanged.  :class:`AsyncStoreConformance`
does the same for :class:`clawstate.AsyncStore` through an
``async_store_factory`` fixture (the ``anyio`` pytest plugin runs those tests).

Every store a test opens through the suite's ``open_store`` fixture is checked
at teardown with :meth:`Store.check` — the oracle: whatever a test did, the
store must still be sound afterwards.  Every refused request is checked to
have changed nothing: the change log's last seq and a full scan of every
namespace are compared before and after.

This module imports only ``clawstate`` and ``pytest``.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import pytest

from clawstate import (
    AsyncStore,
    Change,
    ConfigError,
    InvalidRequest,
    Item,
    Namespace,
    Store,
    VersionConflict,
)
from clawstate.testing.fakes import FakeClock

__all__ = [
    "AsyncStoreConformance",
    "AsyncStoreFactory",
    "Clock",
    "IdempotencyScopeConformance",
    "KeepTtlConformance",
    "NoVersionReuseConformance",
    "Snapshot",
    "StoreConformance",
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
        items = scan_all(store.namespace(name))
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


class NoVersionReuseConformance:
    """No ABA: a version check never succeeds against another incarnation of a key.

    Versions are compared as numbers, so a key deleted at version 3 and re-created
    at version 1 would let a client holding version 1 or 2 of the *old* incarnation
    overwrite or delete the new one.  Every way a key can end (delete, conditional
    or idempotent delete, a transaction's delete, several deletes in one unit,
    expiry with and without the sweep) is tried against every way it can come back
    (put, create-only put, put_many, a transaction's put); every old version must
    then fail ``if_version`` on put and delete, changing nothing.  Part of
    :class:`StoreConformance` (its ``store`` and ``clock`` fixtures).
    """

    @staticmethod
    def _versions_refused(store: Store, ns: Namespace, key: str, old: list[int]) -> None:
        current = ns.get(key)
        assert current is not None
        assert current.version > max(old), (key, current.version, old)
        before = snapshot(store)
        for version in old:
            with pytest.raises(VersionConflict) as info:
                ns.put(key, "stale write", if_version=version)
            assert (info.value.expected, info.value.actual) == (version, current.version)
            with pytest.raises(VersionConflict):
                ns.delete(key, if_version=version)
            with pytest.raises(VersionConflict), store.transaction() as tx:
                tx.namespace(ns.name).put(key, "stale write", if_version=version)
        assert snapshot(store) == before, "a refused stale version check changed the store"

    @pytest.mark.parametrize("recreate", RECREATES)
    @pytest.mark.parametrize("removal", REMOVALS)
    def test_old_versions_fail_against_a_new_incarnation(
        self, store: Store, clock: FakeClock, removal: str, recreate: str
    ) -> None:
        ns = store.namespace("aba")
        keys = ["k0", "k1"]
        ttl = 5 if removal.startswith("expire") else None
        old = {k: [ns.put(k, i, ttl=ttl).version for i in range(3)] for k in keys}
        assert old == {k: [1, 2, 3] for k in keys}
        if removal == "delete":
            assert all(ns.delete(k) for k in keys)
        elif removal == "delete_if_version":
            assert all(ns.delete(k, if_version=3) for k in keys)
        elif removal == "idempotent_delete":
            assert all(ns.delete(k, idempotency_key=f"del-{k}") for k in keys)
        elif removal == "tx_delete":
            for k in keys:
                with store.transaction() as tx:
                    tx.namespace("aba").delete(k)
        elif removal == "delete_many":
            with store.transaction() as tx:
                for k in keys:
                    tx.namespace("aba").delete(k, if_version=3)
            assert tx.result == [True, True]
        else:
            clock.advance(5)
            if removal == "expire_sweep":
                assert store.sweep()["expired"] == 2
        assert all(ns.get(k) is None for k in keys)
        if recreate == "put":
            new = [ns.put(k, "new") for k in keys]
        elif recreate == "if_absent":
            new = [ns.put(k, "new", if_absent=True) for k in keys]
        elif recreate == "put_many":
            new = ns.put_many({k: "new" for k in keys})
        else:
            with store.transaction() as tx:
                for k in keys:
                    tx.namespace("aba").put(k, "new")
            new = [r for r in tx.result if isinstance(r, Item)]
        assert [it.version for it in new] == [4, 4]
        for k in keys:
            self._versions_refused(store, ns, k, old[k])

    def test_delete_and_recreate_in_one_transaction(self, store: Store) -> None:
        ns = store.namespace("aba")
        old = [ns.put("k", i).version for i in range(2)]
        with store.transaction() as tx:
            tx.namespace("aba").delete("k", if_version=2)
            tx.namespace("aba").put("k", "new")
        assert tx.result[0] is True
        again = tx.result[1]
        assert isinstance(again, Item) and again.version == 3
        self._versions_refused(store, ns, "k", old)

    def test_every_incarnation_gets_new_versions(self, store: Store, clock: FakeClock) -> None:
        """Several lives of one key, ended every way in turn: no version ever repeats."""
        ns = store.namespace("aba")
        given: list[int] = []
        for life in range(6):
            given += [ns.put("k", life, ttl=5).version, ns.put("k", life, ttl=5).version]
            if life % 3 == 0:
                assert ns.delete("k") is True
            else:
                clock.advance(5)
                if life % 3 == 1:
                    store.sweep()
        assert given == sorted(set(given)), given
        ns.put("k", "last")
        self._versions_refused(store, ns, "k", given)

    def test_a_namespace_without_removals_starts_keys_at_1(self, store: Store) -> None:
        """The floor is per namespace: another namespace's deletes do not show in this
        one's versions (a tenant learns nothing of another's deletes from them)."""
        other = store.namespace("other")
        for i in range(3):
            other.put("k", i)
        other.delete("k")
        assert other.put("k2", 1).version == 4
        assert store.namespace("fresh").put("k", 1).version == 1

    def test_a_key_that_was_never_removed_still_counts_from_1(self, store: Store) -> None:
        ns = store.namespace("aba")
        assert ns.put("old", 1).version == 1
        ns.put("gone", 1)
        ns.put("gone", 2)
        ns.delete("gone")
        assert ns.put("old", 2).version == 2  # a live key goes on from its own version
        assert ns.put("new", 1).version == 3  # a new key starts above the removed ones

    def test_delete_of_an_expired_row_then_recreate(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("aba")
        old = [ns.put("k", i, ttl=5).version for i in range(2)]
        clock.advance(5)
        assert ns.delete("k") is False
        assert ns.put("k", "new").version == 3
        self._versions_refused(store, ns, "k", old)


class IdempotencyScopeConformance:
    """Idempotency keys are scoped to what a request writes, never store-wide.

    The same key sent for writes to another namespace is another request: it
    applies, and nothing about the first (that the key was used, for what, where)
    reaches its caller — a token for one namespace cannot probe or squat another's
    keys.  A retry to the same namespaces is still recognised.  Part of
    :class:`StoreConformance`.
    """

    def test_same_key_in_two_namespaces_applies_both(self, store: Store) -> None:
        a, b = store.namespace("a1"), store.namespace("secret")
        first = a.put("k1", "a's value", idempotency_key="req-1")
        other = b.put("k1", "secret value", idempotency_key="req-1")
        assert (first.version, other.version) == (1, 1)
        assert a.get("k1").value == "a's value"  # type: ignore[union-attr]
        assert b.get("k1").value == "secret value"  # type: ignore[union-attr]
        seq = store.last_seq
        assert a.put("k1", "a's value", idempotency_key="req-1").etag == first.etag
        assert b.put("k1", "secret value", idempotency_key="req-1").etag == other.etag
        assert store.last_seq == seq

    @pytest.mark.parametrize("kind", ["put", "put_many", "delete", "transaction"])
    def test_each_write_kind_is_scoped_by_its_namespaces(self, store: Store, kind: str) -> None:
        def run(name: str) -> object:
            ns = store.namespace(name)
            if kind == "put":
                return ns.put("k", 1, idempotency_key="shared").version
            if kind == "put_many":
                return [it.version for it in ns.put_many({"k": 1}, idempotency_key="shared")]
            if kind == "delete":
                ns.put("k", 0)
                return ns.delete("k", idempotency_key="shared")
            with store.transaction(idempotency_key="shared") as tx:
                tx.namespace(name).put("k", 1)
            return [r.version if isinstance(r, Item) else r for r in tx.result]

        first = run("tenant-a")
        seq = store.last_seq
        assert run("tenant-b") == first  # applied, on its own
        assert store.last_seq > seq
        assert store.namespace("tenant-b").get("k") is not None or kind == "delete"

    def test_a_transaction_is_scoped_by_its_set_of_namespaces(self, store: Store) -> None:
        def tx_put(names: list[str], value: int) -> list[Item | bool]:
            with store.transaction(idempotency_key="tx-1") as tx:
                for name in names:
                    tx.namespace(name).put("k", value)
            return tx.result

        first = tx_put(["a", "b"], 1)
        assert tx_put(["a", "b"], 1) == first  # the same request: a retry
        seq = store.last_seq
        alone = tx_put(["a"], 2)  # another set: another request
        assert store.last_seq == seq + 1
        assert isinstance(alone[0], Item) and alone[0].value == 2

    def test_refusals_never_name_another_namespace(self, store: Store) -> None:
        store.namespace("secret-ns").put("hidden-key", "x", idempotency_key="req-7")
        mine = store.namespace("mine")
        mine.put("k", 1, idempotency_key="req-7")
        for attempt in (
            lambda: mine.put("k", 2, idempotency_key="req-7"),
            lambda: mine.put("other", 1, idempotency_key="req-7"),
            lambda: mine.delete("k", idempotency_key="req-7"),
        ):
            err = assert_refused(store, "idempotency_key", attempt)
            for leak in ("secret-ns", "hidden-key"):
                assert leak not in str(err), str(err)


class KeepTtlConformance:
    """``put`` without ``ttl`` drops an existing expiry (as Redis ``SET``);
    ``keep_ttl=True`` keeps the live item's expiry instead (``SET … KEEPTTL``), on
    every path a put takes.  Part of :class:`StoreConformance`."""

    @pytest.mark.parametrize("how", ["put", "if_version", "transaction", "idempotent"])
    def test_keep_ttl_keeps_the_live_expiry(self, store: Store, clock: FakeClock, how: str) -> None:
        ns = store.namespace("ttl")
        t0 = clock()
        first = ns.put("k", 1, ttl=30)
        clock.advance(10)
        if how == "put":
            item = ns.put("k", 2, keep_ttl=True)
        elif how == "if_version":
            item = ns.put("k", 2, keep_ttl=True, if_version=first.version)
        elif how == "idempotent":
            item = ns.put("k", 2, keep_ttl=True, idempotency_key="keep-1")
            assert ns.put("k", 2, keep_ttl=True, idempotency_key="keep-1").etag == item.etag
        else:
            with store.transaction() as tx:
                tx.namespace("ttl").put("k", 2, keep_ttl=True)
            got = tx.result[0]
            assert isinstance(got, Item)
            item = got
        assert (item.version, item.expires_at) == (2, t0 + 30)
        stored = ns.get("k")
        assert stored is not None and stored.expires_at == t0 + 30 and stored.value == 2
        clock.advance(20)
        assert ns.get("k") is None

    def test_put_without_keep_ttl_drops_the_expiry(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("k", 1, ttl=30)
        assert ns.put("k", 2).expires_at is None
        clock.advance(100)
        assert ns.get("k") is not None

    def test_keep_ttl_without_a_live_expiry(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        assert ns.put("new", 1, keep_ttl=True).expires_at is None  # nothing to keep
        ns.put("forever", 1)
        assert ns.put("forever", 2, keep_ttl=True).expires_at is None
        ns.put("dead", 1, ttl=5)
        clock.advance(5)
        again = ns.put("dead", 2, keep_ttl=True)  # an expired item has no expiry to keep
        assert again.expires_at is None
        clock.advance(1000)
        assert [ns.get(k) is not None for k in ("new", "forever", "dead")] == [True] * 3

    def test_keep_ttl_with_a_default_ttl(self, open_store: StoreFactory, clock: FakeClock) -> None:
        store = open_store(clock=clock, namespaces={"sessions": {"default_ttl": 60}})
        sessions = store.namespace("sessions")
        t0 = clock()
        sessions.put("s1", 1, ttl=10)
        clock.advance(5)
        assert sessions.put("s1", 2, keep_ttl=True).expires_at == t0 + 10
        assert sessions.put("s2", 1, keep_ttl=True).expires_at == clock() + 60

    @pytest.mark.parametrize("bad", ["yes", 1, None, "true"])
    def test_keep_ttl_must_be_a_bool(self, store: Store, bad: Any) -> None:
        ns = store.namespace("ttl")
        assert_refused(store, "keep_ttl", lambda: ns.put("k", 1, keep_ttl=bad))

    def test_keep_ttl_with_ttl_is_refused(self, store: Store) -> None:
        ns = store.namespace("ttl")
        ns.put("k", 1, ttl=30)
        assert_refused(store, "keep_ttl", lambda: ns.put("k", 2, ttl=5, keep_ttl=True))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace("ttl").put("k", 2, ttl=5, keep_ttl=True)

        assert_refused(store, "keep_ttl", in_tx)


class StoreConformance(NoVersionReuseConformance, IdempotencyScopeConformance, KeepTtlConformance):
    """The sync facade's contract.  Subclass it where a ``store_factory`` fixture exists."""

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def open_store(self, store_factory: StoreFactory) -> Iterator[StoreFactory]:
        """``store_factory`` whose stores are checked with the oracle at teardown."""
        opened: list[Store] = []

        def factory(clock: Clock | None = None, **options: Any) -> Store:
            store = store_factory(clock=clock, **options)
            opened.append(store)
            return store

        yield factory
        for store in opened:
            assert_sound(store)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, open_store: StoreFactory, clock: FakeClock) -> Store:
        """A fresh store on a FakeClock (so timestamps are exact)."""
        return open_store(clock=clock)

    # -- round trips --------------------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        [
            {"items": [1, 2, 3], "total": 9.5, "open": True, "note": None},
            {"a": {"b": {"c": {"d": [{"e": "deep"}]}}}},
            [1, "two", 3.0, None, False, {"x": []}],
            {},
            [],
            "",
            "plain text",
            0,
            -1,
            2**63 - 1,
            -(2**63),
            3.14159,
            -0.5,
            True,
            False,
            None,
        ],
        ids=lambda v: type(v).__name__ + ":" + repr(v)[:20],
    )
    def test_put_get_round_trip(self, store: Store, value: Any) -> None:
        ns = store.namespace("rt")
        put = ns.put("k", value)
        got = ns.get("k")
        assert got is not None
        assert got.value == value
        assert type(got.value) is type(value)
        assert put.value == value
        assert (got.key, got.namespace, got.version, got.etag) == ("k", "rt", 1, put.etag)

    def test_put_get_unicode_value_and_key(self, store: Store) -> None:
        ns = store.namespace("rt")
        value = {"名前": "Zoë 😀", "emoji": "🎉" * 10, "mixed": "a\u0000b\ttab"}
        ns.put("ключ-😀", value)
        got = ns.get("ключ-😀")
        assert got is not None and got.value == value

    def test_put_get_bytes_value(self, store: Store) -> None:
        ns = store.namespace("rt")
        raw = bytes(range(256)) * 4
        ns.put("blob", raw)
        got = ns.get("blob")
        assert got is not None
        assert got.value == raw and isinstance(got.value, bytes)
        ns.put("empty", b"")
        empty = ns.get("empty")
        assert empty is not None and empty.value == b""

    def test_none_value_is_not_a_missing_key(self, store: Store) -> None:
        ns = store.namespace("rt")
        ns.put("null", None)
        got = ns.get("null")
        assert got is not None and got.value is None
        assert ns.count() == 1

    def test_large_value_round_trips(self, store: Store) -> None:
        ns = store.namespace("rt")
        value = {"rows": [{"i": i, "text": f"row {i} " * 5} for i in range(2000)]}
        ns.put("big", value)
        got = ns.get("big")
        assert got is not None and got.value == value

    def test_namespaces_are_separate(self, store: Store) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k", "in a")
        b.put("k", "in b")
        ga, gb = a.get("k"), b.get("k")
        assert ga is not None and gb is not None
        assert (ga.value, gb.value) == ("in a", "in b")
        assert (ga.version, gb.version) == (1, 1)
        a.delete("k")
        assert a.get("k") is None
        assert b.get("k") is not None
        assert set(store.namespaces()) >= {"a", "b"}

    def test_namespace_handle_is_reused(self, store: Store) -> None:
        assert store.namespace("same") is store.namespace("same")

    # -- versions, etags, timestamps --------------------------------------------------------

    def test_version_is_1_on_create_and_grows_by_one(self, store: Store) -> None:
        ns = store.namespace("v")
        versions = [ns.put("k", i).version for i in range(5)]
        assert versions == [1, 2, 3, 4, 5]
        got = ns.get("k")
        assert got is not None and (got.version, got.value) == (5, 4)

    def test_versions_are_per_key(self, store: Store) -> None:
        ns = store.namespace("v")
        ns.put("a", 1)
        ns.put("a", 2)
        assert ns.put("b", 1).version == 1

    def test_etag_changes_on_every_write(self, store: Store) -> None:
        ns = store.namespace("e")
        etags = [ns.put("k", {"same": "value"}).etag for _ in range(5)]
        assert len(set(etags)) == 5
        got = ns.get("k")
        assert got is not None and got.etag == etags[-1]
        assert all(isinstance(e, str) and e for e in etags)

    def test_etag_differs_after_delete_and_recreate(self, store: Store) -> None:
        ns = store.namespace("e")
        first = ns.put("k", "v")
        assert ns.delete("k") is True
        again = ns.put("k", "v")
        assert again.version == 2  # never an old incarnation's version (no ABA)
        assert again.etag != first.etag

    def test_etag_differs_between_keys(self, store: Store) -> None:
        ns = store.namespace("e")
        assert ns.put("a", 1).etag != ns.put("b", 1).etag

    def test_created_at_stays_and_updated_at_moves(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("t")
        t0 = clock()
        first = ns.put("k", 1)
        assert first.created_at == t0 and first.updated_at == t0
        clock.advance(10)
        second = ns.put("k", 2)
        assert second.created_at == t0
        assert second.updated_at == t0 + 10
        got = ns.get("k")
        assert got is not None
        assert (got.created_at, got.updated_at) == (t0, t0 + 10)
        assert got.expires_at is None

    def test_recreate_after_delete_restarts_created_at(
        self, store: Store, clock: FakeClock
    ) -> None:
        ns = store.namespace("t")
        ns.put("k", 1)
        ns.delete("k")
        clock.advance(5)
        again = ns.put("k", 2)
        assert again.created_at == clock()
        assert again.version == 2

    # -- get / get_many ------------------------------------------------------------------

    def test_get_missing_is_none(self, store: Store) -> None:
        ns = store.namespace("g")
        assert ns.get("nope") is None
        ns.put("other", 1)
        assert ns.get("nope") is None

    def test_get_in_never_written_namespace_is_none(self, store: Store) -> None:
        assert store.namespace("never").get("k") is None
        assert store.namespace("never").count() == 0

    def test_get_many_omits_missing_keys(self, store: Store) -> None:
        ns = store.namespace("g")
        ns.put("a", 1)
        ns.put("c", 3)
        got = ns.get_many(["a", "b", "c", "d"])
        assert sorted(got) == ["a", "c"]
        assert got["a"].value == 1 and got["c"].value == 3
        assert got["a"].key == "a" and got["a"].version == 1

    def test_get_many_with_duplicate_keys(self, store: Store) -> None:
        ns = store.namespace("g")
        ns.put("a", 1)
        got = ns.get_many(["a", "a", "missing", "a"])
        assert list(got) == ["a"]
        assert got["a"].value == 1

    def test_get_many_empty(self, store: Store) -> None:
        ns = store.namespace("g")
        assert ns.get_many([]) == {}
        ns.put("a", 1)
        assert ns.get_many([]) == {}

    def test_get_many_accepts_any_iterable(self, store: Store) -> None:
        ns = store.namespace("g")
        ns.put_many({"a": 1, "b": 2})
        assert sorted(ns.get_many(k for k in "ab")) == ["a", "b"]

    def test_get_many_matches_get(self, store: Store) -> None:
        ns = store.namespace("g")
        for i in range(30):
            ns.put(f"k{i}", {"i": i})
        many = ns.get_many([f"k{i}" for i in range(0, 40, 3)])
        for key, item in many.items():
            assert ns.get(key) == item
        assert len(many) == 10

    # -- put_many --------------------------------------------------------------------

    def test_put_many_writes_all(self, store: Store) -> None:
        ns = store.namespace("pm")
        ns.put("b", "old")
        items = ns.put_many({"a": 1, "b": 2, "c": 3})
        assert [(it.key, it.value, it.version) for it in items] == [
            ("a", 1, 1),
            ("b", 2, 2),
            ("c", 3, 1),
        ]
        assert {k: v.value for k, v in ns.get_many(["a", "b", "c"]).items()} == {
            "a": 1,
            "b": 2,
            "c": 3,
        }

    def test_put_many_accepts_pairs(self, store: Store) -> None:
        ns = store.namespace("pm")
        items = ns.put_many([("x", 1), ("y", 2)])
        assert [it.key for it in items] == ["x", "y"]

    def test_put_many_is_one_atomic_commit(self, store: Store) -> None:
        ns = store.namespace("pm")
        before = store.last_seq
        ns.put_many({f"k{i}": i for i in range(10)})
        changes = all_changes(store, "pm")
        assert [c.seq for c in changes] == list(range(before + 1, before + 11))
        assert store.last_seq == before + 10

    def test_put_many_empty(self, store: Store) -> None:
        ns = store.namespace("pm")
        assert ns.put_many({}) == []
        assert store.last_seq == 0

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(("ok2", {1, 2}), id="set-value"),
            pytest.param(("", 1), id="empty-key"),
            pytest.param(("a\x00b", 1), id="nul-key"),
        ],
    )
    def test_put_many_with_a_bad_item_writes_nothing(
        self, store: Store, bad: tuple[str, Any]
    ) -> None:
        ns = store.namespace("pm")
        ns.put("ok1", "before")
        field = "value" if bad[0] == "ok2" else "key"
        assert_refused(store, field, lambda: ns.put_many([("ok1", "after"), bad, ("ok3", 3)]))
        got = ns.get("ok1")
        assert got is not None and (got.value, got.version) == ("before", 1)
        assert ns.get("ok3") is None

    def test_put_many_with_ttl(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("pm")
        items = ns.put_many({"a": 1, "b": 2}, ttl=30)
        assert all(it.expires_at == clock() + 30 for it in items)
        clock.advance(30)
        assert ns.get_many(["a", "b"]) == {}

    # -- conditional writes ------------------------------------------------------------------

    def test_if_version_success(self, store: Store) -> None:
        ns = store.namespace("cas")
        first = ns.put("k", "a")
        second = ns.put("k", "b", if_version=first.version)
        assert second.version == 2
        got = ns.get("k")
        assert got is not None and (got.value, got.version) == ("b", 2)

    def test_if_version_failure_raises_and_changes_nothing(self, store: Store) -> None:
        ns = store.namespace("cas")
        ns.put("k", "a")
        ns.put("k", "b")
        before = snapshot(store)
        with pytest.raises(VersionConflict) as info:
            ns.put("k", "c", if_version=1)
        err = info.value
        assert (err.key, err.expected, err.actual) == ("k", 1, 2)
        assert snapshot(store) == before
        got = ns.get("k")
        assert got is not None and (got.value, got.version) == ("b", 2)

    def test_if_version_on_missing_key_conflicts(self, store: Store) -> None:
        ns = store.namespace("cas")
        with pytest.raises(VersionConflict) as info:
            ns.put("k", "v", if_version=1)
        assert (info.value.key, info.value.expected, info.value.actual) == ("k", 1, None)
        assert ns.get("k") is None
        assert store.last_seq == 0

    def test_version_conflict_is_a_clawstate_error_with_http_409(self, store: Store) -> None:
        from clawstate import ClawStateError

        ns = store.namespace("cas")
        ns.put("k", 1)
        with pytest.raises(ClawStateError) as info:
            ns.put("k", 2, if_version=7)
        assert isinstance(info.value, VersionConflict)
        problem = info.value.to_problem()
        assert problem["status"] == 409
        assert (problem["key"], problem["expected"], problem["actual"]) == ("k", 7, 1)

    def test_if_absent_creates(self, store: Store) -> None:
        ns = store.namespace("cas")
        item = ns.put("k", "v", if_absent=True)
        assert item.version == 1

    def test_if_absent_on_existing_conflicts(self, store: Store) -> None:
        ns = store.namespace("cas")
        ns.put("k", "first")
        before = snapshot(store)
        with pytest.raises(VersionConflict) as info:
            ns.put("k", "second", if_absent=True)
        assert info.value.key == "k"
        assert info.value.actual == 1
        assert info.value.expected not in (None, 1)
        assert snapshot(store) == before

    def test_if_absent_after_delete_creates(self, store: Store) -> None:
        ns = store.namespace("cas")
        ns.put("k", 1)
        ns.delete("k")
        assert ns.put("k", 2, if_absent=True).version == 2

    def test_if_version_with_if_absent_refused(self, store: Store) -> None:
        ns = store.namespace("cas")
        ns.put("k", 1)
        err = assert_refused(
            store, "if_absent", lambda: ns.put("k", 2, if_version=1, if_absent=True)
        )
        assert "if_version" in str(err)

    # -- delete --------------------------------------------------------------------------

    def test_delete_returns_true_then_false(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        assert ns.delete("k") is True
        assert ns.get("k") is None
        assert ns.delete("k") is False
        assert ns.delete("never") is False

    def test_delete_of_missing_key_writes_no_change(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        seq = store.last_seq
        assert ns.delete("other") is False
        assert store.last_seq == seq

    def test_delete_logs_a_delete_change_with_the_last_version(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        ns.put("k", 2)
        ns.delete("k")
        last = all_changes(store, "d")[-1]
        assert (last.op, last.key, last.version, last.namespace) == ("delete", "k", 2, "d")

    def test_delete_with_right_if_version(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        ns.put("k", 2)
        assert ns.delete("k", if_version=2) is True
        assert ns.get("k") is None

    def test_delete_with_wrong_if_version_conflicts(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        before = snapshot(store)
        with pytest.raises(VersionConflict) as info:
            ns.delete("k", if_version=5)
        assert (info.value.key, info.value.expected, info.value.actual) == ("k", 5, 1)
        assert snapshot(store) == before
        assert ns.get("k") is not None

    def test_delete_missing_with_if_version_conflicts(self, store: Store) -> None:
        ns = store.namespace("d")
        with pytest.raises(VersionConflict) as info:
            ns.delete("k", if_version=1)
        assert info.value.actual is None

    def test_count(self, store: Store) -> None:
        ns = store.namespace("c")
        assert ns.count() == 0
        ns.put_many({f"k{i}": i for i in range(7)})
        ns.delete("k3")
        assert ns.count() == 6
        store.namespace("other").put("x", 1)
        assert ns.count() == 6

    # -- TTL ------------------------------------------------------------------------------

    def test_ttl_sets_expires_at(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        item = ns.put("k", 1, ttl=60)
        assert item.expires_at == clock() + 60
        got = ns.get("k")
        assert got is not None and got.expires_at == clock() + 60

    def test_expired_item_is_invisible_at_once(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("k", {"status": "open"}, ttl=10)
        clock.advance(9.5)
        assert ns.get("k") is not None
        clock.advance(0.5)  # expires_at <= now: gone, without any sweep
        assert ns.get("k") is None

    def test_expired_item_absent_from_every_read(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("live", {"status": "open"})
        ns.put("dying", {"status": "open"}, ttl=5)
        clock.advance(5)
        assert ns.get("dying") is None
        assert list(ns.get_many(["live", "dying"])) == ["live"]
        assert [it.key for it in scan_all(ns)] == ["live"]
        assert [it.key for it in ns.scan(prefix="d").items] == []
        page = ns.query({"filter": {"EQ": {"status": "open"}}})
        assert [it.key for it in page.items] == ["live"]
        assert ns.count() == 1

    def test_put_replaces_ttl(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("k", 1, ttl=5)
        ns.put("k", 2)  # no ttl: lives forever
        clock.advance(100)
        got = ns.get("k")
        assert got is not None and got.expires_at is None and got.version == 2

    def test_reput_after_expiry_goes_on_at_the_next_version(
        self, store: Store, clock: FakeClock
    ) -> None:
        ns = store.namespace("ttl")
        ns.put("k", 1, ttl=5)
        first = ns.put("k", 2, ttl=5)
        assert first.version == 2
        clock.advance(6)
        again = ns.put("k", 3)
        assert again.version == 3  # a new incarnation (created_at restarts), no old version
        assert again.created_at == clock()
        assert again.etag != first.etag

    def test_expired_item_fails_if_version_and_allows_if_absent(
        self, store: Store, clock: FakeClock
    ) -> None:
        ns = store.namespace("ttl")
        ns.put("k", 1, ttl=5)
        clock.advance(5)
        with pytest.raises(VersionConflict) as info:
            ns.put("k", 2, if_version=1)
        assert info.value.actual is None
        assert ns.put("k", 3, if_absent=True).version == 2

    def test_delete_of_expired_item_is_false(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("k", 1, ttl=5)
        clock.advance(5)
        assert ns.delete("k") is False

    def test_sweep_purges_expired_and_logs_expire(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("keep", 1)
        ns.put("k", 1, ttl=5)
        ns.put("k", 2, ttl=5)
        clock.advance(5)
        seq = store.last_seq
        result = store.sweep()
        assert result["expired"] == 1
        changes = all_changes(store, "ttl")
        assert changes[-1].seq == seq + 1
        expire = changes[-1]
        assert (expire.op, expire.key, expire.version, expire.namespace) == (
            "expire",
            "k",
            2,
            "ttl",
        )
        assert expire.ts == clock()
        assert store.sweep()["expired"] == 0
        assert store.last_seq == seq + 1
        assert [it.key for it in scan_all(ns)] == ["keep"]

    def test_sweep_keeps_live_items(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("ttl")
        ns.put("a", 1, ttl=100)
        ns.put("b", 1)
        clock.advance(50)
        assert store.sweep()["expired"] == 0
        assert ns.count() == 2

    def test_default_ttl_from_namespace_policy(
        self, open_store: StoreFactory, clock: FakeClock
    ) -> None:
        store = open_store(clock=clock, namespaces={"sessions": {"default_ttl": 60}})
        sessions = store.namespace("sessions")
        item = sessions.put("s1", {"user": 1})
        assert item.expires_at == clock() + 60
        explicit = sessions.put("s2", {"user": 2}, ttl=5)
        assert explicit.expires_at == clock() + 5
        assert store.namespace("other").put("k", 1).expires_at is None
        clock.advance(60)
        assert sessions.get("s1") is None

    # -- idempotency ----------------------------------------------------------------------

    def test_idempotent_put_applies_once(self, store: Store) -> None:
        ns = store.namespace("idem")
        first = ns.put("k", "v1", idempotency_key="req-1")
        ns.put("k", "v2")  # someone else writes in between
        seq = store.last_seq
        log = all_changes(store)
        retry = ns.put("k", "v1", idempotency_key="req-1")
        assert (retry.version, retry.etag) == (first.version, first.etag)
        assert store.last_seq == seq
        assert all_changes(store) == log
        got = ns.get("k")
        assert got is not None and (got.value, got.version) == ("v2", 2)

    def test_idempotent_put_retried_right_away(self, store: Store) -> None:
        ns = store.namespace("idem")
        first = ns.put("k", {"n": 1}, idempotency_key="req-1")
        for _ in range(3):
            assert ns.put("k", {"n": 1}, idempotency_key="req-1") == first
        got = ns.get("k")
        assert got is not None and got.version == 1
        assert len(all_changes(store)) == 1

    def test_idempotent_delete_applies_once(self, store: Store) -> None:
        ns = store.namespace("idem")
        ns.put("k", 1)
        assert ns.delete("k", idempotency_key="del-1") is True
        ns.put("k", 2)  # recreated
        seq = store.last_seq
        assert ns.delete("k", idempotency_key="del-1") is True
        assert store.last_seq == seq
        got = ns.get("k")
        assert got is not None and got.value == 2

    def test_idempotent_put_many_applies_once(self, store: Store) -> None:
        ns = store.namespace("idem")
        first = ns.put_many({"a": 1, "b": 2}, idempotency_key="batch-1")
        ns.put("a", 100)
        seq = store.last_seq
        retry = ns.put_many({"a": 1, "b": 2}, idempotency_key="batch-1")
        assert [(it.key, it.version, it.etag) for it in retry] == [
            (it.key, it.version, it.etag) for it in first
        ]
        assert store.last_seq == seq
        got = ns.get("a")
        assert got is not None and (got.value, got.version) == (100, 2)

    def test_idempotent_transaction_applies_once(self, store: Store) -> None:
        def run() -> list[Item | bool]:
            with store.transaction(idempotency_key="tx-1") as tx:
                tx.namespace("orders").put("o1", {"total": 9})
                tx.namespace("stock").put("sku", {"n": 1})
            return tx.result

        first = run()
        store.namespace("orders").put("o1", {"total": 10})
        seq = store.last_seq
        log = all_changes(store)
        retry = run()
        assert store.last_seq == seq
        assert all_changes(store) == log
        assert len(retry) == len(first) == 2
        for a, b in zip(first, retry, strict=True):
            assert isinstance(a, Item) and isinstance(b, Item)
            assert (a.key, a.version, a.etag) == (b.key, b.version, b.etag)
        got = store.namespace("orders").get("o1")
        assert got is not None and got.value == {"total": 10}

    def test_idempotency_key_reused_for_another_request_refused(self, store: Store) -> None:
        ns = store.namespace("idem")
        ns.put("k", "v1", idempotency_key="req-1")
        assert_refused(
            store, "idempotency_key", lambda: ns.put("k", "other", idempotency_key="req-1")
        )
        assert_refused(
            store, "idempotency_key", lambda: ns.put("k2", "v1", idempotency_key="req-1")
        )
        assert_refused(store, "idempotency_key", lambda: ns.delete("k", idempotency_key="req-1"))
        assert_refused(
            store, "idempotency_key", lambda: ns.put("k", "v1", ttl=5, idempotency_key="req-1")
        )

    def test_idempotency_key_validated(self, store: Store) -> None:
        ns = store.namespace("idem")
        assert_refused(store, "idempotency_key", lambda: ns.put("k", 1, idempotency_key=""))
        assert_refused(
            store,
            "idempotency_key",
            lambda: ns.put("k", 1, idempotency_key=1),  # type: ignore[arg-type]
        )

    def test_failed_conditional_write_does_not_burn_the_idempotency_key(self, store: Store) -> None:
        ns = store.namespace("idem")
        ns.put("k", 1)
        with pytest.raises(VersionConflict):
            ns.put("k", 2, if_version=9, idempotency_key="req-1")
        assert ns.put("k", 2, if_version=1, idempotency_key="req-1").version == 2

    def test_idempotency_key_forgotten_after_window_with_sweep(
        self, open_store: StoreFactory, clock: FakeClock
    ) -> None:
        store = open_store(clock=clock, idempotency_window=60)
        ns = store.namespace("idem")
        ns.put("k", "v1", idempotency_key="req-1")
        clock.advance(61)
        assert store.sweep()["idempotency_keys"] >= 1
        again = ns.put("k", "different", idempotency_key="req-1")
        assert again.version == 2
        got = ns.get("k")
        assert got is not None and got.value == "different"

    def test_idempotency_key_forgotten_after_window_without_sweep(
        self, open_store: StoreFactory, clock: FakeClock
    ) -> None:
        store = open_store(clock=clock, idempotency_window=60)
        ns = store.namespace("idem")
        ns.put("k", "v1", idempotency_key="req-1")
        clock.advance(30)
        assert ns.put("k", "v1", idempotency_key="req-1").version == 1  # still remembered
        clock.advance(31)
        assert ns.put("k", "v1", idempotency_key="req-1").version == 2  # applied again
        # ... and remembered afresh from now on.
        assert ns.put("k", "v1", idempotency_key="req-1").version == 2
        got = ns.get("k")
        assert got is not None and got.version == 2

    # -- scan -----------------------------------------------------------------------------

    def test_scan_prefix(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({"a1": 1, "b1": 2, "a2": 3, "ab": 4, "a": 5, "B": 6})
        assert [it.key for it in ns.scan(prefix="a").items] == ["a", "a1", "a2", "ab"]
        assert [it.key for it in ns.scan(prefix="b").items] == ["b1"]
        assert [it.key for it in ns.scan(prefix="zz").items] == []
        assert [it.key for it in ns.scan().items] == ["B", "a", "a1", "a2", "ab", "b1"]
        values = {it.key: it.value for it in ns.scan(prefix="a").items}
        assert values == {"a": 5, "a1": 1, "a2": 3, "ab": 4}

    def test_scan_items_carry_metadata(self, store: Store) -> None:
        ns = store.namespace("s")
        put = ns.put("k", {"v": 1})
        (item,) = ns.scan().items
        assert item == put

    def test_scan_limit_and_last_page_cursor(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({f"k{i}": i for i in range(4)})
        first = ns.scan(limit=2)
        assert [it.key for it in first.items] == ["k0", "k1"]
        assert first.cursor is not None
        second = ns.scan(limit=2, cursor=first.cursor)
        assert [it.key for it in second.items] == ["k2", "k3"]
        assert second.cursor is None
        assert ns.scan(limit=10).cursor is None

    def test_scan_empty_namespace(self, store: Store) -> None:
        page = store.namespace("empty").scan()
        assert page.items == [] and page.cursor is None
        assert len(page) == 0

    def test_scan_paging_visits_every_key_once_in_utf8_order(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({k: i for i, k in enumerate(UNICODE_KEYS)})
        expected = sorted(UNICODE_KEYS, key=_utf8)
        for limit in (1, 3, 7, len(UNICODE_KEYS), 1000):
            seen = [it.key for it in scan_all(ns, limit=limit)]
            assert seen == expected, limit

    def test_scan_prefix_paging_with_non_ascii(self, store: Store) -> None:
        ns = store.namespace("s")
        keys = [f"ü{c}" for c in "aé€😀z"] + ["u", "v", "ü", "üü", "ý"]
        ns.put_many({k: 1 for k in keys})
        got = [it.key for it in scan_all(ns, prefix="ü", limit=2)]
        assert got == sorted([k for k in keys if k.startswith("ü")], key=_utf8)

    def test_scan_prefix_at_top_of_unicode(self, store: Store) -> None:
        ns = store.namespace("s")
        top = "\U0010ffff"
        ns.put_many({top: 1, top + "a": 2, top + top: 3, "\uffff": 4, "a": 5})
        assert [it.key for it in scan_all(ns, prefix=top, limit=1)] == [
            top,
            top + "a",
            top + top,
        ]

    def test_scan_is_stable_under_concurrent_inserts_and_deletes(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({f"k{i:02d}": i for i in range(20)})
        first = ns.scan(limit=5)
        assert [it.key for it in first.items] == [f"k{i:02d}" for i in range(5)]
        # Between pages: insert before and after the cursor, delete before and after it.
        ns.put("k02x", "before cursor")
        ns.put("k10x", "after cursor")
        ns.delete("k01")
        ns.delete("k07")
        ns.put("k04", "rewritten at the cursor")
        seen = [it.key for it in first.items]
        cursor = first.cursor
        while cursor is not None:
            page = ns.scan(limit=5, cursor=cursor)
            seen.extend(it.key for it in page.items)
            cursor = page.cursor
        assert len(seen) == len(set(seen)), "a key was visited twice"
        survivors = {f"k{i:02d}" for i in range(20)} - {"k07"}
        assert survivors <= set(seen), "a key that existed throughout was skipped"
        assert "k07" not in seen and "k10x" in seen and "k02x" not in seen

    def test_scan_cursor_from_another_prefix_refused(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({f"a{i}": i for i in range(5)} | {f"b{i}": i for i in range(5)})
        page = ns.scan(prefix="a", limit=2)
        assert page.cursor is not None
        cursor = page.cursor
        assert_refused(store, "cursor", lambda: ns.scan(prefix="b", limit=2, cursor=cursor))
        assert_refused(store, "cursor", lambda: ns.scan(limit=2, cursor=cursor))

    @pytest.mark.parametrize("bad", ["!!!", "not-a-cursor", "AAAA", "é", "", 12])
    def test_scan_bad_cursor_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("s")
        ns.put("k", 1)
        assert_refused(store, "cursor", lambda: ns.scan(cursor=bad))

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", 10**9])
    def test_scan_bad_limit_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("s")
        ns.put("k", 1)
        assert_refused(store, "limit", lambda: ns.scan(limit=bad))

    @pytest.mark.parametrize("bad", ["a\x00", 5, None, "\ud800"])
    def test_scan_bad_prefix_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("s")
        ns.put("k", 1)
        assert_refused(store, "prefix", lambda: ns.scan(prefix=bad))

    # -- query ----------------------------------------------------------------------------

    ORDERS: ClassVar[dict[str, Any]] = {
        "o1": {"status": "open", "total": 30, "customer": {"tier": "gold", "city": "Oslo"}},
        "o2": {"status": "closed", "total": 10, "customer": {"tier": "silver", "city": "Bergen"}},
        "o3": {"status": "open", "total": 20, "customer": {"tier": "silver", "city": "Oslo"}},
        "o4": {"status": "open", "total": 50, "customer": {"tier": "gold", "city": "Tromsø"}},
        "o5": {"status": "void", "total": 20, "customer": {"tier": "bronze", "city": "Bergen"}},
        "o6": {"status": "open", "total": 5.5, "customer": {"city": "Oslo"}},
    }

    def _orders(self, store: Store) -> Namespace:
        ns = store.namespace("orders")
        ns.put_many(self.ORDERS)
        return ns

    @staticmethod
    def _keys(ns: Namespace, query: dict[str, Any]) -> list[str]:
        return [it.key for it in ns.query(query).items]

    def test_query_eq(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {"EQ": {"status": "open"}}}) == ["o1", "o3", "o4", "o6"]
        items = ns.query({"filter": {"EQ": {"status": "closed"}}}).items
        assert [(it.key, it.value, it.version) for it in items] == [("o2", self.ORDERS["o2"], 1)]

    def test_query_eq_on_nested_path(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {"EQ": {"customer.tier": "gold"}}}) == ["o1", "o4"]
        assert self._keys(ns, {"filter": {"EQ": {"customer.city": "Tromsø"}}}) == ["o4"]
        assert self._keys(ns, {"filter": {"EQ": {"customer.missing": "x"}}}) == []

    def test_query_in(self, store: Store) -> None:
        ns = self._orders(store)
        query = {"filter": {"IN": {"customer.tier": ["silver", "bronze"]}}}
        assert self._keys(ns, query) == ["o2", "o3", "o5"]

    def test_query_and_or(self, store: Store) -> None:
        ns = self._orders(store)
        both = {"filter": {"AND": [{"EQ": {"status": "open"}}, {"EQ": {"customer.city": "Oslo"}}]}}
        assert self._keys(ns, both) == ["o1", "o3", "o6"]
        either = {"filter": {"OR": [{"EQ": {"status": "void"}}, {"EQ": {"customer.tier": "gold"}}]}}
        assert self._keys(ns, either) == ["o1", "o4", "o5"]
        nested = {
            "filter": {
                "AND": [
                    {"OR": [{"EQ": {"status": "open"}}, {"EQ": {"status": "closed"}}]},
                    {"GT": {"total": 15}},
                ]
            }
        }
        assert self._keys(ns, nested) == ["o1", "o3", "o4"]

    @pytest.mark.parametrize(
        ("op", "operand", "expected"),
        [
            ("GT", 20, ["o1", "o4"]),
            ("GTE", 20, ["o1", "o3", "o4", "o5"]),
            ("LT", 20, ["o2", "o6"]),
            ("LTE", 20, ["o2", "o3", "o5", "o6"]),
            ("GT", 5.5, ["o1", "o2", "o3", "o4", "o5"]),
        ],
    )
    def test_query_range(self, store: Store, op: str, operand: float, expected: list[str]) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {op: {"total": operand}}}) == expected

    def test_query_range_on_strings(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {"GTE": {"customer.city": "Oslo"}}}) == [
            "o1",
            "o3",
            "o4",
            "o6",
        ]
        assert self._keys(ns, {"filter": {"LT": {"customer.city": "Oslo"}}}) == ["o2", "o5"]

    def test_query_sort_asc_and_desc(self, store: Store) -> None:
        ns = self._orders(store)
        asc = {"sort": [{"key": "total", "order": "ASC"}]}
        assert self._keys(ns, asc) == ["o6", "o2", "o3", "o5", "o1", "o4"]
        desc = {"sort": [{"key": "total", "order": "DESC"}]}
        # Ties (o3, o5 at 20) break by key ascending whatever the order.
        assert self._keys(ns, desc) == ["o4", "o1", "o3", "o5", "o2", "o6"]
        default = {"sort": [{"key": "total"}]}
        assert self._keys(ns, default) == self._keys(ns, asc)

    def test_query_sort_by_nested_path_with_filter(self, store: Store) -> None:
        ns = self._orders(store)
        query = {
            "filter": {"EQ": {"status": "open"}},
            "sort": [{"key": "customer.city", "order": "DESC"}, {"key": "total"}],
        }
        assert self._keys(ns, query) == ["o4", "o6", "o3", "o1"]

    def test_query_without_filter_returns_all_in_key_order(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {}) == sorted(self.ORDERS)

    def test_query_paging_with_tokens(self, store: Store) -> None:
        ns = self._orders(store)
        base: dict[str, Any] = {"sort": [{"key": "total", "order": "DESC"}]}
        full = self._keys(ns, base)
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page_spec: dict[str, Any] = {"limit": 2}
            if token is not None:
                page_spec["token"] = token
            page = ns.query({**base, "page": page_spec})
            assert len(page.items) <= 2
            seen.extend(it.key for it in page.items)
            pages += 1
            token = page.cursor
            if token is None:
                break
            assert pages < 10
        assert seen == full
        assert pages in (3, 4)

    def test_query_page_limit(self, store: Store) -> None:
        ns = self._orders(store)
        page = ns.query({"page": {"limit": 4}})
        assert [it.key for it in page.items] == ["o1", "o2", "o3", "o4"]
        assert page.cursor is not None

    def test_query_token_from_another_query_refused(self, store: Store) -> None:
        ns = self._orders(store)
        page = ns.query({"filter": {"EQ": {"status": "open"}}, "page": {"limit": 1}})
        assert page.cursor is not None
        token = page.cursor
        err = assert_refused(
            store,
            "query",
            lambda: ns.query({"filter": {"EQ": {"status": "void"}}, "page": {"token": token}}),
            prefix=True,
        )
        assert err.field.startswith("query.page")

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param({"filter": {"NOPE": {"a": 1}}}, id="unknown-operator"),
            pytest.param({"filter": {"EQ": {"a": 1, "b": 2}}}, id="two-keys"),
            pytest.param({"filter": {"EQ": {"a": [1]}}}, id="non-scalar-eq"),
            pytest.param({"filter": {"IN": {"a": []}}}, id="empty-in"),
            pytest.param({"filter": {"AND": []}}, id="empty-and"),
            pytest.param({"filter": {"GT": {"a": None}}}, id="null-range"),
            pytest.param({"sort": [{"key": "a", "order": "UP"}]}, id="bad-order"),
            pytest.param({"page": {"limit": 0}}, id="zero-limit"),
            pytest.param({"page": {"limit": 10**9}}, id="huge-limit"),
            pytest.param({"page": {"token": "garbage!"}}, id="bad-token"),
            pytest.param({"where": {}}, id="unknown-field"),
            pytest.param([], id="not-an-object"),
            pytest.param("{not json", id="bad-json-text"),
            pytest.param({"filter": {"EQ": {"a..b": 1}}}, id="empty-path-segment"),
        ],
    )
    def test_query_invalid_refused(self, store: Store, bad: Any) -> None:
        ns = self._orders(store)
        assert_refused(store, "query", lambda: ns.query(bad), prefix=True)

    def test_query_too_deep_refused(self, store: Store) -> None:
        ns = self._orders(store)
        node: dict[str, Any] = {"EQ": {"status": "open"}}
        for _ in range(40):
            node = {"AND": [node]}
        err = assert_refused(store, "query", lambda: ns.query({"filter": node}), prefix=True)
        assert err.limit is not None

    def test_query_accepts_json_text(self, store: Store) -> None:
        ns = self._orders(store)
        page = ns.query('{"filter": {"EQ": {"status": "void"}}}')
        assert [it.key for it in page.items] == ["o5"]

    # -- watch / change log --------------------------------------------------------------

    def test_watch_yields_past_changes_gap_free(self, store: Store) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k1", 1)
        b.put("k2", 2)
        a.put("k1", 3)
        a.delete("k1")
        b.put_many({"x": 1, "y": 2})
        changes = list(store.watch(0, timeout=0))
        assert [c.seq for c in changes] == list(range(1, 7))
        assert [(c.namespace, c.key, c.op, c.version) for c in changes] == [
            ("a", "k1", "put", 1),
            ("b", "k2", "put", 1),
            ("a", "k1", "put", 2),
            ("a", "k1", "delete", 2),
            ("b", "x", "put", 1),
            ("b", "y", "put", 1),
        ]
        assert store.last_seq == 6

    def test_watch_change_timestamps_follow_the_clock(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("w")
        ns.put("a", 1)
        clock.advance(7)
        ns.put("b", 1)
        changes = list(store.watch(0, timeout=0))
        assert [c.ts for c in changes] == [clock() - 7, clock()]

    def test_watch_from_seq_skips_earlier(self, store: Store) -> None:
        ns = store.namespace("w")
        for i in range(5):
            ns.put(f"k{i}", i)
        changes = list(store.watch(3, timeout=0))
        assert [c.seq for c in changes] == [4, 5]
        assert [c.key for c in changes] == ["k3", "k4"]

    def test_watch_resumes_from_last_seq(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("a", 1)
        ns.put("b", 1)
        watch = store.watch(0, timeout=0)
        first = list(watch)
        ns.put("c", 1)
        resumed = list(store.watch(watch.last_seq, timeout=0))
        assert [c.key for c in first] == ["a", "b"]
        assert [c.key for c in resumed] == ["c"]

    def test_watch_from_none_starts_at_the_end(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("old1", 1)
        ns.put("old2", 1)
        watch = ns.watch(from_seq=None, timeout=0)
        assert watch.poll() == []
        ns.put("new", 1)
        changes = list(watch)
        assert [(c.key, c.seq) for c in changes] == [("new", 3)]

    def test_watch_timeout_ends_iteration(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("a", 1)
        ns.put("b", 1)
        started = time.monotonic()
        changes = list(ns.watch(0, timeout=0.3))
        elapsed = time.monotonic() - started
        assert [c.key for c in changes] == ["a", "b"]
        assert 0.25 <= elapsed < 5

    def test_watch_yields_live_changes_from_another_thread(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("before", 0)
        watch = store.watch(0, timeout=10)
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                time.sleep(0.05)
                for i in range(5):
                    ns.put(f"live{i}", i)
                    time.sleep(0.01)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        got: list[Change] = []
        for change in watch:
            got.append(change)
            if len(got) == 6:
                break
        thread.join(10)
        assert not errors
        assert [c.key for c in got] == ["before"] + [f"live{i}" for i in range(5)]
        assert [c.seq for c in got] == list(range(1, 7))

    def test_watch_namespace_filter(self, store: Store) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k1", 1)
        b.put("k2", 1)
        a.put("k3", 1)
        b.put("k4", 1)
        on_a = list(store.watch(0, namespace="a", timeout=0.2))
        assert [(c.namespace, c.key) for c in on_a] == [("a", "k1"), ("a", "k3")]
        on_b = list(b.watch(0, timeout=0.2))
        assert [(c.namespace, c.key) for c in on_b] == [("b", "k2"), ("b", "k4")]
        assert [c.seq for c in on_a] == [1, 3]

    def test_watch_namespace_filter_times_out_while_other_namespaces_write(
        self, store: Store
    ) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k", 1)
        b.put("k", 1)  # a later change elsewhere must not keep the watch spinning
        started = time.monotonic()
        changes = list(a.watch(0, timeout=0.3))
        assert [c.key for c in changes] == ["k"]
        assert time.monotonic() - started < 5

    def test_watch_namespace_filter_sees_live_changes_after_foreign_ones(
        self, store: Store
    ) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        watch = a.watch(None, timeout=10)

        def writer() -> None:
            time.sleep(0.05)
            b.put("noise", 1)
            time.sleep(0.05)
            a.put("signal", 1)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        first = next(watch)
        thread.join(10)
        assert (first.namespace, first.key) == ("a", "signal")

    def test_watch_prefix_filter(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("user:1", 1)
        ns.put("order:1", 1)
        ns.put("user:2", 1)
        changes = list(ns.watch(0, prefix="user:", timeout=0.2))
        assert [c.key for c in changes] == ["user:1", "user:2"]
        store_wide = list(store.watch(0, prefix="order:", timeout=0.2))
        assert [c.key for c in store_wide] == ["order:1"]

    def test_watch_close_from_another_thread_stops_it(self, store: Store) -> None:
        ns = store.namespace("w")
        watch = ns.watch(None)  # no timeout: waits until closed
        got: list[Change] = []
        done = threading.Event()

        def reader() -> None:
            for change in watch:
                got.append(change)
            done.set()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        ns.put("a", 1)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        watch.close()
        assert done.wait(5), "close() did not stop the watch"
        thread.join(1)
        assert [c.key for c in got] == ["a"]

    @pytest.mark.parametrize("bad", [-1, True, "0", 1.5])
    def test_watch_bad_from_seq_refused(self, store: Store, bad: Any) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.watch(bad)
        assert info.value.field == "from_seq"

    def test_watch_bad_timeout_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.watch(0, timeout=-1)
        assert info.value.field == "timeout"

    def test_every_write_appends_one_change(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("log")
        ns.put("a", 1)
        ns.put("a", 2, if_version=1)
        ns.put("b", 1, if_absent=True)
        ns.put_many({"c": 1, "d": 1})
        ns.delete("a")
        ns.delete("missing")
        with store.transaction() as tx:
            tx.namespace("log").put("e", 1)
            tx.namespace("log").delete("b")
        ns.put("t", 1, ttl=1)
        clock.advance(1)
        store.sweep()
        ops = [(c.key, c.op, c.version) for c in all_changes(store)]
        assert ops == [
            ("a", "put", 1),
            ("a", "put", 2),
            ("b", "put", 1),
            ("c", "put", 1),
            ("d", "put", 1),
            ("a", "delete", 2),
            ("e", "put", 3),  # new keys start above the namespace's deleted versions
            ("b", "delete", 1),
            ("t", "put", 3),
            ("t", "expire", 3),
        ]
        assert [c.seq for c in all_changes(store)] == list(range(1, 11))

    # -- transactions -------------------------------------------------------------------

    def test_transaction_across_namespaces_commits_all(self, store: Store) -> None:
        store.namespace("stock").put("sku9", {"n": 5})
        with store.transaction() as tx:
            tx.namespace("orders").put("o1", {"total": 9})
            tx.namespace("stock").put("sku9", {"n": 4}, if_version=1)
        order = store.namespace("orders").get("o1")
        stock = store.namespace("stock").get("sku9")
        assert order is not None and order.value == {"total": 9}
        assert stock is not None and (stock.value, stock.version) == ({"n": 4}, 2)

    def test_transaction_result_list(self, store: Store) -> None:
        store.namespace("b").put("gone", 1)
        with store.transaction() as tx:
            tx.namespace("a").put("x", "X")
            tx.namespace("b").put("y", "Y", ttl=60)
            tx.namespace("b").delete("gone")
            tx.namespace("b").delete("never-there")
        result = tx.result
        assert len(result) == 4
        x, y, gone, never = result
        assert isinstance(x, Item) and (x.key, x.value, x.version, x.namespace) == (
            "x",
            "X",
            1,
            "a",
        )
        assert isinstance(y, Item) and y.expires_at is not None and y.namespace == "b"
        assert gone is True and never is False
        got = store.namespace("a").get("x")
        assert got is not None and got.etag == x.etag

    def test_transaction_commit_returns_result(self, store: Store) -> None:
        tx = store.transaction()
        tx.namespace("a").put("k", 1)
        result = tx.commit()
        assert len(result) == 1 and isinstance(result[0], Item)
        assert result == tx.result

    def test_transaction_is_one_atomic_commit(self, store: Store) -> None:
        store.namespace("a").put("first", 1)
        with store.transaction() as tx:
            for i in range(5):
                tx.namespace("a" if i % 2 else "b").put(f"k{i}", i)
        seqs = [c.seq for c in all_changes(store)]
        assert seqs == list(range(1, 7))

    def test_transaction_failed_if_version_anywhere_writes_nothing(self, store: Store) -> None:
        store.namespace("orders").put("o1", {"total": 1})
        store.namespace("stock").put("sku9", {"n": 5})
        before = snapshot(store)
        with pytest.raises(VersionConflict) as info:
            with store.transaction() as tx:
                tx.namespace("orders").put("o1", {"total": 2}, if_version=1)  # fine
                tx.namespace("orders").put("o2", {"total": 3})
                tx.namespace("stock").put("sku9", {"n": 4}, if_version=7)  # fails
        assert (info.value.key, info.value.expected, info.value.actual) == ("sku9", 7, 1)
        assert snapshot(store) == before
        assert store.namespace("orders").get("o2") is None

    def test_transaction_failed_if_absent_writes_nothing(self, store: Store) -> None:
        store.namespace("a").put("taken", 1)
        before = snapshot(store)
        with pytest.raises(VersionConflict):
            with store.transaction() as tx:
                tx.namespace("b").put("new", 1)
                tx.namespace("a").put("taken", 2, if_absent=True)
        assert snapshot(store) == before

    def test_transaction_failed_delete_condition_writes_nothing(self, store: Store) -> None:
        store.namespace("a").put("k", 1)
        before = snapshot(store)
        with pytest.raises(VersionConflict):
            with store.transaction() as tx:
                tx.namespace("a").put("other", 1)
                tx.namespace("a").delete("k", if_version=3)
        assert snapshot(store) == before

    def test_transaction_rolls_back_on_exception(self, store: Store) -> None:
        store.namespace("a").put("k", 1)
        before = snapshot(store)

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            with store.transaction() as tx:
                tx.namespace("a").put("k", 2)
                tx.namespace("b").put("j", 1)
                raise Boom
        assert snapshot(store) == before
        assert tx.result == []

    def test_transaction_writes_see_earlier_writes_of_the_same_transaction(
        self, store: Store
    ) -> None:
        with store.transaction() as tx:
            tx.namespace("a").put("k", 1)
            tx.namespace("a").put("k", 2, if_version=1)
            tx.namespace("a").put("k", 3)
        got = store.namespace("a").get("k")
        assert got is not None and (got.value, got.version) == (3, 3)
        assert [r.version for r in tx.result if isinstance(r, Item)] == [1, 2, 3]

    def test_transaction_reads_see_committed_state(self, store: Store) -> None:
        store.namespace("a").put("k", "committed")
        with store.transaction() as tx:
            ns = tx.namespace("a")
            current = ns.get("k")
            assert current is not None
            ns.put("k", current.value + "!", if_version=current.version)
            still = ns.get("k")
            assert still is not None and still.value == "committed"
        got = store.namespace("a").get("k")
        assert got is not None and got.value == "committed!"

    def test_empty_transaction_writes_nothing(self, store: Store) -> None:
        with store.transaction() as tx:
            pass
        assert tx.result == []
        assert store.last_seq == 0

    def test_transaction_cannot_be_used_after_commit(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.namespace("a").put("k", 1)
        with pytest.raises(InvalidRequest) as info:
            tx.namespace("a")
        assert info.value.field == "transaction"
        got = store.namespace("a").get("k")
        assert got is not None and got.version == 1

    def test_transaction_rejects_bad_input_at_once(self, store: Store) -> None:
        store.namespace("a").put("k", 1)
        before = snapshot(store)
        with pytest.raises(InvalidRequest) as info:
            with store.transaction() as tx:
                tx.namespace("a").put("ok", 1)
                tx.namespace("a").put("bad", {1, 2})
        assert info.value.field == "value"
        assert snapshot(store) == before

    def test_transaction_batch_limit(self, open_store: StoreFactory) -> None:
        store = open_store(limits={"max_batch": 5})
        ns = store.namespace("a")
        ns.put("k", 1)
        before = snapshot(store)
        with pytest.raises(InvalidRequest) as info:
            with store.transaction() as tx:
                for i in range(6):
                    tx.namespace("a").put(f"t{i}", i)
        assert info.value.field == "transaction"
        assert info.value.limit == 5
        assert snapshot(store) == before
        with store.transaction() as tx:
            for i in range(5):
                tx.namespace("a").put(f"t{i}", i)
        assert ns.count() == 6

    def test_batch_limit_applies_to_put_many_and_get_many(self, open_store: StoreFactory) -> None:
        store = open_store(limits={"max_batch": 5})
        ns = store.namespace("a")
        assert_refused(store, "items", lambda: ns.put_many({f"k{i}": i for i in range(6)}))
        assert len(ns.put_many({f"k{i}": i for i in range(5)})) == 5
        assert_refused(store, "keys", lambda: ns.get_many([f"k{i}" for i in range(6)]))

    # -- limits and bad input --------------------------------------------------------------

    def test_key_of_900_utf8_bytes_accepted(self, store: Store) -> None:
        ns = store.namespace("lim")
        key = "€" * 300  # 900 bytes
        ns.put(key, 1)
        got = ns.get(key)
        assert got is not None and got.key == key
        edge = "x" * 1024
        ns.put(edge, 2)
        assert ns.get(edge) is not None

    def test_key_over_1024_utf8_bytes_refused(self, store: Store) -> None:
        ns = store.namespace("lim")
        key = "€" * 342  # 1026 bytes, only 342 characters
        err = assert_refused(store, "key", lambda: ns.put(key, 1))
        assert err.limit == 1024
        assert_refused(store, "key", lambda: ns.put("x" * 1025, 1))
        assert_refused(store, "key", lambda: ns.get(key))
        assert_refused(store, "key", lambda: ns.delete(key))
        assert_refused(store, "key", lambda: ns.get_many(["ok", key]))

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param("", id="empty"),
            pytest.param("a\x00b", id="nul"),
            pytest.param("\x00", id="only-nul"),
            pytest.param("\ud800", id="lone-surrogate"),
            pytest.param("ok\udfffok", id="embedded-surrogate"),
            pytest.param(1, id="int"),
            pytest.param(None, id="none"),
            pytest.param(b"bytes", id="bytes"),
            pytest.param(("a",), id="tuple"),
        ],
    )
    def test_bad_key_refused_everywhere(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("existing", 1)
        assert_refused(store, "key", lambda: ns.put(bad, 1))
        assert_refused(store, "key", lambda: ns.put(bad, 1, if_absent=True))
        assert_refused(store, "key", lambda: ns.get(bad))
        assert_refused(store, "key", lambda: ns.delete(bad))
        assert_refused(store, "key", lambda: ns.get_many([bad]))
        assert_refused(store, "key", lambda: ns.put_many([("fine", 1), (bad, 2)]))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace("lim").put("fine", 1)
                tx.namespace("lim").put(bad, 2)

        assert_refused(store, "key", in_tx)

    def test_value_too_large_refused(self, open_store: StoreFactory) -> None:
        store = open_store(limits={"max_value_bytes": 1000})
        ns = store.namespace("lim")
        ns.put("small", "x" * 500)
        err = assert_refused(store, "value", lambda: ns.put("big", "x" * 2000))
        assert err.limit == 1000
        assert_refused(store, "value", lambda: ns.put("small", b"\x00" * 1001))
        assert_refused(store, "value", lambda: ns.put_many({"a": 1, "big": ["y" * 600] * 2}))
        got = ns.get("small")
        assert got is not None and got.value == "x" * 500

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param({1, 2}, id="set"),
            pytest.param(datetime.datetime(2024, 1, 1), id="datetime"),
            pytest.param({"when": datetime.date(2024, 1, 1)}, id="nested-date"),
            pytest.param({1: "int key"}, id="int-dict-key"),
            pytest.param(object(), id="object"),
            pytest.param(2**64, id="int-too-big"),
            pytest.param({"s": "\ud800"}, id="lone-surrogate-string"),
            pytest.param([frozenset()], id="frozenset-in-list"),
        ],
    )
    def test_non_json_value_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("k", "before")
        assert_refused(store, "value", lambda: ns.put("k", bad))
        assert_refused(store, "value", lambda: ns.put("new", bad))
        got = ns.get("k")
        assert got is not None and got.value == "before"

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(-1, id="negative"),
            pytest.param(0, id="zero"),
            pytest.param(0.0, id="zero-float"),
            pytest.param(float("nan"), id="nan"),
            pytest.param(float("inf"), id="inf"),
            pytest.param(TEN_YEARS + 1, id="over-10-years"),
            pytest.param(True, id="bool"),
            pytest.param("60", id="str"),
        ],
    )
    def test_bad_ttl_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("k", 1)
        assert_refused(store, "ttl", lambda: ns.put("k", 2, ttl=bad))
        assert_refused(store, "ttl", lambda: ns.put_many({"a": 1}, ttl=bad))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace("lim").put("a", 1, ttl=bad)

        assert_refused(store, "ttl", in_tx)

    def test_ttl_of_ten_years_accepted(self, store: Store, clock: FakeClock) -> None:
        item = store.namespace("lim").put("k", 1, ttl=TEN_YEARS)
        assert item.expires_at == clock() + TEN_YEARS

    @pytest.mark.parametrize("bad", [0, -3, True, False, 1.0, "1"])
    def test_bad_if_version_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("k", 1)
        assert_refused(store, "if_version", lambda: ns.put("k", 2, if_version=bad))
        assert_refused(store, "if_version", lambda: ns.delete("k", if_version=bad))

    def test_unknown_namespace_option_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.namespace("x", colour=1)
        assert "colour" in info.value.field
        assert "colour" in str(info.value)
        assert store.namespaces() == []

    def test_bad_namespace_option_value_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.namespace("x", serializer="pickle")
        assert "serializer" in info.value.field

    def test_unknown_namespace_option_in_open_is_a_config_error(
        self, store_factory: StoreFactory
    ) -> None:
        with pytest.raises(ConfigError) as info:
            store_factory(namespaces={"x": {"colour": 1}})
        assert "colour" in info.value.field

    def test_unknown_limit_in_open_is_a_config_error(self, store_factory: StoreFactory) -> None:
        with pytest.raises(ConfigError) as info:
            store_factory(limits={"max_colours": 1})
        assert "max_colours" in info.value.field

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param("", id="empty"),
            pytest.param("_system", id="reserved-underscore"),
            pytest.param("a b", id="space"),
            pytest.param("a/b", id="slash"),
            pytest.param("-leading", id="leading-dash"),
            pytest.param("ü", id="non-ascii"),
            pytest.param("x" * 129, id="too-long"),
            pytest.param("a\x00", id="nul"),
            pytest.param(1, id="int"),
            pytest.param(None, id="none"),
            pytest.param(["x"], id="list"),
        ],
    )
    def test_bad_namespace_name_refused(self, store: Store, bad: Any) -> None:
        store.namespace("ok").put("k", 1)
        assert_refused(store, "namespace", lambda: store.namespace(bad))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace(bad)

        assert_refused(store, "namespace", in_tx)

    def test_good_namespace_names_accepted(self, store: Store) -> None:
        for name in ["a", "A1", "carts", "app.v2:sessions-x_y", "9lives", "x" * 128]:
            store.namespace(name).put("k", name)
        assert sorted(store.namespaces()) == sorted(
            ["a", "A1", "carts", "app.v2:sessions-x_y", "9lives", "x" * 128]
        )

    # -- concurrency ----------------------------------------------------------------------

    def test_concurrent_cas_increments_are_exact(self, open_store: StoreFactory) -> None:
        store = open_store()
        ns = store.namespace("counters")
        threads_n, per_thread = 8, 200
        barrier = threading.Barrier(threads_n)
        errors: list[BaseException] = []
        conflicts = [0] * threads_n

        def worker(index: int) -> None:
            try:
                barrier.wait(10)
                for _ in range(per_thread):
                    while True:
                        current = ns.get("counter")
                        try:
                            if current is None:
                                ns.put("counter", 1, if_absent=True)
                            else:
                                ns.put("counter", current.value + 1, if_version=current.version)
                            break
                        except VersionConflict:
                            conflicts[index] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors[:3]
        total = threads_n * per_thread
        got = ns.get("counter")
        assert got is not None
        assert (got.value, got.version) == (total, total)
        puts = [c for c in all_changes(store, "counters") if c.key == "counter"]
        assert all(c.op == "put" for c in puts)
        assert [c.version for c in puts] == list(range(1, total + 1))
        seqs = [c.seq for c in all_changes(store)]
        assert seqs == list(range(1, total + 1))

    def test_concurrent_writers_to_distinct_keys_all_land(self, open_store: StoreFactory) -> None:
        store = open_store()
        ns = store.namespace("par")
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for i in range(50):
                    ns.put(f"t{t}-{i:02d}", {"t": t, "i": i})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert ns.count() == 300
        items = scan_all(ns, limit=37)
        assert len(items) == 300
        assert all(it.version == 1 for it in items)
        assert [c.seq for c in all_changes(store)] == list(range(1, 301))

    def test_concurrent_transactions_are_atomic(self, open_store: StoreFactory) -> None:
        """Transfers between two accounts in two namespaces keep the total constant."""
        store = open_store()
        store.namespace("acct-a").put("balance", 1000)
        store.namespace("acct-b").put("balance", 1000)
        errors: list[BaseException] = []

        def worker(direction: int) -> None:
            try:
                done = 0
                while done < 40:
                    a = store.namespace("acct-a").get("balance")
                    b = store.namespace("acct-b").get("balance")
                    assert a is not None and b is not None
                    try:
                        with store.transaction() as tx:
                            tx.namespace("acct-a").put(
                                "balance", a.value - direction, if_version=a.version
                            )
                            tx.namespace("acct-b").put(
                                "balance", b.value + direction, if_version=b.version
                            )
                        done += 1
                    except VersionConflict:
                        pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(d,)) for d in (1, -1, 2, -2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        a = store.namespace("acct-a").get("balance")
        b = store.namespace("acct-b").get("balance")
        assert a is not None and b is not None
        assert a.value + b.value == 2000
        assert a.value == 1000  # +40 -40 +80 -80
        assert a.version == b.version == 161

    # -- codec policies -------------------------------------------------------------------

    def test_encrypted_namespace_round_trips(self, open_store: StoreFactory, tmp_path: Any) -> None:
        store = open_store(
            namespaces={"secret": {"encrypt": True}}, keyring=f"file:{tmp_path}/keys.json"
        )
        secret = store.namespace("secret")
        value = {"card": "4111-1111-1111-1111", "cvv": "123", "n": [1, 2]}
        secret.put("c1", value)
        secret.put("blob", b"\x00secret bytes\xff")
        got = secret.get("c1")
        blob = secret.get("blob")
        assert got is not None and got.value == value
        assert blob is not None and blob.value == b"\x00secret bytes\xff"
        assert [it.key for it in scan_all(secret)] == ["blob", "c1"]
        page = secret.query({"filter": {"EQ": {"cvv": "123"}}})
        assert [it.key for it in page.items] == ["c1"]
        backend = getattr(store, "backend", None)
        raw_get = getattr(backend, "get", None)
        if raw_get is not None:  # stores that expose their backend: check the bytes
            stored = raw_get("secret", "c1", time.time())
            assert stored is not None
            assert b"4111" not in stored.value and b"card" not in stored.value

    def test_plain_namespace_beside_encrypted_one(
        self, open_store: StoreFactory, tmp_path: Any
    ) -> None:
        store = open_store(
            namespaces={"secret": {"encrypt": True}}, keyring=f"file:{tmp_path}/keys.json"
        )
        store.namespace("secret").put("k", "hidden")
        store.namespace("plain").put("k", "visible")
        plain = store.namespace("plain").get("k")
        hidden = store.namespace("secret").get("k")
        assert plain is not None and plain.value == "visible"
        assert hidden is not None and hidden.value == "hidden"

    def test_json_serializer_namespace_round_trips(self, open_store: StoreFactory) -> None:
        store = open_store(namespaces={"docs": {"serializer": "json"}})
        docs = store.namespace("docs")
        value = {"title": "Zoë", "tags": ["a", "b"], "n": 1.5, "ok": True, "none": None}
        docs.put("d1", value)
        docs.put("raw", b"top-level bytes are stored raw")
        got = docs.get("d1")
        raw = docs.get("raw")
        assert got is not None and got.value == value
        assert raw is not None and raw.value == b"top-level bytes are stored raw"
        assert_refused(store, "value", lambda: docs.put("bad", {"b": b"nested bytes"}))
        assert_refused(store, "value", lambda: docs.put("bad", {"x": float("nan")}))

    def test_compressed_namespace_round_trips(self, open_store: StoreFactory) -> None:
        store = open_store(
            limits={"max_value_bytes": 100_000}, namespaces={"z": {"compress_above": 64}}
        )
        z = store.namespace("z")
        big = {"text": "lorem ipsum dolor sit amet " * 2000}  # ~54 KB, compresses well
        small = {"t": "tiny"}
        z.put("big", big)
        z.put("small", small)
        got_big, got_small = z.get("big"), z.get("small")
        assert got_big is not None and got_big.value == big
        assert got_small is not None and got_small.value == small
        page = z.query({"filter": {"EQ": {"t": "tiny"}}})
        assert [it.key for it in page.items] == ["small"]

    def test_namespace_options_in_code(self, store: Store) -> None:
        ns = store.namespace("inline", serializer="json", compress_above=16)
        ns.put("k", {"long": "abc" * 100})
        got = store.namespace("inline").get("k")
        assert got is not None and got.value == {"long": "abc" * 100}


class AsyncStoreConformance:
    """The async facade's contract: the main paths through :class:`AsyncStore`.

    Subclass it where an ``async_store_factory`` fixture exists; the ``anyio``
    pytest plugin runs the tests (on asyncio unless ``anyio_backend`` is overridden).
    """

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def astore(self, async_store_factory: AsyncStoreFactory, clock: FakeClock) -> AsyncStore:
        return async_store_factory(clock=clock)

    @staticmethod
    async def _sound(astore: AsyncStore) -> None:
        report = await astore.check(deep=True)
        assert report.ok, report.problems

    @pytest.mark.anyio
    async def test_async_put_get_round_trip(self, astore: AsyncStore) -> None:
        ns = astore.namespace("a")
        item = await ns.put("k", {"x": [1, 2], "s": "ü"})
        assert item.version == 1
        got = await ns.get("k")
        assert got is not None and got.value == {"x": [1, 2], "s": "ü"}
        assert got.etag == item.etag
        assert await ns.get("missing") is None
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_versions_and_delete(self, astore: AsyncStore) -> None:
        ns = astore.namespace("a")
        assert [(await ns.put("k", i)).version for i in range(3)] == [1, 2, 3]
        assert await ns.delete("k") is True
        assert await ns.delete("k") is False
        assert (await ns.put("k", 0)).version == 4  # never an old incarnation's version
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_keep_ttl(self, astore: AsyncStore, clock: FakeClock) -> None:
        ns = astore.namespace("a")
        t0 = clock()
        await ns.put("k", 1, ttl=30)
        clock.advance(10)
        assert (await ns.put("k", 2, keep_ttl=True)).expires_at == t0 + 30
        async with astore.transaction() as tx:
            await tx.namespace("a").put("k", 3, keep_ttl=True)
        got = await ns.get("k")
        assert got is not None and (got.value, got.expires_at) == (3, t0 + 30)
        assert (await ns.put("k", 4)).expires_at is None
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_cas(self, astore: AsyncStore) -> None:
        ns = astore.namespace("a")
        first = await ns.put("k", 1)
        await ns.put("k", 2, if_version=first.version)
        with pytest.raises(VersionConflict) as info:
            await ns.put("k", 3, if_version=first.version)
        assert (info.value.key, info.value.expected, info.value.actual) == ("k", 1, 2)
        with pytest.raises(VersionConflict):
            await ns.put("k", 3, if_absent=True)
        with pytest.raises(VersionConflict):
            await ns.delete("k", if_version=1)
        got = await ns.get("k")
        assert got is not None and (got.value, got.version) == (2, 2)
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_get_many_put_many_count(self, astore: AsyncStore) -> None:
        ns = astore.namespace("a")
        items = await ns.put_many({"a": 1, "b": 2, "c": 3})
        assert [it.key for it in items] == ["a", "b", "c"]
        got = await ns.get_many(["a", "c", "zz", "a"])
        assert sorted(got) == ["a", "c"]
        assert await ns.count() == 3
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_invalid_request(self, astore: AsyncStore) -> None:
        ns = astore.namespace("a")
        with pytest.raises(InvalidRequest) as info:
            await ns.put("", 1)
        assert info.value.field == "key"
        with pytest.raises(InvalidRequest) as info:
            await ns.put("k", {1, 2})
        assert info.value.field == "value"
        assert await ns.count() == 0

    @pytest.mark.anyio
    async def test_async_ttl(self, astore: AsyncStore, clock: FakeClock) -> None:
        ns = astore.namespace("a")
        await ns.put("k", 1, ttl=10)
        clock.advance(10)
        assert await ns.get("k") is None
        assert (await astore.sweep())["expired"] == 1
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_idempotency(self, astore: AsyncStore) -> None:
        ns = astore.namespace("a")
        first = await ns.put("k", 1, idempotency_key="r1")
        await ns.put("k", 2)
        retry = await ns.put("k", 1, idempotency_key="r1")
        assert (retry.version, retry.etag) == (first.version, first.etag)
        got = await ns.get("k")
        assert got is not None and got.value == 2
        with pytest.raises(InvalidRequest) as info:
            await ns.put("k", 3, idempotency_key="r1")
        assert info.value.field == "idempotency_key"

    @pytest.mark.anyio
    async def test_async_transaction_commits(self, astore: AsyncStore) -> None:
        await astore.namespace("stock").put("sku", {"n": 5})
        async with astore.transaction() as tx:
            await tx.namespace("orders").put("o1", {"total": 9})
            await tx.namespace("stock").put("sku", {"n": 4}, if_version=1)
            await tx.namespace("stock").delete("missing")
        assert len(tx.result) == 3 and tx.result[2] is False
        order = await astore.namespace("orders").get("o1")
        stock = await astore.namespace("stock").get("sku")
        assert order is not None and order.value == {"total": 9}
        assert stock is not None and (stock.value, stock.version) == ({"n": 4}, 2)
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_transaction_conflict_writes_nothing(self, astore: AsyncStore) -> None:
        await astore.namespace("stock").put("sku", {"n": 5})
        with pytest.raises(VersionConflict):
            async with astore.transaction() as tx:
                await tx.namespace("orders").put("o1", {"total": 9})
                await tx.namespace("stock").put("sku", {"n": 4}, if_version=9)
        assert await astore.namespace("orders").get("o1") is None
        assert await astore.namespace("orders").count() == 0
        stock = await astore.namespace("stock").get("sku")
        assert stock is not None and stock.version == 1

    @pytest.mark.anyio
    async def test_async_transaction_rolls_back_on_exception(self, astore: AsyncStore) -> None:
        with pytest.raises(RuntimeError):
            async with astore.transaction() as tx:
                await tx.namespace("a").put("k", 1)
                raise RuntimeError("abort")
        assert await astore.namespace("a").get("k") is None
        assert tx.result == []

    @pytest.mark.anyio
    async def test_async_scan_paging(self, astore: AsyncStore) -> None:
        ns = astore.namespace("s")
        keys = ["b", "a", "€", "😀", "ab", "é", "z"]
        await ns.put_many({k: k for k in keys})
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await ns.scan(limit=2, cursor=cursor)
            seen.extend(it.key for it in page.items)
            cursor = page.cursor
            if cursor is None:
                break
        assert seen == sorted(keys, key=_utf8)
        prefixed = await ns.scan(prefix="a")
        assert [it.key for it in prefixed.items] == ["a", "ab"]

    @pytest.mark.anyio
    async def test_async_query(self, astore: AsyncStore) -> None:
        ns = astore.namespace("q")
        await ns.put_many({f"o{i}": {"total": i * 10, "open": i % 2 == 0} for i in range(6)})
        page = await ns.query(
            {
                "filter": {"EQ": {"open": True}},
                "sort": [{"key": "total", "order": "DESC"}],
                "page": {"limit": 2},
            }
        )
        assert [it.key for it in page.items] == ["o4", "o2"]
        assert page.cursor is not None
        rest = await ns.query(
            {
                "filter": {"EQ": {"open": True}},
                "sort": [{"key": "total", "order": "DESC"}],
                "page": {"limit": 2, "token": page.cursor},
            }
        )
        assert [it.key for it in rest.items] == ["o0"]
        assert rest.cursor is None

    @pytest.mark.anyio
    async def test_async_watch_past_and_live(self, astore: AsyncStore) -> None:
        ns = astore.namespace("w")
        await ns.put("a", 1)
        await ns.put("b", 1)
        watch = astore.watch(0, timeout=10)
        got: list[Change] = []
        async for change in watch:
            got.append(change)
            if len(got) == 2:
                await ns.put("c", 1)
            if len(got) == 3:
                break
        assert [c.key for c in got] == ["a", "b", "c"]
        assert [c.seq for c in got] == [1, 2, 3]
        assert watch.last_seq == 3

    @pytest.mark.anyio
    async def test_async_watch_timeout_and_filters(self, astore: AsyncStore) -> None:
        await astore.namespace("x").put("user:1", 1)
        await astore.namespace("y").put("user:2", 1)
        await astore.namespace("x").put("order:1", 1)
        got = [c async for c in astore.namespace("x").watch(0, prefix="user:", timeout=0.2)]
        assert [(c.namespace, c.key) for c in got] == [("x", "user:1")]
        everything = [c async for c in astore.watch(0, timeout=0.2)]
        assert len(everything) == 3

    @pytest.mark.anyio
    async def test_async_concurrent_tasks(self, astore: AsyncStore) -> None:
        import asyncio

        ns = astore.namespace("par")
        items = await asyncio.gather(*(ns.put(f"k{i:03d}", i) for i in range(100)))
        assert all(it.version == 1 for it in items)
        assert await ns.count() == 100
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_concurrent_cas_counter(self, astore: AsyncStore) -> None:
        import asyncio

        ns = astore.namespace("ctr")
        await ns.put("n", 0)

        async def bump(times: int) -> None:
            for _ in range(times):
                while True:
                    cur = await ns.get("n")
                    assert cur is not None
                    try:
                        await ns.put("n", cur.value + 1, if_version=cur.version)
                        break
                    except VersionConflict:
                        continue

        await asyncio.gather(*(bump(25) for _ in range(8)))
        got = await ns.get("n")
        assert got is not None and (got.value, got.version) == (200, 201)
        await self._sound(astore)

    @pytest.mark.anyio
    async def test_async_sync_view_shares_data(self, astore: AsyncStore) -> None:
        await astore.namespace("a").put("k", "from async")
        got = astore.sync.namespace("a").get("k")
        assert got is not None and got.value == "from async"
