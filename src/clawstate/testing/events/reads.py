"""Reading streams and the global log, stream metadata, and upcasters."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from clawstate import (
    STREAM_EXISTS,
    AppendResult,
    Event,
    InvalidRequest,
    Store,
    WrongExpectedVersion,
)
from clawstate.events import DELETED, EventFilter
from clawstate.testing.fakes import FakeClock

from .helpers import _placed, assert_events_refused


class ReadConformance:
    """Reads, stream metadata (retention, soft delete) and upcasting on read."""

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
            ("max_age", {"max_age": float("inf")}),
            ("max_age", {"max_age": float("nan")}),
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

    def test_stream_metadata_merges_and_none_clears(self, store: Store) -> None:
        events = store.events
        events.append("s", [Event("E", {"i": i}) for i in range(1, 11)])
        events.set_stream_metadata("s", max_count=3)
        meta = events.set_stream_metadata("s", truncate_before=9)
        assert (meta.max_count, meta.truncate_before) == (3, 9), "max_count was kept"
        assert events.stream_metadata("s") == meta
        events.set_stream_metadata("s", max_age=3600)
        meta = events.set_stream_metadata("s", max_count=None)
        assert (meta.max_age, meta.max_count, meta.truncate_before) == (3600.0, None, 9)
        assert events.stream_metadata("s") == meta
        assert events.set_stream_metadata("s") == meta, "nothing given: nothing changes"

    def test_stream_metadata_in_a_transaction(self, store: Store) -> None:
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
        assert [e.version for e in events.read("s")] == [3, 4, 5]
        with pytest.raises(WrongExpectedVersion):
            with store.transaction() as tx:
                tx.namespace("streams").put("s", {"archived": False})
                tx.events.set_stream_metadata("s", max_count=None, expected_version=4)
        assert events.stream_metadata("s").max_count == 4, "refused whole"
        assert store.namespace("streams").get("s").value == {"archived": True}  # type: ignore[union-attr]

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
