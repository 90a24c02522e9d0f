"""Subscriptions to the global log.

Only public API is used here, so the suite holds whatever implements the follower.
"""

from __future__ import annotations

import threading
import time

import pytest

import clawstate
from clawstate import Event, InvalidRequest, Store, VersionConflict
from clawstate.events import EventFilter
from clawstate.events.subscriptions import LEASE
from clawstate.testing.conformance import StoreFactory
from clawstate.testing.fakes import FakeClock

from .helpers import _placed


class SubscriptionConformance:
    """Subscriptions: catch-up then live, filters, timeouts, durable checkpoints, close."""

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

    def test_durable_subscription_resumes_after_its_checkpoint(
        self, store: Store, clock: FakeClock
    ) -> None:
        events = store.events
        events.append("s", [Event("E", {"i": i}) for i in range(10)])
        sub = events.subscribe(name="mailer", timeout=0.05, checkpoint_every=3)
        seen = [next(sub).position for _ in range(5)]
        assert seen == [1, 2, 3, 4, 5]
        # A crash now (no close): events 1-3 were saved as processed, 4-5 were not.
        # The crashed consumer's lease keeps the name until it expires.
        with pytest.raises(VersionConflict, match="mailer"):
            events.subscribe(name="mailer", timeout=0.05)
        clock.advance(LEASE + 1)
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
        assert events.stats()["subscriptions"]["n"]["position"] == 1
        assert [e.position for e in sub.poll()] == [2, 3, 4]
        sub.close()
        assert events.subscribe(name="n", timeout=0).position == 4
