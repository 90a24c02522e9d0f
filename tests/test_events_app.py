"""The event store as an application uses it (issue 11, section 5), on every backend
that keeps events (memory, SQLite, PostgreSQL):

* poison events: a projection's failure policy (retry with backoff, then stop or park
  in a dead-letter namespace), the error and stuck position in status, retry and skip;
* ``set_stream_metadata`` merges fields (``None`` clears one) and works in a transaction;
* reads in a transaction see its own buffered writes (puts, deletes, TTLs);
* ``Namespace.update`` (compare-and-set retried on conflict) and its async twin;
* the async store is complete: snapshots, repositories and projection runners awaitably,
  and async transaction writes buffer when called, not when awaited.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import clawstate
from clawstate import Event, InvalidRequest, Store, VersionConflict
from clawstate._retry import retry_on_conflict
from clawstate.events import (
    Aggregate,
    FailurePolicy,
    Projection,
    ProjectionStopped,
    ReadModel,
    RecordedEvent,
    applies,
    handles,
)
from clawstate.events import retry_on_conflict as events_retry_on_conflict
from clawstate.testing.conformance import StoreFactory
from clawstate.testing.fakes import FakeClock
from test_postgres import DEFAULT_OPTIONS, drop_schema, new_schema, pg, url_for

__all__ = ["pg"]  # the fixture, re-exported for pytest

BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        request.getfixturevalue("pg")  # skips (or fails in CI) without PostgreSQL
    return name


@pytest.fixture
def store_factory(kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """A fresh store per call on ``kind`` (PostgreSQL: a fresh schema, dropped after)."""
    opened: list[Store] = []
    schemas: list[str] = []

    def factory(clock: Any = None, **options: Any) -> Store:
        if kind == "memory":
            url = "memory://"
        elif kind == "sqlite":
            url = f"sqlite:///{tmp_path}/app-{len(opened)}.db"
        else:
            schemas.append(new_schema())
            url = url_for(schemas[-1])
        store = clawstate.open(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
    for schema in schemas:
        drop_schema(schema)


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _order(customer: str, total: int) -> Event:
    return Event("OrderPlaced", {"customer": customer, "total": total})


class Totals(Projection):
    """Order totals per customer; a negative total is a poison event."""

    name = "totals"
    failure = FailurePolicy(retries=2, backoff=0.0)

    @handles("OrderPlaced")
    def placed(self, event: RecordedEvent, view: ReadModel) -> None:
        # A write before the failure: it must not survive the failed attempt.
        view.update("attempts", lambda n: (n or 0) + 1)
        if event.data["total"] < 0:
            raise ValueError(f"negative total {event.data['total']}")
        view.update(event.data["customer"], lambda t: (t or 0) + event.data["total"])


class ParkedTotals(Totals):
    name = "parked-totals"
    failure = FailurePolicy(retries=1, backoff=0.0, then="park", dead_letter="totals-dead")


def _values(store: Store, namespace: str) -> dict[str, Any]:
    return {it.key: it.value for it in store.namespace(namespace).scan(limit=1000).items}


# -- poison events ----------------------------------------------------------------------


def test_a_poison_event_stops_the_projection_at_it_with_the_error_in_status(
    store: Store,
) -> None:
    events = store.events
    events.append("o-1", [_order("ann", 5), _order("bob", -1), _order("ann", 2)])
    runner = events.projection_runner([Totals()])
    with pytest.raises(ProjectionStopped) as raised:
        runner.run_until_idle()
    assert raised.value.name == "totals" and raised.value.position == 2
    assert isinstance(raised.value.__cause__, ValueError)
    # The event before the poison one committed; the failing handler's writes did not.
    assert _values(store, "totals") == {"ann": 5, "attempts": 1}
    for status in (runner.status()[0], events.projection_status()[0]):
        assert (status.position, status.stuck_position, status.stopped) == (1, 2, True)
        assert (status.error_type, status.error) == ("ValueError", "negative total -1")
        assert status.attempts == 3, "the first attempt and retries=2"
        assert status.last_error == "ValueError: negative total -1"
        assert status.lag_events == 2
    # Stopped means stopped: later events wait behind the poison one.
    events.append("o-2", [_order("cat", 1)])
    with pytest.raises(ProjectionStopped):
        runner.run_until_idle()
    assert "cat" not in _values(store, "totals")


def test_retry_resumes_a_stopped_projection_once_the_cause_is_fixed(store: Store) -> None:
    events = store.events
    events.append("o-1", [_order("ann", -3), _order("ann", 4)])
    fixed = {"yes": False}

    class Flaky(Projection):
        name = "flaky"
        failure = FailurePolicy(retries=0, backoff=0.0)

        @handles("OrderPlaced")
        def placed(self, event: RecordedEvent, view: ReadModel) -> None:
            if not fixed["yes"]:
                raise RuntimeError("downstream schema missing")
            view.update("sum", lambda t: (t or 0) + event.data["total"])

    runner = events.projection_runner([Flaky()])
    with pytest.raises(ProjectionStopped):
        runner.run_until_idle()
    assert runner.status()[0].attempts == 1
    fixed["yes"] = True
    with pytest.raises(ProjectionStopped):
        runner.run_until_idle()  # fixing the code is not enough: stopped until retry
    status = runner.retry("flaky")
    assert (status.stopped, status.attempts, status.stuck_position) == (False, 0, 1)
    assert runner.run_until_idle() == 2
    assert _values(store, "flaky") == {"sum": 1}
    after = runner.status()[0]
    assert (after.stuck_position, after.error, after.stopped) == (None, None, False)
    with pytest.raises(InvalidRequest, match="not stuck"):
        runner.retry("flaky")


def test_skip_moves_past_the_event_and_records_it_as_a_dead_letter(store: Store) -> None:
    events = store.events
    events.append("o-1", [_order("ann", 5), _order("bob", -1), _order("ann", 2)])
    runner = events.projection_runner([Totals()])
    with pytest.raises(ProjectionStopped):
        runner.run_until_idle()
    record = runner.skip("totals")
    assert record["reason"] == "skipped" and record["position"] == 2
    assert record["data"] == {"customer": "bob", "total": -1}
    assert (record["error_type"], record["stream"], record["version"]) == ("ValueError", "o-1", 2)
    assert runner.run_until_idle() == 1
    assert _values(store, "totals") == {"ann": 7, "attempts": 2}
    status = runner.status()[0]
    assert (status.position, status.skipped, status.stuck_position) == (3, 1, None)
    dead = _values(store, "dead-letters")
    assert list(dead) == ["totals/00000000000000000002"]
    assert dead["totals/00000000000000000002"]["id"] == events.read("o-1")[1].id
    with pytest.raises(InvalidRequest, match="not stuck"):
        runner.skip("totals")


def test_park_policy_moves_the_event_to_its_dead_letter_namespace_and_goes_on(
    store: Store,
) -> None:
    events = store.events
    events.append("o-1", [_order("ann", 5), _order("bob", -1), _order("ann", 2)])
    runner = events.projection_runner([ParkedTotals()])
    assert runner.run_until_idle() == 2
    assert _values(store, "parked-totals") == {"ann": 7, "attempts": 2}
    [(key, record)] = _values(store, "totals-dead").items()
    assert key == "parked-totals/00000000000000000002"
    assert (record["reason"], record["attempts"], record["error"]) == (
        "parked",
        2,
        "negative total -1",
    )
    status = runner.status()[0]
    assert (status.parked, status.position, status.stopped, status.dead_letter) == (
        1,
        3,
        False,
        "totals-dead",
    )
    # A rebuild replays everything, so the stale dead letters go with the read model.
    assert runner.rebuild("parked-totals") == 2
    assert len(_values(store, "totals-dead")) == 1, "parked again by the replay"


def test_run_forever_backs_off_then_stops_and_resumes_after_retry(store: Store) -> None:
    events = store.events
    calls: list[float] = []
    healthy = threading.Event()

    class Slow(Projection):
        name = "slow"
        failure = FailurePolicy(retries=2, backoff=0.05, max_backoff=0.1)

        @handles("OrderPlaced")
        def placed(self, event: RecordedEvent, view: ReadModel) -> None:
            calls.append(time.monotonic())
            if not healthy.is_set():
                raise ConnectionError("mail server down")
            view.put("done", event.position)

    events.append("o-1", [_order("ann", 1)])
    runner = events.projection_runner([Slow(), Totals()])
    worker = threading.Thread(target=runner.run_forever, kwargs={"idle_wait": 0.05})
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s.stopped for s in runner.status() if s.name == "slow"):
            assert time.monotonic() < deadline, "the projection did not stop"
            time.sleep(0.01)
        assert len(calls) == 3, "one attempt and two retries, then stop"
        # The pauses grow (0.05 then 0.1); a generous lower bound only.
        assert calls[1] - calls[0] >= 0.04 and calls[2] - calls[1] >= 0.09
        # The other projection was not held up.
        assert _values(store, "totals") == {"ann": 1, "attempts": 1}
        healthy.set()
        runner.retry("slow")
        while store.namespace("slow").get("done") is None:
            assert time.monotonic() < deadline, "the retried projection did not resume"
            time.sleep(0.01)
    finally:
        runner.stop()
        worker.join(5)
    assert not worker.is_alive()


def test_a_stop_recorded_by_one_runner_holds_for_another(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.events.append("o-1", [_order("ann", -1)])
    with pytest.raises(ProjectionStopped):
        store.events.projection_runner([Totals()]).run_until_idle()
    other = store.events.projection_runner([Totals()])
    with pytest.raises(ProjectionStopped):
        other.run_until_idle()
    assert store.namespace("totals").get("attempts") is None, "the failed writes were dropped"
    assert other.status()[0].attempts == 3, "the second runner did not try it again"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"retries": -1}, "failure.retries"),
        ({"retries": 101}, "failure.retries"),
        ({"backoff": -1}, "failure.backoff"),
        ({"max_backoff": "1s"}, "failure.max_backoff"),
        ({"then": "ignore"}, "failure.then"),
        ({"dead_letter": "bad name!"}, "failure.dead_letter"),
    ],
)
def test_bad_failure_policies_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        FailurePolicy(**kwargs)
    assert raised.value.field == field


def test_retry_and_skip_of_unknown_projections_are_refused(store: Store) -> None:
    runner = store.events.projection_runner([Totals()])
    for op in (runner.retry, runner.skip):
        with pytest.raises(InvalidRequest, match="no projection named"):
            op("nope")
        with pytest.raises(InvalidRequest, match="checkpoint"):
            op("totals")


# -- stream metadata ----------------------------------------------------------------------


def test_set_stream_metadata_merges_and_none_clears(store: Store) -> None:
    events = store.events
    events.append("s", [Event("E", {"i": i}) for i in range(1, 11)])
    meta = events.set_stream_metadata("s", max_count=3)
    assert (meta.max_count, meta.truncate_before) == (3, None)
    meta = events.set_stream_metadata("s", truncate_before=9)
    assert (meta.max_count, meta.truncate_before) == (3, 9), "max_count was kept"
    assert events.stream_metadata("s") == meta
    events.set_stream_metadata("s", max_age=3600)
    assert events.stream_metadata("s").max_count == 3
    meta = events.set_stream_metadata("s", max_count=None)
    assert (meta.max_age, meta.max_count, meta.truncate_before) == (3600.0, None, 9)
    assert [e.version for e in events.read("s")] == [9, 10]
    assert events.set_stream_metadata("s") == events.stream_metadata("s"), (
        "nothing given: no change"
    )


def test_stream_metadata_in_a_transaction_commits_with_its_writes(store: Store) -> None:
    events = store.events
    events.append("s", [Event("E") for _ in range(5)])
    events.set_stream_metadata("s", max_count=4)
    with store.transaction() as tx:
        tx.namespace("streams").put("s", {"archived": True})
        tx.events.set_stream_metadata("s", truncate_before=3)
        tx.events.append("t", [Event("E")])
    assert [r.version for r in tx.appended] == [5, 1]
    meta = events.stream_metadata("s")
    assert (meta.max_count, meta.truncate_before) == (4, 3)
    # A failed condition refuses the whole transaction, metadata included.
    with pytest.raises(VersionConflict):
        with store.transaction() as tx:
            tx.events.set_stream_metadata("s", max_count=1, truncate_before=None)
            tx.namespace("streams").put("s", {}, if_absent=True)
    assert events.stream_metadata("s").max_count == 4
    with pytest.raises(InvalidRequest) as raised:
        with store.transaction() as tx:
            tx.events.set_stream_metadata("s", max_count=0)
    assert raised.value.field == "max_count"


# -- reads in a transaction ----------------------------------------------------------------


def test_reads_in_a_transaction_see_its_own_writes(store_factory: StoreFactory) -> None:
    clock = FakeClock()
    store = store_factory(clock=clock)
    ns = store.namespace("docs")
    ns.put("kept", "old", ttl=100)
    ns.put("gone", 1)
    with store.transaction() as tx:
        txn = tx.namespace("docs")
        assert txn.get("kept").value == "old"  # type: ignore[union-attr]
        txn.put("new", {"n": 1}, ttl=50)
        txn.put("kept", "new", keep_ttl=True)
        txn.delete("gone")
        item = txn.get("new")
        assert item is not None and item.value == {"n": 1}
        assert (item.version, item.etag, item.expires_at) == (0, "", clock() + 50)
        kept = txn.get("kept")
        assert kept is not None and kept.value == "new"
        assert kept.expires_at == ns.get("kept").expires_at  # type: ignore[union-attr]
        assert txn.get("gone") is None
        assert ns.get("gone") is not None, "not committed yet"
        many = txn.get_many(["new", "kept", "gone", "absent"])
        assert sorted(many) == ["kept", "new"]
        txn.put("gone", "back")
        assert txn.get("gone").value == "back"  # type: ignore[union-attr]
    assert ns.get("gone").value == "back"  # type: ignore[union-attr]
    assert ns.get("new").version >= 1  # type: ignore[union-attr]


def test_a_short_ttl_reads_as_expired_in_a_long_transaction(store_factory: StoreFactory) -> None:
    clock = FakeClock()
    store = store_factory(clock=clock)
    tx = store.transaction()
    tx.namespace("docs").put("k", 1, ttl=5)
    clock.advance(6)
    assert tx.namespace("docs").get("k") is None
    tx.rollback()


# -- Namespace.update ----------------------------------------------------------------------


def test_update_creates_then_changes_and_keeps_the_ttl(store: Store) -> None:
    ns = store.namespace("counters")
    first = ns.update("hits", lambda n: (n or 0) + 1)
    assert first.value == 1
    ns.put("hits", 10, ttl=300)
    expires = ns.get("hits").expires_at  # type: ignore[union-attr]
    item = ns.update("hits", lambda n: n + 1)
    assert (item.value, item.expires_at) == (11, expires)
    assert ns.update("hits", lambda n: n * 2, ttl=10).expires_at != expires
    assert ns.update("fresh", lambda v: [*v, "x"], default=[]).value == ["x"]


def test_update_retries_conflicts_from_concurrent_writers(store: Store) -> None:
    ns = store.namespace("counters")
    ns.put("n", 0)
    threads = [
        threading.Thread(
            target=lambda: [ns.update("n", lambda v: v + 1, retries=1000) for _ in range(20)]
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ns.get("n").value == 80  # type: ignore[union-attr]


def test_update_gives_up_after_its_retries(store: Store) -> None:
    ns = store.namespace("counters")
    ns.put("n", 0)
    calls = []

    def meddle(value: int) -> int:
        calls.append(value)
        ns.put("n", value + 100)  # another writer, every time
        return value + 1

    with pytest.raises(VersionConflict):
        ns.update("n", meddle, retries=2)
    assert len(calls) == 3
    with pytest.raises(InvalidRequest) as raised:
        ns.update("n", meddle, retries=-1)
    assert raised.value.field == "retries"


def test_retry_on_conflict_has_one_home() -> None:
    assert events_retry_on_conflict is retry_on_conflict


# -- the async store --------------------------------------------------------------------------


class Cart(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.items: list[str] = []

    @classmethod
    def create(cls, id: str) -> Cart:
        cart = cls(id)
        cart.record("Created")
        return cart

    def add(self, sku: str) -> None:
        self.record("ItemAdded", {"sku": sku})

    @applies("ItemAdded")
    def _added(self, data: dict[str, Any]) -> None:
        self.items.append(data["sku"])


@pytest.fixture
def async_store(kind: str, store_factory: StoreFactory) -> Iterator[clawstate.AsyncStore]:
    store = store_factory()
    yield clawstate.AsyncStore(store)


def test_async_snapshots_repositories_and_runners(async_store: clawstate.AsyncStore) -> None:
    async def scenario() -> None:
        events = async_store.events
        repo = events.repository(Cart, snapshot_every=2)
        cart = Cart.create("c1")
        cart.add("apple")
        await repo.save(cart)
        loaded = await repo.load("c1")
        assert loaded.items == ["apple"] and loaded.version == 2
        snap = await events.snapshots.load(cart.stream)
        assert snap is not None and snap.version == 2

        async def add_pear(c: Cart) -> None:
            await asyncio.sleep(0)
            c.add("pear")

        updated = await repo.update("c1", add_pear)
        assert updated.items == ["apple", "pear"]
        assert await repo.get("nope") is None
        await events.snapshots.save("x", 1, {"a": 1})
        assert (await events.snapshots.load("x")).state == {"a": 1}  # type: ignore[union-attr]
        assert await events.snapshots.delete("x")

        await events.append("o-1", [_order("ann", 5), _order("bob", -1)])
        runner = events.projection_runner([Totals(), ParkedTotals()])
        with pytest.raises(ProjectionStopped):
            await runner.run_until_idle()
        assert (await runner.status())[0].stuck_position == await events.last_position()
        await runner.skip("totals")
        assert await runner.run_until_idle() == 0
        statuses = {s.name: s for s in await events.projection_status()}
        assert statuses["totals"].skipped == 1 and statuses["parked-totals"].parked == 1

        task = asyncio.create_task(runner.run_forever(idle_wait=0.05))
        await events.append("o-2", [_order("cat", 3)])
        for _ in range(400):
            if "cat" in _values(async_store.sync, "totals"):
                break
            await asyncio.sleep(0.025)
        assert _values(async_store.sync, "totals")["cat"] == 3
        runner.stop()
        await asyncio.wait_for(task, 5)

        counter = async_store.namespace("counters")
        assert (await counter.update("n", lambda v: (v or 0) + 1)).value == 1

        async def double(v: int) -> int:
            return v * 2

        assert (await counter.update("n", double)).value == 2
        await async_store.close()

    asyncio.run(scenario())


def test_async_transaction_writes_buffer_even_without_await(
    async_store: clawstate.AsyncStore,
) -> None:
    async def scenario() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a never-awaited coroutine would warn
            async with async_store.transaction() as tx:
                txn = tx.namespace("docs")
                txn.put("a", 1)  # no await: still buffered
                await txn.put("b", 2)
                txn.delete("b")
                tx.events.append("s", [Event("E")])
                tx.events.set_stream_metadata("s", max_count=5)
                assert (await txn.get("a")).value == 1  # type: ignore[union-attr]
                assert await txn.get_many(["a", "b"]) == {"a": await txn.get("a")}
        assert [it.key for it in (await async_store.namespace("docs").scan()).items] == ["a"]
        assert (await async_store.events.stream_metadata("s")).max_count == 5
        assert len(tx.appended) == 2
        await async_store.close()

    asyncio.run(scenario())
