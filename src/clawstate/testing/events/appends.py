"""Appending events: what is stored, what is refused, and what commits together."""

from __future__ import annotations

from typing import Any

import pytest

from clawstate import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    Event,
    InvalidRequest,
    Store,
    VersionConflict,
    WrongExpectedVersion,
)
from clawstate.testing.conformance import StoreFactory
from clawstate.testing.fakes import FakeClock

from .helpers import assert_events_refused, events_snapshot


class AppendConformance:
    """Appends: round trips, expected versions, malformed input, atomic multi-stream appends."""

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
