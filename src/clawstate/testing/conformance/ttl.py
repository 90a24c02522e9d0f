"""TTLs: expiry is exact on the FakeClock, and ``keep_ttl`` (:class:`KeepTtlConformance`)."""

from __future__ import annotations

from typing import Any

import pytest

from clawstate import Item, Store, VersionConflict
from clawstate.testing.fakes import FakeClock

from .helpers import StoreFactory, all_changes, assert_refused, scan_all


class TtlConformance:
    """Expiry: invisible at once, swept later, ``default_ttl`` from the namespace policy."""

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
