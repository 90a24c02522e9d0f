"""Leases and fencing tokens (:mod:`clawstate.locks`): the contract every store keeps.

:class:`LocksConformance` runs over the sync facade (``store``/``clock``/``open_store``
from :class:`~.fixtures.StoreFixtures`), so the embedded backends and the HTTP client
are held to the same tests; :class:`AsyncLocksConformance` covers the awaitable face.
Expiry is driven by the suite's FakeClock; waiting (``wait=``) is real time, kept to
fractions of a second.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from typing import Any

import pytest

from clawstate import (
    AsyncStore,
    FencingError,
    InvalidRequest,
    Lease,
    LockTimeout,
    Store,
)
from clawstate.testing.fakes import FakeClock

from .fixtures import StoreFixtures
from .helpers import AsyncStoreFactory, StoreFactory, assert_refused, snapshot


def _values(store: Store, ns: str) -> dict[str, Any]:
    page = store.namespace(ns).scan("", 1000)
    return {it.key: it.value for it in page.items}


class LocksConformance(StoreFixtures):
    """Leases, tokens and fenced writes through ``store.locks`` / ``store.lock``."""

    # -- tokens -------------------------------------------------------------------

    def test_tokens_strictly_increase(self, store: Store) -> None:
        tokens = []
        for _ in range(5):
            lease = store.locks.acquire("job", ttl=10, owner="a")
            assert lease.name == "job" and lease.owner == "a"
            tokens.append(lease.token)
            assert store.locks.release(lease) is True
        assert all(b > a for a, b in itertools.pairwise(tokens)), tokens
        other = store.locks.acquire("other", ttl=10)
        assert other.token >= 1  # tokens are per name
        assert store.locks.get("other") == other

    def test_lease_fields_and_get(self, store: Store, clock: FakeClock) -> None:
        assert store.locks.get("job") is None
        t0 = clock()
        lease = store.locks.acquire("job", ttl=10, owner="worker-1")
        assert lease.expires_at == pytest.approx(t0 + 10)
        assert store.locks.get("job") == lease
        clock.advance(10.5)
        assert store.locks.get("job") is None  # expired: nobody holds it

    def test_expired_lease_taken_over_with_higher_token(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = store.locks.acquire("job", ttl=5, owner="a")
        with pytest.raises(LockTimeout) as info:
            store.locks.acquire("job", ttl=5, owner="b")
        assert info.value.name == "job"
        clock.advance(4)
        with pytest.raises(LockTimeout):
            store.locks.acquire("job", ttl=5, owner="b")
        clock.advance(1.5)
        second = store.locks.acquire("job", ttl=5, owner="b")
        assert second.token > first.token
        assert store.locks.get("job") == second

    # -- fencing ------------------------------------------------------------------

    def test_current_holder_fenced_writes_apply(self, store: Store) -> None:
        lease = store.locks.acquire("job", ttl=30)
        ns = store.namespace("out")
        assert ns.put("a", 1, fence=lease).version == 1
        assert [i.key for i in ns.put_many({"b": 2, "c": 3}, fence=lease)] == ["b", "c"]
        assert ns.delete("c", fence=lease) is True
        with store.transaction() as tx:
            tx.namespace("out").put("d", 4, fence=lease)
            tx.namespace("out").delete("b", fence=lease)
        assert tx.result[1] is True
        assert _values(store, "out") == {"a": 1, "d": 4}

    def test_stale_holder_fenced_writes_refused(self, store: Store, clock: FakeClock) -> None:
        stale = store.locks.acquire("job", ttl=5, owner="paused")
        ns = store.namespace("out")
        ns.put("k", "stale's work", fence=stale)
        clock.advance(6)  # the holder paused past its lease
        fresh = store.locks.acquire("job", ttl=5, owner="next")
        ns.put("k", "new holder's work", fence=fresh)
        before = snapshot(store)

        def refused(action: Any) -> None:
            with pytest.raises(FencingError) as info:
                action()
            err = info.value
            assert (err.name, err.token, err.current) == ("job", stale.token, fresh.token)
            assert snapshot(store) == before, "a fenced-out write changed the store"

        refused(lambda: ns.put("k", "overwrite", fence=stale))
        refused(lambda: ns.put("new", 1, fence=stale))
        refused(lambda: ns.delete("k", fence=stale))
        refused(lambda: ns.put_many({"k": 0, "z": 1}, fence=stale))

        def tx() -> None:
            with store.transaction() as t:
                t.namespace("out").put("z", 1)  # unfenced write in the same transaction
                t.namespace("out").put("k", "overwrite", fence=stale)

        refused(tx)

        def tx_delete() -> None:
            with store.transaction() as t:
                t.namespace("out").delete("k", fence=stale)

        refused(tx_delete)
        assert _values(store, "out") == {"k": "new holder's work"}

    def test_fence_of_a_lock_never_granted(self, store: Store) -> None:
        ghost = Lease("never-granted", "me", 1, 0.0)
        with pytest.raises(FencingError) as info:
            store.namespace("out").put("k", 1, fence=ghost)
        assert info.value.current is None
        assert _values(store, "out") == {}

    def test_a_forged_token_is_refused_even_a_higher_one(self, store: Store) -> None:
        """Only the token of the newest lease passes: one made up above it (a client
        guessing "any big number wins") is refused like a stale one."""
        lease = store.locks.acquire("job", ttl=30, owner="a")
        for token in (lease.token + 1, lease.token + 10**6, 2**63 - 1):
            forged = Lease("job", "a", token, lease.expires_at)
            with pytest.raises(FencingError) as info:
                store.namespace("out").put("k", "forged", fence=forged)
            assert info.value.current == lease.token
        assert _values(store, "out") == {}
        store.namespace("out").put("k", "held", fence=lease)
        assert _values(store, "out") == {"k": "held"}

    # -- renew and release --------------------------------------------------------

    def test_renew_keeps_token_and_extends(self, store: Store, clock: FakeClock) -> None:
        lease = store.locks.acquire("job", ttl=10, owner="a")
        clock.advance(8)
        renewed = store.locks.renew(lease)
        assert renewed.token == lease.token and renewed.owner == "a"
        assert renewed.expires_at == pytest.approx(clock() + 10)
        clock.advance(8)  # past the first expiry, within the renewed one
        with pytest.raises(LockTimeout):
            store.locks.acquire("job", ttl=10, owner="b")
        longer = store.locks.renew(renewed, ttl="1m")
        assert longer.expires_at == pytest.approx(clock() + 60)
        store.namespace("out").put("k", 1, fence=longer)
        assert store.locks.get("job") == longer

    def test_renew_of_a_lost_lease_refused(self, store: Store, clock: FakeClock) -> None:
        lease = store.locks.acquire("job", ttl=5)
        clock.advance(6)
        with pytest.raises(FencingError):
            store.locks.renew(lease)  # expired, even though nobody took it
        second = store.locks.acquire("job", ttl=5)
        with pytest.raises(FencingError) as info:
            store.locks.renew(lease)
        assert info.value.current == second.token
        assert store.locks.release(second) is True
        with pytest.raises(FencingError):
            store.locks.renew(second)  # released
        assert store.locks.get("job") is None

    def test_stale_release_does_not_free_new_lease(self, store: Store, clock: FakeClock) -> None:
        stale = store.locks.acquire("job", ttl=5, owner="a")
        clock.advance(6)
        fresh = store.locks.acquire("job", ttl=5, owner="b")
        assert store.locks.release(stale) is False
        assert store.locks.get("job") == fresh
        with pytest.raises(LockTimeout):
            store.locks.acquire("job", ttl=5, owner="c")
        assert store.locks.release(fresh) is True
        assert store.locks.release(fresh) is False  # already released
        assert store.locks.get("job") is None

    def test_release_of_expired_lease_is_false(self, store: Store, clock: FakeClock) -> None:
        lease = store.locks.acquire("job", ttl=5)
        clock.advance(6)
        assert store.locks.release(lease) is False
        assert store.locks.acquire("job", ttl=5).token > lease.token

    # -- waiting ------------------------------------------------------------------

    def test_lock_timeout_after_wait(self, store: Store) -> None:
        store.locks.acquire("job", ttl=60, owner="a")
        start = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            store.locks.acquire("job", ttl=60, owner="b", wait=0.2)
        elapsed = time.monotonic() - start
        assert elapsed >= 0.2 and info.value.waited >= 0.19
        with pytest.raises(LockTimeout):
            with store.lock("job", wait=0.05):
                pytest.fail("entered a held lock")

    def test_wait_succeeds_when_released(self, store: Store) -> None:
        held = store.locks.acquire("job", ttl=60, owner="a")
        timer = threading.Timer(0.2, store.locks.release, (held,))
        timer.start()
        try:
            lease = store.locks.acquire("job", ttl=60, owner="b", wait=10)
        finally:
            timer.join()
        assert lease.owner == "b" and lease.token > held.token

    def test_context_manager_releases(self, store: Store) -> None:
        with store.lock("job", ttl=30, wait=0) as lease:
            assert store.locks.get("job") == lease
            store.namespace("out").put("k", 1, fence=lease)
        assert store.locks.get("job") is None
        with pytest.raises(RuntimeError):
            with store.lock("job", ttl=30) as second:
                raise RuntimeError("the block failed")
        assert second.token > lease.token
        assert store.locks.get("job") is None  # released on the way out

    def test_background_renewer(self, open_store: StoreFactory) -> None:
        store = open_store()  # the real clock: the renewer runs in real time
        with store.lock("job", ttl=0.6, renew=True) as lease:
            time.sleep(1.5)  # well past the ttl: only renewals keep it
            current = store.locks.get("job")
            assert current is not None and current.token == lease.token
            assert current.expires_at > lease.expires_at
            with pytest.raises(LockTimeout):
                store.locks.acquire("job", ttl=1, wait=0)
            store.namespace("out").put("k", 1, fence=lease)
        assert store.locks.get("job") is None

    # -- bad input ----------------------------------------------------------------

    @pytest.mark.parametrize(
        "ttl",
        [0, -1, math.nan, math.inf, -math.inf, "abc", "", True, None, [1], 10**400, 86401, "2d"],
    )
    def test_bad_ttl_refused(self, store: Store, ttl: Any) -> None:
        assert_refused(store, "ttl", lambda: store.locks.acquire("job", ttl=ttl))
        assert_refused(store, "ttl", lambda: store.lock("job", ttl=ttl).__enter__())

    @pytest.mark.parametrize("wait", [-1, math.nan, math.inf, "soon", True, 10**400, 86401])
    def test_bad_wait_refused(self, store: Store, wait: Any) -> None:
        assert_refused(store, "wait", lambda: store.locks.acquire("job", wait=wait))

    @pytest.mark.parametrize("name", ["", "a\x00b", 5, None, b"job", "x" * 1025])
    def test_bad_name_refused(self, store: Store, name: Any) -> None:
        assert_refused(store, "name", lambda: store.locks.acquire(name))
        assert_refused(store, "name", lambda: store.locks.get(name))

    @pytest.mark.parametrize("owner", ["", 7, "o" * 257, "a\x00"])
    def test_bad_owner_refused(self, store: Store, owner: Any) -> None:
        assert_refused(store, "owner", lambda: store.locks.acquire("job", owner=owner))

    @pytest.mark.parametrize(
        ("fence", "field"),
        [
            (object(), "fence"),
            ("job", "fence"),
            (Lease("job", "o", 0, 0.0), "fence.token"),
            (Lease("job", "o", -3, 0.0), "fence.token"),
            (Lease("job", "o", 2**63, 0.0), "fence.token"),
            (Lease("job", "o", 10**30, 0.0), "fence.token"),
            (Lease("job", "o", True, 0.0), "fence"),
            (Lease("job", "o", 1.5, 0.0), "fence"),  # type: ignore[arg-type]
            (Lease("", "o", 1, 0.0), "fence.name"),
        ],
    )
    def test_bad_fence_refused(self, store: Store, fence: Any, field: str) -> None:
        store.locks.acquire("job", ttl=30)
        ns = store.namespace("out")
        assert_refused(store, field, lambda: ns.put("k", 1, fence=fence))
        assert_refused(store, field, lambda: ns.delete("k", fence=fence))
        assert_refused(store, field, lambda: ns.put_many({"k": 1}, fence=fence))

        def tx() -> None:
            with store.transaction() as t:
                t.namespace("out").put("k", 1, fence=fence)

        assert_refused(store, field, tx)

    def test_bad_lease_to_renew_and_release(self, store: Store) -> None:
        bad_leases: list[Any] = [None, "job", Lease("job", "o", 0, 0.0)]
        for bad in bad_leases:
            release = functools.partial(store.locks.release, bad)
            renew = functools.partial(store.locks.renew, bad)
            assert_refused(store, "lease", release, prefix=True)
            assert_refused(store, "lease", renew, prefix=True)
        lease = store.locks.acquire("job", ttl=30)
        assert_refused(store, "ttl", lambda: store.locks.renew(lease, ttl=-5))
        assert_refused(store, "renew", lambda: store.lock("job", renew="yes"))  # type: ignore[arg-type]


class AsyncLocksConformance:
    """The awaitable face: ``astore.locks`` and ``async with astore.lock(...)``."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def astore(self, async_store_factory: AsyncStoreFactory, clock: FakeClock) -> AsyncStore:
        return async_store_factory(clock=clock)

    @pytest.mark.anyio
    async def test_async_lock_and_fence(self, astore: AsyncStore, clock: FakeClock) -> None:
        async with astore.lock("job", ttl=5) as lease:
            assert await astore.locks.get("job") == lease
            with pytest.raises(LockTimeout):
                await astore.locks.acquire("job", ttl=5, wait=0.05)
            await astore.namespace("out").put("k", 1, fence=lease)
        assert await astore.locks.get("job") is None
        stale = await astore.locks.acquire("job", ttl=5)
        clock.advance(6)
        fresh = await astore.locks.acquire("job", ttl=5)
        assert fresh.token > stale.token > lease.token
        with pytest.raises(FencingError):
            await astore.namespace("out").put("k", 2, fence=stale)
        async with astore.transaction() as tx:
            tx.namespace("out").put("k", 3, fence=fresh)
        assert await astore.locks.release(stale) is False
        renewed = await astore.locks.renew(fresh, ttl=20)
        assert renewed.token == fresh.token
        assert await astore.locks.release(renewed) is True
        got = await astore.namespace("out").get("k")
        assert got is not None and got.value == 3

    @pytest.mark.anyio
    async def test_async_wait_until_released(self, astore: AsyncStore) -> None:
        import asyncio

        held = await astore.locks.acquire("job", ttl=60)

        async def later() -> None:
            await asyncio.sleep(0.2)
            await astore.locks.release(held)

        task = asyncio.get_running_loop().create_task(later())
        lease = await astore.locks.acquire("job", ttl=60, wait=10)
        await task
        assert lease.token > held.token
        with pytest.raises(InvalidRequest) as info:
            await astore.locks.acquire("job", ttl=-1)
        assert info.value.field == "ttl"
