"""The async facade's conformance suite (:class:`AsyncStoreConformance`)."""

from __future__ import annotations

import pytest

from clawstate import AsyncStore, Change, InvalidRequest, VersionConflict
from clawstate.testing.fakes import FakeClock

from .helpers import AsyncStoreFactory, _utf8


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
