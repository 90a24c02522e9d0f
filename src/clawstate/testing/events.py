"""The event-store conformance suites: one body of tests every event-store backend passes.

Used exactly like :mod:`clawstate.testing.conformance`: where a ``store_factory``
fixture exists (``store_factory(clock=None, **options) -> Store``, fresh and
empty, closed at teardown), ::

    from clawstate.testing.events import EventStoreConformance

    class TestMyBackendEvents(EventStoreConformance):
        pass

runs every test here against it; :class:`AsyncEventStoreConformance` does the
same through ``async_store_factory``.  Every store a test opens is checked with
:meth:`Store.check` at teardown (the oracle also verifies the event tables:
versions without holes, positions in version order), and every refused request
is checked to have changed nothing: the global log's end, every stream's
events and every namespace are compared before and after.

This module imports only ``clawstate`` and ``pytest``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import clawstate
from clawstate import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    AsyncStore,
    Event,
    InvalidRequest,
    RecordedEvent,
    Store,
    VersionConflict,
    WrongExpectedVersion,
)
from clawstate.events import (
    DELETED,
    Aggregate,
    EventFilter,
    Projection,
    ReadModel,
    applies,
    handles,
)
from clawstate.testing.conformance import AsyncStoreFactory, Clock, StoreFactory, assert_sound
from clawstate.testing.fakes import FakeClock

__all__ = [
    "AsyncEventStoreConformance",
    "Cart",
    "EventStoreConformance",
    "EventsSnapshot",
    "OrderTotals",
    "assert_events_refused",
    "events_snapshot",
    "read_model",
]

#: (last position, every event of the log as (position, stream, version, id, type),
#:  every namespace's (key, version) pairs)
EventsSnapshot = tuple[int, list[tuple[int, str, int, str, str]], dict[str, list[tuple[str, int]]]]


def events_snapshot(store: Store) -> EventsSnapshot:
    """What a refused request must leave untouched: the whole log and every namespace."""
    log: list[tuple[int, str, int, str, str]] = []
    after = 0
    while True:
        page = store.events.read_all(after, 1000)
        log += [(e.position, e.stream, e.version, e.id, e.type) for e in page]
        if len(page) < 1000:
            break
        after = page[-1].position
    items: dict[str, list[tuple[str, int]]] = {}
    for name in store.namespaces():
        ns = store._any_namespace(name)
        items[name] = []
        cursor = None
        while True:
            p = ns.scan(limit=1000, cursor=cursor)
            items[name] += [(it.key, it.version) for it in p.items]
            cursor = p.cursor
            if cursor is None:
                break
    return store.events.last_position, log, items


def assert_events_refused(
    store: Store, field: str, action: Callable[[], object], *, prefix: bool = False
) -> InvalidRequest:
    """``action`` raises InvalidRequest naming ``field`` (or a field starting with it)
    and changes nothing."""
    before = events_snapshot(store)
    with pytest.raises(InvalidRequest) as info:
        action()
    err = info.value
    if prefix:
        assert err.field.startswith(field), (err.field, str(err))
    else:
        assert err.field == field, (err.field, str(err))
    assert str(err), "the error must say why"
    assert events_snapshot(store) == before, "a refused request changed the store"
    return err


def read_model(store: Store, namespace: str) -> dict[str, Any]:
    """Every item of a read-model namespace, as ``{key: value}``."""
    out: dict[str, Any] = {}
    cursor = None
    ns = store.namespace(namespace)
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        out.update((it.key, it.value) for it in page.items)
        cursor = page.cursor
        if cursor is None:
            return out


class Cart(Aggregate):
    """The aggregate the suite exercises."""

    stream_prefix = "cart-"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.items: list[str] = []
        self.checked_out = False

    @classmethod
    def create(cls, id: str) -> Cart:
        cart = cls(id)
        cart.record("CartCreated", {"id": id})
        return cart

    def add(self, sku: str) -> None:
        if self.checked_out:
            raise ValueError("checked out")
        self.record("ItemAdded", {"sku": sku})

    def checkout(self) -> None:
        self.record("CheckedOut")

    @applies("ItemAdded")
    def _added(self, data: dict[str, Any]) -> None:
        self.items.append(data["sku"])

    def apply_CheckedOut(self, data: dict[str, Any]) -> None:  # the naming convention
        self.checked_out = True


class OrderTotals(Projection):
    """The projection the suite exercises: per-customer totals and order counts."""

    name = "order-totals"
    namespace = "totals"
    stream_prefix = "order-"

    @handles("OrderPlaced")
    def placed(self, event: RecordedEvent, view: ReadModel) -> None:
        customer = event.data["customer"]
        view.update(
            customer,
            lambda doc: {
                "total": (doc or {}).get("total", 0) + event.data["total"],
                "orders": (doc or {}).get("orders", 0) + 1,
            },
        )

    @handles("OrderCancelled")
    def cancelled(self, event: RecordedEvent, view: ReadModel) -> None:
        view.delete(event.data["customer"])


def _placed(customer: str, total: int) -> Event:
    return Event("OrderPlaced", {"customer": customer, "total": total})


class EventStoreConformance:
    """The event store's contract.  Subclass it where a ``store_factory`` fixture exists."""

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
        return open_store(clock=clock)

    # -- append and read --------------------------------------------------------------

    def test_append_and_read_round_trip(self, store: Store, clock: FakeClock) -> None:
        ev = Event(
            "OrderPlaced",
            {"total": 9.5, "items": [{"sku": "a"}], "note": "Zoë 😀", "none": None},
            {"correlation_id": "c-1", "causation_id": "k-9"},
            schema_version=2,
        )
        result = store.events.append("order-1", [ev], expected_version=NO_STREAM)
        assert result == AppendResult(version=1, position=1)
        [got] = store.events.read("order-1")
        assert (got.stream, got.version, got.position) == ("order-1", 1, 1)
        assert (got.type, got.data, got.metadata) == (ev.type, ev.data, ev.metadata)
        assert (got.id, got.schema_version, got.recorded_at) == (ev.id, 2, clock())
        assert store.events.read_all() == [got]
        assert store.events.last_position == 1

    def test_versions_and_positions_count_from_one(self, store: Store) -> None:
        events = store.events
        assert events.append("a", [Event("E", {"i": 1}), Event("E", {"i": 2})]) == AppendResult(
            2, 2
        )
        assert events.append("b", [Event("E", {"i": 3})]) == AppendResult(1, 3)
        assert events.append("a", [Event("E", {"i": 4})]) == AppendResult(3, 4)
        assert [(e.stream, e.version, e.position) for e in events.read_all()] == [
            ("a", 1, 1),
            ("a", 2, 2),
            ("b", 1, 3),
            ("a", 3, 4),
        ]
        assert [e.data["i"] for e in events.read("a")] == [1, 2, 4]

    def test_ids_are_uuids_and_metadata_defaults_to_empty(self, store: Store) -> None:
        import uuid

        store.events.append("s", [Event("E"), Event("E", id=str(uuid.uuid4()).upper())])
        first, second = store.events.read("s")
        assert uuid.UUID(first.id).version == 7
        assert second.id == second.id.lower()
        assert first.metadata == {} and first.data == {}

    def test_unknown_stream_reads_empty(self, store: Store) -> None:
        assert store.events.read("nope") == []
        assert store.events.read_all() == []
        assert store.events.stream_metadata("nope").version == 0

    # -- expected versions ----------------------------------------------------------------

    def test_expected_version_checks(self, store: Store) -> None:
        events = store.events
        events.append("s", [Event("A")], expected_version=NO_STREAM)
        with pytest.raises(WrongExpectedVersion) as info:
            events.append("s", [Event("B")], expected_version=NO_STREAM)
        err = info.value
        assert (err.stream, err.expected, err.actual) == ("s", NO_STREAM, 1)
        assert isinstance(err, VersionConflict)
        events.append("s", [Event("B")], expected_version=1)
        with pytest.raises(WrongExpectedVersion) as info:
            events.append("s", [Event("C")], expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 2)
        with pytest.raises(WrongExpectedVersion) as info:
            events.append("new", [Event("C")], expected_version=STREAM_EXISTS)
        assert (info.value.expected, info.value.actual) == (STREAM_EXISTS, None)
        with pytest.raises(WrongExpectedVersion):
            events.append("new", [Event("C")], expected_version=3)
        assert events.append("s", [Event("C")], expected_version=STREAM_EXISTS).version == 3
        assert events.append("s", [Event("D")], expected_version=ANY).version == 4
        assert events.append("zero", [Event("D")], expected_version=0).version == 1
        assert events.last_position == 5
        assert [e.type for e in events.read("s")] == ["A", "B", "C", "D"]

    def test_failed_expected_version_writes_nothing(self, store: Store) -> None:
        store.events.append("s", [Event("A")])
        before = events_snapshot(store)
        with pytest.raises(WrongExpectedVersion):
            store.events.append("s", [Event("B"), Event("C")], expected_version=5)
        assert events_snapshot(store) == before

    @pytest.mark.parametrize("bad", [-1, True, "later", 1.0, None, [1]])
    def test_bad_expected_version_is_refused(self, store: Store, bad: Any) -> None:
        assert_events_refused(
            store,
            "expected_version",
            lambda: store.events.append("s", [Event("A")], expected_version=bad),
        )

    # -- idempotency ------------------------------------------------------------------------

    def test_same_ids_again_return_the_first_result(self, store: Store) -> None:
        batch = [Event("A", {"n": 1}), Event("B", {"n": 2})]
        first = store.events.append("s", batch, expected_version=NO_STREAM)
        again = store.events.append("s", batch, expected_version=NO_STREAM)
        assert again == first == AppendResult(2, 2)
        assert store.events.append("s", batch, expected_version=ANY) == first
        assert store.events.append("s", batch[:1], expected_version=NO_STREAM) == AppendResult(1, 1)
        store.events.append("s", [Event("C")])
        assert store.events.append("s", batch, expected_version=NO_STREAM) == first
        assert store.events.last_position == 3
        assert [e.type for e in store.events.read("s")] == ["A", "B", "C"]

    def test_reused_ids_that_do_not_repeat_an_append_are_refused(self, store: Store) -> None:
        a, b = Event("A"), Event("B")
        store.events.append("s", [a, b])
        err = assert_events_refused(store, "events[0].id", lambda: store.events.append("t", [b]))
        assert "unique" in str(err)
        assert_events_refused(
            store,
            "events[1].id",
            lambda: store.events.append("s", [a, Event("C")], expected_version=0),
        )
        assert_events_refused(
            store, "events[1].id", lambda: store.events.append("t", [Event("X"), a])
        )
        twice = Event("T")
        assert_events_refused(
            store, "events[1].id", lambda: store.events.append("u", [twice, twice])
        )

    # -- retries are recognised by content; collisions say nothing of other streams ----------

    def test_an_id_collision_never_names_the_other_stream(self, store: Store) -> None:
        taken = Event("Placed", {"total": 9})
        store.events.append("a-secret-order-42", [Event("Opened"), taken])
        attempts: list[list[Event]] = [
            [Event("Mine", id=taken.id)],
            [Event("Mine"), Event("Mine", id=taken.id)],
        ]
        for events in attempts:

            def append(ev: list[Event] = events) -> object:
                return store.events.append("mine", ev)

            err = assert_events_refused(store, "events[", append, prefix=True)
            text = str(err)
            assert "a-secret-order-42" not in text and "secret" not in text, text
            assert "event 2" not in text and "version" not in text, text
            assert "unique" in text

    @pytest.mark.parametrize(
        ("changed", "field"),
        [
            ({"type": "Other"}, "events[0]"),
            ({"data": {"total": 10}}, "events[0]"),
            ({"data": {}}, "events[0]"),
            ({"metadata": {"by": "someone else"}}, "events[0]"),
            ({"metadata": None}, "events[0]"),
            ({"schema_version": 2}, "events[0]"),
        ],
        ids=lambda v: v if isinstance(v, str) else next(iter(v)),
    )
    def test_a_retry_with_other_content_is_refused(
        self, store: Store, changed: dict[str, Any], field: str
    ) -> None:
        """Same id, other content: not a retry but another append that lost a race."""
        first = Event("Placed", {"total": 9}, {"by": "u1"})
        result = store.events.append("order", [first], expected_version=NO_STREAM)
        fields = {
            "type": first.type,
            "data": first.data,
            "metadata": first.metadata,
            "schema_version": first.schema_version,
            **changed,
        }
        other = Event(id=first.id, **fields)
        assert_events_refused(
            store,
            field,
            lambda: store.events.append("order", [other], expected_version=NO_STREAM),
        )
        # ... also as the second event of an append, and with any expected version
        second = Event("Paid", {"n": 1})
        store.events.append("order", [second])
        changed_second = Event(id=second.id, **{**fields, "type": "Paid", "data": {"n": 2}})
        assert_events_refused(
            store,
            "events[1]",
            lambda: store.events.append("order", [first, changed_second], expected_version=ANY),
        )
        same = Event(first.type, first.data, first.metadata, id=first.id)
        assert store.events.append("order", [same], expected_version=NO_STREAM) == result

    @pytest.mark.parametrize(
        ("expected", "replays"),
        [
            (ANY, True),
            (1, True),
            (STREAM_EXISTS, True),
            (NO_STREAM, False),
            (0, False),
            (2, False),
            (3, False),
            (7, False),
        ],
    )
    def test_a_retry_must_have_an_expected_version_that_admits_it(
        self, store: Store, expected: Any, replays: bool
    ) -> None:
        """The first append (expected 1) put its event at version 2: a retry replays
        exactly when its own expected version would have put it there."""
        store.events.append("s", [Event("A")], expected_version=NO_STREAM)
        ev = Event("B", {"n": 1})
        first = store.events.append("s", [ev], expected_version=1)
        store.events.append("s", [Event("C")])  # the stream moved on since
        retry = Event("B", {"n": 1}, id=ev.id)
        if replays:
            assert store.events.append("s", [retry], expected_version=expected) == first
        else:
            assert_events_refused(
                store,
                "expected_version",
                lambda: store.events.append("s", [retry], expected_version=expected),
            )
        assert store.events.last_position == 3

    def test_the_loser_of_a_save_race_is_not_told_it_won(self, store: Store) -> None:
        """Two writers derive the same event id from a command; the second, with other
        data, must learn that its append did not happen."""
        store.events.append("cart", [Event("Created")], expected_version=NO_STREAM)
        winner = Event("ItemAdded", {"sku": "a"})
        store.events.append("cart", [winner], expected_version=1)
        loser = Event("ItemAdded", {"sku": "b"}, id=winner.id)
        assert_events_refused(
            store, "events[0]", lambda: store.events.append("cart", [loser], expected_version=1)
        )
        assert [e.data for e in store.events.read("cart")][-1] == {"sku": "a"}

    def test_a_transaction_idempotency_key_is_scoped_by_stream(self, store: Store) -> None:
        def run(stream: str) -> list[AppendResult]:
            with store.transaction(idempotency_key="req-1") as tx:
                tx.events.append(stream, [Event("A", {"n": 1})], expected_version=NO_STREAM)
            return tx.appended

        assert run("tenant-a-stream") == [AppendResult(1, 1)]
        assert run("tenant-b-stream") == [AppendResult(1, 2)]  # another stream: applied
        assert run("tenant-a-stream") == [AppendResult(1, 1)]  # a retry: replayed
        assert store.events.last_position == 2

    # -- malformed events ---------------------------------------------------------------

    @pytest.mark.parametrize(
        ("events", "field"),
        [
            ([], "events"),
            (Event("A"), "events"),
            ("A", "events"),
            ([{"type": "A"}], "events[0]"),
            ([Event("A"), "B"], "events[1]"),
            ([Event("")], "events[0].type"),
            ([Event("$system")], "events[0].type"),
            ([Event(7)], "events[0].type"),  # type: ignore[arg-type]
            ([Event("a\nb")], "events[0].type"),
            ([Event("x" * 257)], "events[0].type"),
            ([Event("A", [1, 2])], "events[0].data"),  # type: ignore[arg-type]
            ([Event("A", {"x": float("nan")})], "events[0].data"),
            ([Event("A", {"x": {1, 2}})], "events[0].data"),
            ([Event("A", {"x": b"raw"})], "events[0].data"),
            ([Event("A", {1: "int key"})], "events[0].data"),  # type: ignore[dict-item]
            ([Event("A", {"x": "\ud800"})], "events[0].data"),
            ([Event("A", {}, ["not", "a", "dict"])], "events[0].metadata"),  # type: ignore[arg-type]
            ([Event("A", {}, {"when": object()})], "events[0].metadata"),
            ([Event("A", id="not-a-uuid")], "events[0].id"),
            ([Event("A", id=42)], "events[0].id"),  # type: ignore[arg-type]
            ([Event("A", schema_version=0)], "events[0].schema_version"),
            ([Event("A", schema_version=True)], "events[0].schema_version"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_malformed_events_are_refused_naming_the_field(
        self, store: Store, events: Any, field: str
    ) -> None:
        store.events.append("s", [Event("Before")])
        assert_events_refused(store, field, lambda: store.events.append("s", events))

    @pytest.mark.parametrize("stream", ["", "a\x00b", 7, "x" * 2000])
    def test_bad_stream_names_are_refused(self, store: Store, stream: Any) -> None:
        assert_events_refused(store, "stream", lambda: store.events.append(stream, [Event("A")]))

    def test_event_size_limit(self, open_store: StoreFactory) -> None:
        store = open_store(limits={"max_value_bytes": 1000})
        store.events.append("s", [Event("A", {"pad": "x" * 900})])
        err = assert_events_refused(
            store,
            "events[1]",
            lambda: store.events.append("s", [Event("A"), Event("B", {"pad": "x" * 1100})]),
        )
        assert err.limit == 1000
        assert_events_refused(
            store,
            "events[0]",
            lambda: store.events.append("s", [Event("B", {"p": "x" * 500}, {"m": "y" * 500})]),
        )

    def test_events_per_append_limit(self, open_store: StoreFactory) -> None:
        store = open_store(limits={"max_batch": 10})
        store.events.append("s", [Event("A")] * 1 + [Event("A") for _ in range(9)])
        err = assert_events_refused(
            store, "events", lambda: store.events.append("s", [Event("A") for _ in range(11)])
        )
        assert err.limit == 10

    # -- atomic appends -------------------------------------------------------------------

    def test_append_many_is_atomic_across_streams(self, store: Store) -> None:
        events = store.events
        results = events.append_many(
            [
                ("a", [Event("A1"), Event("A2")], NO_STREAM),
                ("b", [Event("B1")], NO_STREAM),
                ("a", [Event("A3")], 2),
            ]
        )
        assert results == [AppendResult(2, 2), AppendResult(1, 3), AppendResult(3, 4)]
        before = events_snapshot(store)
        with pytest.raises(WrongExpectedVersion) as info:
            events.append_many([("c", [Event("C1")], NO_STREAM), ("b", [Event("B2")], 7)])
        assert info.value.stream == "b"
        assert events_snapshot(store) == before
        assert_events_refused(
            store,
            "events[0].type",
            lambda: events.append_many([("c", [Event("ok")], ANY), ("d", [Event("")], ANY)]),
        )
        short: Any = [("c", [Event("A")])]
        assert_events_refused(store, "appends[0]", lambda: events.append_many(short))
        assert events.append_many([]) == []

    def test_transaction_commits_events_with_state_writes(self, store: Store) -> None:
        with store.transaction() as tx:
            tx.events.append(
                "order-1", [Event("OrderPlaced", {"total": 5})], expected_version=NO_STREAM
            )
            tx.namespace("orders").put("o1", {"status": "placed"})
            tx.events.append("outbox", [Event("Notify", {"order": "o1"})])
        assert tx.appended == [AppendResult(1, 1), AppendResult(1, 2)]
        assert len(tx.result) == 1 and not isinstance(tx.result[0], bool)
        assert tx.result[0].version == 1
        assert [e.type for e in store.events.read_all()] == ["OrderPlaced", "Notify"]

    def test_transaction_with_a_failed_expected_version_writes_nothing(self, store: Store) -> None:
        store.events.append("order-1", [Event("OrderPlaced")])
        before = events_snapshot(store)
        with pytest.raises(WrongExpectedVersion), store.transaction() as tx:
            tx.namespace("orders").put("o1", {"status": "paid"})
            tx.events.append("order-1", [Event("OrderPaid")], expected_version=NO_STREAM)
        assert events_snapshot(store) == before
        assert store.namespace("orders").get("o1") is None

    def test_transaction_with_a_failed_state_condition_appends_nothing(self, store: Store) -> None:
        store.namespace("orders").put("o1", {"status": "placed"})
        before = events_snapshot(store)
        with pytest.raises(VersionConflict), store.transaction() as tx:
            tx.events.append("order-1", [Event("OrderPaid")])
            tx.namespace("orders").put("o1", {"status": "paid"}, if_version=9)
        assert events_snapshot(store) == before

    def test_events_only_transaction_and_its_idempotency_key(self, store: Store) -> None:
        def run() -> list[AppendResult]:
            with store.transaction(idempotency_key="req-1") as tx:
                tx.events.append("s", [Event("A", {"n": 1})], expected_version=NO_STREAM)
            return tx.appended

        first = run()
        assert first == [AppendResult(1, 1)]
        assert run() == first  # new Event objects (new ids): the key makes it apply once
        assert store.events.last_position == 1
        with (
            pytest.raises(InvalidRequest) as info,
            store.transaction(idempotency_key="req-1") as tx,
        ):
            tx.events.append("s", [Event("Other")], expected_version=NO_STREAM)
        assert info.value.field == "idempotency_key"

    def test_rolled_back_transaction_appends_nothing(self, store: Store) -> None:
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.events.append("s", [Event("A")])
            raise RuntimeError("abort")
        assert store.events.last_position == 0

    # -- reads ------------------------------------------------------------------------------

    def test_read_from_version_backwards_and_limit(self, store: Store) -> None:
        store.events.append("s", [Event("E", {"i": i}) for i in range(1, 11)])
        read = store.events.read
        assert [e.version for e in read("s", 7)] == [7, 8, 9, 10]
        assert [e.version for e in read("s", 3, limit=2)] == [3, 4]
        assert [e.version for e in read("s", backwards=True, limit=3)] == [10, 9, 8]
        assert [e.version for e in read("s", 4, backwards=True)] == [4, 3, 2, 1]
        assert read("s", 11) == []
        for field, call in [
            ("from_version", lambda: read("s", -1)),
            ("from_version", lambda: read("s", "1")),  # type: ignore[arg-type]
            ("limit", lambda: read("s", limit=0)),
            ("stream", lambda: read("")),
        ]:
            assert_events_refused(store, field, call)

    def test_read_all_pages_and_filters(self, store: Store) -> None:
        for i in range(6):
            store.events.append(f"order-{i % 2}", [_placed("c", i)])
            store.events.append(f"user-{i}", [Event("UserSeen", {"i": i})])
        events = store.events
        assert [e.position for e in events.read_all(0, 5)] == [1, 2, 3, 4, 5]
        assert [e.position for e in events.read_all(5, 5)] == [6, 7, 8, 9, 10]
        assert [e.position for e in events.read_all(10, 5)] == [11, 12]
        assert events.read_all(12) == []
        orders = events.read_all(filter=EventFilter(stream_prefix="order-"))
        assert [e.position for e in orders] == [1, 3, 5, 7, 9, 11]
        seen = events.read_all(4, 2, filter=EventFilter(types=("UserSeen",)))
        assert [e.position for e in seen] == [6, 8]
        both = events.read_all(filter=EventFilter("order-1", ("OrderPlaced", "Other")))
        assert [e.stream for e in both] == ["order-1"] * 3
        assert events.read_all(filter=EventFilter(types=("Nope",))) == []
        for field, call in [
            ("from_position", lambda: events.read_all(-1)),
            ("limit", lambda: events.read_all(0, 0)),
            ("limit", lambda: events.read_all(0, 10**9)),
            ("filter", lambda: events.read_all(filter="order-")),  # type: ignore[arg-type]
            ("filter.types", lambda: events.read_all(filter=EventFilter(types="A"))),  # type: ignore[arg-type]
        ]:
            assert_events_refused(store, field, call)

    def test_global_log_is_gap_free_despite_refused_appends(self, store: Store) -> None:
        for i in range(30):
            try:
                store.events.append(
                    f"s{i % 3}", [Event("E")], expected_version=i // 3 if i % 4 else 99
                )
            except WrongExpectedVersion:
                pass
        positions = [e.position for e in store.events.read_all(0, 1000)]
        assert positions == list(range(1, len(positions) + 1))
        assert store.events.last_position == len(positions)

    # -- stream metadata and soft delete ------------------------------------------------------

    def test_max_count_and_truncate_before_hide_at_once_and_sweep_removes(
        self, store: Store
    ) -> None:
        events = store.events
        events.append("s", [Event("E", {"i": i}) for i in range(1, 11)])
        meta = events.set_stream_metadata("s", max_count=3)
        assert (meta.version, meta.max_count) == (10, 3)
        assert [e.version for e in events.read("s")] == [8, 9, 10]
        assert [e.version for e in events.read("s", 1)] == [8, 9, 10]
        assert [e.version for e in events.read("s", backwards=True)] == [10, 9, 8]
        assert len(events.read_all()) == 10, "the global log keeps them until the sweep"
        events.set_stream_metadata("s", truncate_before=9)
        assert [e.version for e in events.read("s")] == [9, 10]
        assert events.stream_metadata("s").truncate_before == 9
        assert store.sweep()["events"] == 8
        assert [e.version for e in events.read_all()] == [9, 10]
        assert events.append("s", [Event("E")], expected_version=10).version == 11
        assert [e.version for e in events.read("s")] == [9, 10, 11]
        events.set_stream_metadata("s")
        assert [e.version for e in events.read("s")] == [9, 10, 11]

    def test_max_age_hides_old_events(self, store: Store, clock: FakeClock) -> None:
        events = store.events
        events.append("s", [Event("Old")])
        clock.advance(100)
        events.append("s", [Event("Mid")])
        clock.advance(100)
        events.append("s", [Event("New")])
        events.set_stream_metadata("s", max_age=150)
        assert [e.type for e in events.read("s")] == ["Mid", "New"]
        clock.advance(100)
        assert [e.type for e in events.read("s")] == ["New"]
        clock.advance(1000)
        assert events.read("s") == []
        assert store.sweep()["events"] == 2
        assert [e.type for e in events.read_all()] == ["New"], "a stream keeps its last event"
        assert events.append("s", [Event("Again")], expected_version=3).version == 4
        assert [e.type for e in events.read("s")] == ["Again"]

    def test_bad_stream_metadata_is_refused(self, store: Store) -> None:
        events = store.events
        bad: list[tuple[str, dict[str, Any]]] = [
            ("max_age", {"max_age": 0}),
            ("max_age", {"max_age": "1h"}),
            ("max_count", {"max_count": 0}),
            ("truncate_before", {"truncate_before": 1.5}),
            ("expected_version", {"expected_version": "x"}),
        ]
        for field, kwargs in bad:
            assert_events_refused(
                store, field, functools.partial(events.set_stream_metadata, "s", **kwargs)
            )
        with pytest.raises(WrongExpectedVersion):
            events.set_stream_metadata("s", max_count=1, expected_version=STREAM_EXISTS)

    def test_delete_stream_is_soft_with_a_tombstone(self, store: Store) -> None:
        events = store.events
        events.append("s", [Event("A"), Event("B")])
        events.append("other", [Event("X")])
        with pytest.raises(WrongExpectedVersion):
            events.delete_stream("s", expected_version=1)
        tomb = events.delete_stream("s", expected_version=2)
        assert tomb == AppendResult(3, 4)
        assert events.read("s") == []
        assert events.stream_metadata("s").deleted
        last = events.read_all()[-1]
        assert (last.stream, last.type, last.version, last.position) == ("s", DELETED, 3, 4)
        assert events.append("s", [Event("C")], expected_version=3).version == 4
        assert [e.type for e in events.read("s")] == ["C"]
        assert not events.stream_metadata("s").deleted
        store.sweep()
        assert [e.type for e in events.read_all()] == ["X", "C"]

    # -- upcasting -----------------------------------------------------------------------------

    def test_upcasters_chain_on_read(self, store: Store) -> None:
        events = store.events
        events.append(
            "s",
            [
                Event("Placed", {"amount": 5}),
                Event("Placed", {"cents": 700, "cur": "EUR"}, schema_version=2),
            ],
        )
        events.append("s", [Event("Placed", {"money": {"cents": 1}}, schema_version=3)])

        @events.upcasters.register("Placed", 1)
        def v1(data: dict[str, Any]) -> dict[str, Any]:
            return {"cents": data["amount"] * 100, "cur": "USD"}

        events.upcasters.register(
            "Placed",
            2,
            lambda d: {"money": {"cents": d["cents"], "cur": d["cur"]}},
            to_type="OrderPlaced",
        )
        got = events.read("s")
        assert [(e.type, e.schema_version) for e in got] == [
            ("OrderPlaced", 3),
            ("OrderPlaced", 3),
            ("Placed", 3),
        ]
        assert got[0].data == {"money": {"cents": 500, "cur": "USD"}}
        assert events.read_all()[1].data == {"money": {"cents": 700, "cur": "EUR"}}
        assert events.upcasters.latest_version("Placed") == 3
        with pytest.raises(InvalidRequest) as info:
            events.upcasters.register("Placed", 1, v1)
        assert info.value.field == "from_version"

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

    # -- projections -------------------------------------------------------------------------

    def test_projection_builds_its_read_model_exactly_once(self, store: Store) -> None:
        events = store.events
        events.append("order-1", [_placed("ann", 10), _placed("bob", 5)])
        events.append("user-1", [Event("OrderPlaced", {"customer": "ignored", "total": 1})])
        runner = events.projection_runner([OrderTotals()], batch=2)
        assert runner.run_until_idle() == 2
        assert read_model(store, "totals") == {
            "ann": {"total": 10, "orders": 1},
            "bob": {"total": 5, "orders": 1},
        }
        assert runner.run_until_idle() == 0
        events.append("order-2", [_placed("ann", 1), Event("OrderCancelled", {"customer": "bob"})])
        assert runner.run_until_idle() == 2
        assert read_model(store, "totals") == {"ann": {"total": 11, "orders": 2}}
        [status] = events.projection_status()
        assert (status.name, status.namespace, status.position, status.lag_events) == (
            "order-totals",
            "totals",
            5,
            0,
        )
        assert status.events == 4

    def test_projection_lag_in_events_and_seconds(self, store: Store, clock: FakeClock) -> None:
        events = store.events
        runner = events.projection_runner([OrderTotals()])
        events.append("order-1", [_placed("ann", 1)])
        runner.run_until_idle()
        clock.advance(5)
        events.append("order-1", [_placed("ann", 1), _placed("ann", 1)])
        clock.advance(7)
        [status] = runner.status()
        assert (status.lag_events, status.lag_seconds) == (2, 7.0)
        assert store.stats()["events"]["projections"]["order-totals"]["lag_events"] == 2
        runner.run_until_idle()
        [status] = runner.status()
        assert (status.lag_events, status.lag_seconds) == (0, 0.0)

    def test_two_runners_never_apply_a_page_twice(self, store: Store) -> None:
        events = store.events
        events.append("order-1", [_placed("ann", 1) for _ in range(10)])
        a = events.projection_runner([OrderTotals()], batch=4)
        b = events.projection_runner([OrderTotals()], batch=4)
        proj_a, proj_b = a.projections[0], b.projections[0]
        original = proj_a.handle_event
        raced = False

        def interleaved(event: RecordedEvent, view: ReadModel) -> None:
            nonlocal raced
            if not raced:  # b commits the same page while a is in the middle of it
                raced = True
                assert b.step(proj_b) == 4
            original(event, view)

        proj_a.handle_event = interleaved  # type: ignore[method-assign]
        assert a.step(proj_a) == 0, "a's page lost the race and was dropped"
        a.run_until_idle()
        b.run_until_idle()
        assert read_model(store, "totals") == {"ann": {"total": 10, "orders": 10}}

    def test_a_failing_handler_commits_nothing_of_its_page(self, store: Store) -> None:
        class Fragile(OrderTotals):
            name = "fragile"
            namespace = "fragile"

            @handles("OrderPlaced")
            def placed(self, event: RecordedEvent, view: ReadModel) -> None:
                if event.data["total"] < 0:
                    raise ValueError("negative total")
                super().placed(event, view)

        store.events.append("order-1", [_placed("ann", 1), _placed("bob", -1)])
        runner = store.events.projection_runner([Fragile()])
        with pytest.raises(ValueError):
            runner.run_until_idle()
        assert read_model(store, "fragile") == {}
        assert store.events.projection_status() == []

    def test_projection_rebuild_from_zero_matches(self, store: Store) -> None:
        events = store.events
        runner = events.projection_runner([OrderTotals()], batch=3)
        for i in range(12):
            events.append(f"order-{i % 4}", [_placed(f"c{i % 5}", i)])
            if i % 5 == 0:
                runner.run_until_idle()
        runner.run_until_idle()
        built = read_model(store, "totals")
        store.namespace("totals").put("junk", {"total": -1})
        assert runner.rebuild("order-totals") == 12
        assert read_model(store, "totals") == built
        assert runner.reset("order-totals") == len(built)
        assert read_model(store, "totals") == {} and events.projection_status() == []
        with pytest.raises(InvalidRequest):
            runner.rebuild("nope")

    def test_run_forever_follows_new_events_until_stopped(self, store: Store) -> None:
        runner = store.events.projection_runner([OrderTotals()])
        worker = threading.Thread(target=runner.run_forever, kwargs={"idle_wait": 0.05})
        worker.start()
        try:
            store.events.append("order-1", [_placed("ann", 3)])
            deadline = time.monotonic() + 5
            while read_model(store, "totals") != {"ann": {"total": 3, "orders": 1}}:
                assert time.monotonic() < deadline, "the runner did not pick the event up"
                time.sleep(0.01)
        finally:
            runner.stop()
            worker.join(5)
        assert not worker.is_alive()

    # -- subscriptions -----------------------------------------------------------------------

    def test_subscribe_catches_up_then_goes_live(self, store: Store) -> None:
        events = store.events
        events.append("s", [Event("E", {"i": i}) for i in range(3)])
        sub = events.subscribe(0, timeout=5)
        got = [next(sub).position for _ in range(3)]
        assert got == [1, 2, 3]

        def later() -> None:
            time.sleep(0.05)
            events.append("s", [Event("E", {"i": 3})])

        t = threading.Thread(target=later)
        t.start()
        started = time.monotonic()
        assert next(sub).position == 4
        assert time.monotonic() - started < 2
        t.join()
        sub.close()
        assert list(sub) == []

    def test_subscribe_from_end_filter_and_timeout(self, store: Store) -> None:
        events = store.events
        events.append("order-1", [_placed("a", 1)])
        sub = events.subscribe("end", filter=EventFilter(types=("OrderPlaced",)), timeout=0.05)
        assert list(sub) == []
        events.append("user-1", [Event("UserSeen")])
        events.append("order-2", [_placed("b", 2)])
        assert [e.stream for e in sub] == ["order-2"]
        assert sub.position == 3
        with pytest.raises(InvalidRequest):
            events.subscribe("start")
        with pytest.raises(InvalidRequest):
            events.subscribe(0, timeout=-1)

    def test_durable_subscription_resumes_after_its_checkpoint(self, store: Store) -> None:
        events = store.events
        events.append("s", [Event("E", {"i": i}) for i in range(10)])
        sub = events.subscribe(name="mailer", timeout=0.05, checkpoint_every=3)
        seen = [next(sub).position for _ in range(5)]
        assert seen == [1, 2, 3, 4, 5]
        # A crash now (no close): events 1-3 were saved as processed, 4-5 were not.
        again = events.subscribe(name="mailer", timeout=0.05)
        assert [e.position for e in again] == [4, 5, 6, 7, 8, 9, 10]
        again.close()
        events.append("s", [Event("E", {"i": 10})])
        third = events.subscribe(name="mailer", timeout=0.05)
        assert [e.position for e in third] == [11]
        third.close()
        assert events.stats()["subscriptions"]["mailer"]["position"] == 11
        with events.subscribe(name="mailer", timeout=0.05) as fourth:
            assert list(fourth) == []

    def test_a_closed_store_ends_a_waiting_subscription(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        store.events.append("s", [Event("A")])
        sub = store.events.subscribe(0)
        assert next(sub).position == 1
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                next(sub)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=consume)
        t.start()
        time.sleep(0.1)
        store.close()
        t.join(5)
        assert not t.is_alive(), "the subscription kept waiting on a closed store"
        assert errors and isinstance(errors[0], clawstate.BackendUnavailable)

    def test_durable_subscription_commit_and_poll(self, store: Store) -> None:
        events = store.events
        events.append("s", [Event("E") for _ in range(4)])
        sub = events.subscribe(name="n", timeout=0.05, checkpoint_every=100)
        assert next(sub).position == 1
        sub.commit()
        assert events.subscribe(name="n", timeout=0).position == 1
        assert [e.position for e in sub.poll()] == [2, 3, 4]
        sub.close()
        assert events.subscribe(name="n", timeout=0).position == 4


class AsyncEventStoreConformance:
    """The event store through :class:`AsyncStore`: one implementation, awaitable."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def astore(self, async_store_factory: AsyncStoreFactory) -> AsyncStore:
        return async_store_factory()

    @pytest.mark.anyio
    async def test_async_append_read_and_transaction(self, astore: AsyncStore) -> None:
        events = astore.events
        assert await events.append("s", [Event("A")], expected_version=NO_STREAM) == AppendResult(
            1, 1
        )
        with pytest.raises(WrongExpectedVersion):
            await events.append("s", [Event("B")], expected_version=NO_STREAM)
        async with astore.transaction() as tx:
            await tx.events.append("s", [Event("B")], expected_version=1)
            await tx.namespace("n").put("k", 1)
        assert tx.appended == [AppendResult(2, 2)]
        assert [e.type for e in await events.read("s")] == ["A", "B"]
        assert [e.position for e in await events.read_all()] == [1, 2]
        assert await events.last_position() == 2
        report = await astore.check(deep=True)
        assert report.ok, report.problems

    @pytest.mark.anyio
    async def test_async_subscribe_catches_up_then_goes_live(self, astore: AsyncStore) -> None:
        import anyio

        events = astore.events
        await events.append("s", [Event("E", {"i": 0})])
        got: list[int] = []
        async with events.subscribe(0, timeout=5, name="async-sub") as sub:

            async def later() -> None:
                await anyio.sleep(0.05)
                await events.append("s", [Event("E", {"i": 1})])

            async with anyio.create_task_group() as tg:
                tg.start_soon(later)
                async for event in sub:
                    got.append(event.data["i"])
                    if len(got) == 2:
                        break
            await sub.commit()
        assert got == [0, 1]
        stats = await events.stats()
        assert stats["subscriptions"]["async-sub"]["position"] == 2
