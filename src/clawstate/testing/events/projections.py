"""Projections and their runners."""

from __future__ import annotations

import threading
import time

import pytest

from clawstate import Event, InvalidRequest, RecordedEvent, Store
from clawstate.events import FailurePolicy, ProjectionStopped, ReadModel, handles
from clawstate.testing.fakes import FakeClock

from .helpers import OrderTotals, _placed, read_model


class ProjectionConformance:
    """Projections: exactly-once read models, lag, competing runners, rebuilds, run_forever."""

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

    def test_a_failing_handler_stops_its_projection_at_the_event(self, store: Store) -> None:
        class Fragile(OrderTotals):
            name = "fragile"
            namespace = "fragile"
            failure = FailurePolicy(retries=1, backoff=0.0)

            @handles("OrderPlaced")
            def placed(self, event: RecordedEvent, view: ReadModel) -> None:
                view.put("touched", event.position)  # dropped with the failed attempt
                if event.data["total"] < 0:
                    raise ValueError("negative total")
                super().placed(event, view)

        store.events.append("order-1", [_placed("ann", 1), _placed("bob", -1), _placed("ann", 2)])
        runner = store.events.projection_runner([Fragile()])
        with pytest.raises(ProjectionStopped) as raised:
            runner.run_until_idle()
        assert isinstance(raised.value.__cause__, ValueError)
        # The events before the poison one commit; none of its writes does.
        assert read_model(store, "fragile") == {"ann": {"total": 1, "orders": 1}, "touched": 1}
        [status] = store.events.projection_status()
        assert (status.position, status.stuck_position, status.stopped) == (1, 2, True)
        assert (status.error_type, status.error, status.attempts) == (
            "ValueError",
            "negative total",
            2,
        )
        record = runner.skip("fragile")
        assert (record["reason"], record["position"]) == ("skipped", 2)
        assert runner.run_until_idle() == 1
        assert read_model(store, "fragile")["ann"] == {"total": 3, "orders": 2}
        [status] = store.events.projection_status()
        assert (status.position, status.skipped, status.stuck_position) == (3, 1, None)

    def test_a_parking_projection_moves_the_poison_event_aside(self, store: Store) -> None:
        class Parking(OrderTotals):
            name = "parking"
            namespace = "parking"
            failure = FailurePolicy(retries=0, then="park", dead_letter="parking-dead")

            @handles("OrderPlaced")
            def placed(self, event: RecordedEvent, view: ReadModel) -> None:
                if event.data["total"] < 0:
                    raise ValueError("negative total")
                super().placed(event, view)

        store.events.append("order-1", [_placed("ann", 1), _placed("bob", -1), _placed("ann", 2)])
        runner = store.events.projection_runner([Parking()])
        assert runner.run_until_idle() == 2
        assert read_model(store, "parking") == {"ann": {"total": 3, "orders": 2}}
        [(key, dead)] = read_model(store, "parking-dead").items()
        assert key == "parking/00000000000000000002"
        assert (dead["reason"], dead["error"], dead["data"]["customer"]) == (
            "parked",
            "negative total",
            "bob",
        )
        [status] = store.events.projection_status()
        assert (status.position, status.parked, status.stopped) == (3, 1, False)

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
