"""Versions and etags: how they grow, and the conditional writes that compare them
(including :class:`NoVersionReuseConformance`, the no-ABA rule).
"""

from __future__ import annotations

import pytest

from clawstate import Item, Namespace, Store, VersionConflict
from clawstate.testing.fakes import FakeClock

from .helpers import RECREATES, REMOVALS, assert_refused, snapshot


class VersionConformance:
    """Versions, etags and timestamps, and conditional writes (``if_version``, ``if_absent``)."""

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

    def test_etag_reveals_nothing_about_other_namespaces(self, store: Store) -> None:
        # Issue 10: an ETag made of the store-wide change-log seq showed a reader how
        # many writes other namespaces had between two of its own.  It names the
        # version of this key only: the same history gives the same ETags, whatever
        # else the store is doing.  (Read back by a scan, which is committed on every
        # cache mode: a write-back put's own etag is provisional until the flush.)
        def committed_etag(ns: Namespace) -> str:
            (item,) = ns.scan().items
            return item.etag

        mine, other, busy_ns = (store.namespace(n) for n in ("e", "e-other", "e2"))
        quiet = []
        for i in range(3):
            mine.put("k", i)
            quiet.append(committed_etag(mine))
        mine.delete("k")
        mine.put("k", "again")
        quiet.append(committed_etag(mine))
        busy = []
        for i in range(3):
            other.put_many([(f"o{i}-{j}", j) for j in range(5)])
            busy_ns.put("k", i)
            busy.append(committed_etag(busy_ns))
        other.delete("o0-0")
        busy_ns.delete("k")
        busy_ns.put("k", "again")
        busy.append(committed_etag(busy_ns))
        assert quiet == busy
        assert len(set(quiet)) == 4

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

    # -- update: read, apply, compare-and-set, retried on conflict ---------------------------

    def test_update_creates_changes_and_keeps_the_expiry(
        self, store: Store, clock: FakeClock
    ) -> None:
        ns = store.namespace("cas")
        created = ns.update("n", lambda v: (v or 0) + 1)
        assert (created.value, ns.get("n").value) == (1, 1)  # type: ignore[union-attr]
        assert ns.update("list", lambda v: [*v, "x"], default=[]).value == ["x"]
        ns.put("n", 10, ttl=60)
        changed = ns.update("n", lambda v: v + 1)
        assert (changed.value, changed.expires_at) == (11, clock() + 60)
        assert changed.version == ns.get("n").version  # type: ignore[union-attr]
        assert ns.update("n", lambda v: v, ttl=5).expires_at == clock() + 5

    def test_update_retries_a_conflict_then_gives_up(self, store: Store) -> None:
        ns = store.namespace("cas")
        ns.put("n", 0)
        seen: list[int] = []

        def racing(value: int) -> int:
            seen.append(value)
            if len(seen) == 1:
                ns.put("n", 100)  # another writer between the read and the write
            return value + 1

        assert ns.update("n", racing).value == 101, "the retry re-read the new value"
        assert seen == [0, 100]

        def always_racing(value: int) -> int:
            ns.put("n", value + 1)
            return -1

        with pytest.raises(VersionConflict):
            ns.update("n", always_racing, retries=2)
        assert ns.get("n").value != -1  # type: ignore[union-attr]
        assert_refused(store, "retries", lambda: ns.update("n", lambda v: v, retries=-1))


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
