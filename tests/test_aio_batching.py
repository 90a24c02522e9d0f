"""AsyncStore's write batcher (clawstate._batch): concurrent awaited plain puts share a
backend transaction, and each caller still gets its own Item or its own error.

Counted through a wrapped backend (how many units reach ``backend.write``), never by
timing: the puts are started with ``asyncio.gather`` so they are awaited during the
same event-loop iteration, which is exactly when the batcher collects them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any

import pytest

import clawstate
from clawstate.aio import AsyncStore
from clawstate.errors import BackendUnavailable, InvalidRequest, VersionConflict
from clawstate.store import Store


class CountingBackend:
    """Wraps a store's default backend's ``write``: records the size of every unit,
    and can fail the next ``fail`` units that hold more than one write."""

    def __init__(self, store: Store) -> None:
        backend = store.backend
        self._write = backend.write
        self.units: list[int] = []
        self.fail = 0
        backend.write = self.write  # type: ignore[method-assign]

    def write(self, unit: Any) -> Any:
        n = len(unit.writes)
        if self.fail and n > 1:
            self.fail -= 1
            self.units.append(-n)
            raise BackendUnavailable("the shared commit broke (test)")
        self.units.append(n)
        return self._write(unit)


@pytest.fixture
def store() -> Iterator[Store]:
    s = clawstate.open("memory://", limits={"max_batch": 8, "max_key_bytes": 64})
    try:
        yield s
    finally:
        s.close()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_puts_share_one_backend_transaction(store: Store) -> None:
    counted = CountingBackend(store)
    shared: list[tuple[bool, int]] = []

    async def main() -> list[Any]:
        astore = AsyncStore(store, on_shared_commit=lambda ok, n: shared.append((ok, n)))
        ns = astore.namespace("carts")
        items = await asyncio.gather(*(ns.put(f"k{i}", {"i": i}) for i in range(6)))
        assert await astore.run(len, items) == 6  # any sync call, on the store's pool
        return items

    items = _run(main())
    assert counted.units == [6], counted.units  # one unit of six, not six units
    assert shared == [(True, 6)]
    for i, item in enumerate(items):  # each caller gets its own Item
        assert (item.key, item.value, item.version, item.namespace) == (
            f"k{i}",
            {"i": i},
            1,
            "carts",
        )
    assert store.namespace("carts").get("k3").value == {"i": 3}  # type: ignore[union-attr]


def test_more_than_max_batch_are_split_into_chunks(store: Store) -> None:
    counted = CountingBackend(store)

    async def main() -> None:
        ns = AsyncStore(store).namespace("n")
        await asyncio.gather(*(ns.put(f"k{i}", i) for i in range(20)))

    _run(main())
    assert counted.units == [8, 8, 4]  # the store's max_batch is 8
    assert store.namespace("n").count() == 20


def test_a_bad_put_is_refused_alone(store: Store) -> None:
    counted = CountingBackend(store)

    async def main() -> list[Any]:
        ns = AsyncStore(store).namespace("n")
        puts = [ns.put("good-1", 1), ns.put("x" * 100, 2), ns.put("good-2", 3)]
        return await asyncio.gather(*puts, return_exceptions=True)

    first, bad, last = _run(main())
    assert isinstance(bad, InvalidRequest) and bad.field == "key"
    assert first.value == 1 and last.value == 3
    assert counted.units == [2]  # the two good puts still shared their commit


def test_a_failed_shared_commit_retries_each_put_alone(store: Store) -> None:
    counted = CountingBackend(store)
    counted.fail = 1
    shared: list[tuple[bool, int]] = []

    async def main() -> list[Any]:
        astore = AsyncStore(store, on_shared_commit=lambda ok, n: shared.append((ok, n)))
        ns = astore.namespace("n")
        return await asyncio.gather(*(ns.put(f"k{i}", i) for i in range(4)))

    items = _run(main())
    assert counted.units == [-4, 1, 1, 1, 1]  # the shared unit broke, then one by one
    assert shared == [(False, 4)]
    assert [i.value for i in items] == [0, 1, 2, 3]


def test_conditional_puts_keep_their_own_outcome(store: Store) -> None:
    store.namespace("n").put("held", 0)
    counted = CountingBackend(store)

    async def main() -> tuple[Any, ...]:
        ns = AsyncStore(store).namespace("n")
        return await asyncio.gather(
            ns.put("a", 1),
            ns.put("held", 1, if_version=7),  # wrong version: fails alone
            ns.put("held", 2, if_version=1),
            ns.put("b", 3),
            return_exceptions=True,
        )

    a, conflict, held, b = _run(main())
    assert isinstance(conflict, VersionConflict)
    assert held.version == 2 and a.value == 1 and b.value == 3
    # the conditional puts ran one by one, the plain ones shared a commit
    assert sorted(counted.units) == [1, 1, 2]


def test_batch_key_keeps_groups_apart(store: Store) -> None:
    counted = CountingBackend(store)
    var: contextvars.ContextVar[str] = contextvars.ContextVar("group", default="")

    async def main() -> None:
        ns = AsyncStore(store, batch_key=var.get).namespace("n")

        async def one(group: str, key: str) -> Any:
            var.set(group)  # in this task's own context: batch_key reads it there
            return await ns.put(key, group)

        await asyncio.gather(one("x", "1"), one("y", "2"), one("x", "3"), one("y", "4"))

    _run(main())
    assert sorted(counted.units) == [2, 2]
    assert store.namespace("n").get("3").value == "x"  # type: ignore[union-attr]


def test_batching_can_be_turned_off(store: Store) -> None:
    counted = CountingBackend(store)

    async def main() -> None:
        ns = AsyncStore(store, batch_writes=False).namespace("n")
        await asyncio.gather(*(ns.put(f"k{i}", i) for i in range(5)))

    _run(main())
    assert sum(counted.units) == 5 and max(counted.units) == 1


def test_a_handle_with_its_own_options_never_shares(store: Store) -> None:
    counted = CountingBackend(store)

    async def main() -> None:
        ns = AsyncStore(store).namespace("n", compress_above=None)  # its own policy
        await asyncio.gather(*(ns.put(f"k{i}", i) for i in range(3)))

    _run(main())
    assert counted.units == [1, 1, 1]


def test_write_back_puts_are_acknowledged_from_the_cache_not_shared() -> None:
    store = clawstate.open("memory://", namespaces={"wb": {"cache": "write-back"}})
    try:
        counted = CountingBackend(store)

        async def main() -> list[Any]:
            ns = AsyncStore(store).namespace("wb")
            return await asyncio.gather(*(ns.put(f"k{i}", i) for i in range(3)))

        items = _run(main())
        assert counted.units == []  # acknowledged before durable, as the policy says
        assert [i.value for i in items] == [0, 1, 2]
        store.flush()
        assert sum(counted.units) == 3
    finally:
        store.close()
