"""Snapshots and aggregates over the event store."""

from __future__ import annotations

import functools
import threading

import pytest

from clawstate import AppendResult, Event, InvalidRequest, Store, WrongExpectedVersion

from .helpers import Cart


class AggregateConformance:
    """Snapshots, aggregates and their repository (conflicts, retries, snapshot every n)."""

    # -- snapshots and aggregates ------------------------------------------------------------

    def test_snapshots_save_load_delete(self, store: Store) -> None:
        snaps = store.events.snapshots
        assert snaps.load("s") is None
        snaps.save("s", 3, {"n": 3})
        snaps.save("s", 5, {"n": 5}, schema=2)
        got = snaps.load("s")
        assert got is not None and (got.version, got.state, got.schema) == (5, {"n": 5}, 2)
        assert snaps.delete("s") is True and snaps.load("s") is None
        with pytest.raises(InvalidRequest):
            snaps.save("s", 0, {})

    def test_aggregate_round_trip_and_conflict(self, store: Store) -> None:
        repo = store.events.repository(Cart)
        cart = Cart.create("c1")
        cart.add("apple")
        assert repo.save(cart) == AppendResult(2, 2)
        assert repo.save(cart) is None
        assert repo.get("missing") is None
        with pytest.raises(KeyError):
            repo.load("missing")
        mine, theirs = repo.load("c1"), repo.load("c1")
        assert (mine.items, mine.version) == (["apple"], 2)
        theirs.add("pear")
        repo.save(theirs)
        mine.checkout()
        with pytest.raises(WrongExpectedVersion):
            repo.save(mine)
        repo.update("c1", lambda c: c.checkout())
        final = repo.load("c1")
        assert (final.items, final.checked_out, final.version) == (["apple", "pear"], True, 4)
        assert [e.type for e in store.events.read("cart-c1")] == [
            "CartCreated",
            "ItemAdded",
            "ItemAdded",
            "CheckedOut",
        ]
        with pytest.raises(WrongExpectedVersion):
            repo.save(Cart.create("c1"))

    def test_update_retries_racing_writers(self, store: Store) -> None:
        repo = store.events.repository(Cart)
        repo.save(Cart.create("c"))

        def writer(i: int) -> None:
            for j in range(5):
                repo.update("c", functools.partial(Cart.add, sku=f"{i}-{j}"), retries=200)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cart = repo.load("c")
        assert sorted(cart.items) == sorted(f"{i}-{j}" for i in range(4) for j in range(5))
        assert cart.version == 21

    def test_snapshot_every_n_is_written_with_the_events_and_used(self, store: Store) -> None:
        repo = store.events.repository(Cart, snapshot_every=3)
        plain = store.events.repository(Cart)
        cart = Cart.create("c")
        cart.add("a")
        repo.save(cart)
        assert store.events.snapshots.load("cart-c") is None
        cart.add("b")
        cart.add("c")
        repo.save(cart)
        snap = store.events.snapshots.load("cart-c")
        assert snap is not None and snap.version == 4
        assert snap.state == {"items": ["a", "b", "c"], "checked_out": False}
        store.events.append("cart-c", [Event("ItemAdded", {"sku": "d"})], expected_version=4)
        loaded, replayed = repo.load("c"), plain.load("c")
        assert (
            (loaded.items, loaded.version)
            == (replayed.items, replayed.version)
            == (["a", "b", "c", "d"], 5)
        )
        # A snapshot whose schema is not the class's is ignored: full replay.
        store.events.snapshots.save("cart-c", 5, {"items": ["bogus"]}, schema=99)
        assert repo.load("c").items == ["a", "b", "c", "d"]
