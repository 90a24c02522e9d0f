"""Idempotency keys: retries apply once, and keys are scoped by what a request writes
(:class:`IdempotencyScopeConformance`).
"""

from __future__ import annotations

import pytest

from clawstate import Item, Store, VersionConflict
from clawstate.testing.fakes import FakeClock

from .helpers import StoreFactory, all_changes, assert_refused


class IdempotencyConformance:
    """Idempotency keys.

    A retried request applies once; the key reused for another request is refused.
    """

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
