"""Retries of appends, recognised by event ids and content, scoped by stream."""

from __future__ import annotations

from typing import Any

import pytest

from clawstate import ANY, NO_STREAM, STREAM_EXISTS, AppendResult, Event, Store

from .helpers import assert_events_refused


class EventIdempotencyConformance:
    """Event ids as idempotency: a retry is recognised by content, a collision reveals nothing."""

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
