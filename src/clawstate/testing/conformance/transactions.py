"""Transactions: one atomic commit, conditions checked together, batch limits."""

from __future__ import annotations

import pytest

from clawstate import InvalidRequest, Item, Store, VersionConflict
from clawstate.testing.fakes import FakeClock

from .helpers import StoreFactory, all_changes, assert_refused, snapshot


class TransactionConformance:
    """Transactions: atomic across namespaces, all-or-nothing on any failed condition."""

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

    def test_transaction_reads_see_its_own_writes(self, store: Store) -> None:
        store.namespace("a").put("k", "committed")
        store.namespace("a").put("gone", 1)
        with store.transaction() as tx:
            ns = tx.namespace("a")
            current = ns.get("k")
            assert current is not None and current.value == "committed"
            ns.put("k", current.value + "!", if_version=current.version)
            mine = ns.get("k")
            assert mine is not None and mine.value == "committed!"
            assert (mine.version, mine.etag) == (0, ""), "assigned at commit"
            ns.delete("gone")
            assert ns.get("gone") is None
            assert set(ns.get_many(["k", "gone", "absent"])) == {"k"}
            assert store.namespace("a").get("k").value == "committed"  # type: ignore[union-attr]
        got = store.namespace("a").get("k")
        assert got is not None and got.value == "committed!"
        assert store.namespace("a").get("gone") is None

    def test_transaction_reads_see_its_ttls(self, store: Store, clock: FakeClock) -> None:
        store.namespace("a").put("kept", 1, ttl=100)
        expires = store.namespace("a").get("kept").expires_at  # type: ignore[union-attr]
        tx = store.transaction()
        ns = tx.namespace("a")
        ns.put("short", 1, ttl=5)
        ns.put("kept", 2, keep_ttl=True)
        ns.put("plain", 3)
        assert ns.get("short").expires_at == clock() + 5  # type: ignore[union-attr]
        assert ns.get("kept").expires_at == expires  # type: ignore[union-attr]
        assert ns.get("plain").expires_at is None  # type: ignore[union-attr]
        clock.advance(6)
        assert ns.get("short") is None, "expired before the transaction committed"
        tx.rollback()

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
