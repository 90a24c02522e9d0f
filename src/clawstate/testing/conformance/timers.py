"""Durable timers (:mod:`clawstate.timers`): the contract every store keeps.

:class:`TimersConformance` runs over the sync facade with the suite's FakeClock, so
"due" is decided by the test, never by wall time.  The handlers below are importable
module functions (``"clawstate.testing.conformance.timers:count"``) as the worker
would import them; their effects go through ``firing.tx``, so "fired exactly once"
is checked as "the counter row is exactly 1".
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from clawstate import InvalidRequest, Store
from clawstate.testing.fakes import FakeClock
from clawstate.timers import PARKED_DUE, Firing, Timers

from .fixtures import StoreFixtures

__all__ = ["TimersApiConformance", "TimersConformance", "count", "fail", "seen", "slow_count"]

HERE = "clawstate.testing.conformance.timers"
COUNT = f"{HERE}:count"
FAIL = f"{HERE}:fail"
SEEN = f"{HERE}:seen"
SLOW_COUNT = f"{HERE}:slow_count"
#: Firings seen by :func:`seen` (name -> list of (attempt, key, payload, due)).
SEEN_LOG: list[tuple[str, int, str, Any, float]] = []


def count(firing: Firing) -> None:
    """Add one to ``fired/<name>`` in the firing's transaction."""
    ns = firing.tx.namespace("fired")
    item = ns.get(firing.name)
    ns.put(firing.name, (item.value if item else 0) + 1)


def slow_count(firing: Firing) -> None:
    """:func:`count`, then 5 ms before the commit (a window for a crash test's kill)."""
    count(firing)
    time.sleep(0.005)


def fail(firing: Firing) -> None:
    """Write an effect, then fail: the effect must not commit."""
    firing.tx.namespace("fired").put(firing.name, -1)
    raise RuntimeError(f"boom {firing.attempt}")


def seen(firing: Firing) -> None:
    """Record what the handler was given."""
    SEEN_LOG.append(
        (firing.name, firing.attempt, firing.idempotency_key, firing.payload, firing.due)
    )


class TimersApiConformance(StoreFixtures):
    """Schedule, cancel, get and list: what the embedded store and the HTTP client share."""

    def test_schedule_get_list_cancel(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        assert t.get("a") is None and t.list().items == []
        info = t.schedule("a", handler=COUNT, after="30m", payload={"to": "x@y"})
        assert info.name == "a" and info.handler == COUNT and info.payload == {"to": "x@y"}
        assert info.due == pytest.approx(clock() + 1800)
        assert info.attempts == 0 and info.last_error is None
        assert t.get("a") == info
        at = clock() + 60
        t.schedule("b/1", handler=COUNT, at=at)
        t.schedule("c", handler=COUNT, at=int(at))
        page = t.list()
        assert [i.name for i in page.items] == ["a", "b/1", "c"] and page.cursor is None
        assert [i.name for i in t.list("b").items] == ["b/1"]
        first = t.list(limit=2)
        assert [i.name for i in first.items] == ["a", "b/1"] and first.cursor is not None
        assert [i.name for i in t.list(limit=2, cursor=first.cursor).items] == ["c"]
        assert t.cancel("b/1") is True and t.cancel("b/1") is False
        assert t.get("b/1") is None
        again = t.schedule("a", handler=COUNT, after=5)  # re-schedule replaces
        assert t.get("a") == again and again.payload is None

    @pytest.mark.parametrize(
        ("field", "kwargs"),
        [
            ("at", {"at": float("nan")}),
            ("at", {"at": float("inf")}),
            ("at", {"at": 10**400}),
            ("at", {"at": 1e13}),
            ("at", {"at": -1}),
            ("at", {"at": True}),
            ("at", {"at": "soon"}),
            ("at", {}),
            ("at", {"at": 1, "after": 1}),
            ("after", {"after": float("nan")}),
            ("after", {"after": 10**400}),
            ("after", {"after": -5}),
            ("after", {"after": "forever"}),
            ("handler", {"after": 1, "handler": "nocolon"}),
            ("handler", {"after": 1, "handler": "a:b:c"}),
            ("handler", {"after": 1, "handler": "os:system; rm"}),
            ("handler", {"after": 1, "handler": "m:" + "f" * 600}),
            ("handler", {"after": 1, "handler": 5}),
            ("name", {"after": 1, "name": ""}),
            ("name", {"after": 1, "name": 5}),
        ],
    )
    def test_bad_input_refused_and_changes_nothing(
        self, store: Store, field: str, kwargs: dict[str, Any]
    ) -> None:
        args = {"name": "t", "handler": COUNT, **kwargs}
        name = args.pop("name")
        with pytest.raises(InvalidRequest) as info:
            store.timers.schedule(name, **args)
        assert info.value.field == field
        assert store.timers.list().items == []


def _fired(store: Store) -> dict[str, Any]:
    page = store.namespace("fired").scan("", 10_000)
    return {it.key: it.value for it in page.items}


class TimersConformance(TimersApiConformance):
    """Schedule, cancel, fire (exactly once in effect), retry and park."""

    def test_due_fires_once_not_due_waits(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        t.schedule("a", handler=COUNT, after=10)
        t.schedule("b", handler=COUNT, after=20)
        assert t.fire_due() == 0
        clock.advance(10)
        assert t.fire_due() == 1
        assert t.fire_due() == 0
        assert _fired(store) == {"a": 1}
        assert t.get("a") is None and t.get("b") is not None
        clock.advance(100)
        assert t.fire_due() == 1
        assert t.fire_due() == 0
        assert _fired(store) == {"a": 1, "b": 1}
        assert t.list().items == []

    def test_many_due_fire_once_in_batches(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        now = clock()
        for i in range(25):
            t.schedule(f"t{i:02}", handler=COUNT, at=now + 25 - i)
        clock.advance(30)
        assert t.fire_due(limit=10) == 10
        assert len(_fired(store)) == 10 and set(_fired(store).values()) == {1}
        assert t.fire_due(limit=100) == 15
        assert _fired(store) == {f"t{i:02}": 1 for i in range(25)}

    def test_cancel(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        t.schedule("a", handler=COUNT, after=5)
        assert t.cancel("a") is True
        assert t.cancel("a") is False
        clock.advance(10)
        assert t.fire_due() == 0
        assert _fired(store) == {}

    def test_reschedule_replaces_and_changes_key(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        SEEN_LOG.clear()
        t.schedule("a", handler=SEEN, after=5, payload={"n": 1})
        t.schedule("a", handler=SEEN, after=50, payload={"n": 2})
        clock.advance(10)
        assert t.fire_due() == 0
        info = t.get("a")
        assert info is not None and info.payload == {"n": 2}
        clock.advance(50)
        assert t.fire_due() == 1
        assert [(n, a, p) for n, a, _k, p, _d in SEEN_LOG] == [("a", 1, {"n": 2})]
        t.schedule("a", handler=SEEN, after=1)
        clock.advance(2)
        assert t.fire_due() == 1
        assert SEEN_LOG[0][2] != SEEN_LOG[1][2]  # a new scheduling, a new key

    def test_schedule_and_cancel_in_transaction(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        with store.transaction() as tx:
            t.schedule("kept", handler=COUNT, after=1, tx=tx)
            tx.namespace("other").put("x", 1)
        assert t.get("kept") is not None
        tx = store.transaction()
        t.schedule("dropped", handler=COUNT, after=1, tx=tx)
        t.cancel("kept", tx=tx)
        tx.rollback()
        assert t.get("dropped") is None and t.get("kept") is not None
        with pytest.raises(RuntimeError), store.transaction() as tx:
            t.cancel("kept", tx=tx)
            raise RuntimeError("abort")
        assert t.get("kept") is not None
        with store.transaction() as tx:
            t.cancel("kept", tx=tx)
        assert t.get("kept") is None
        clock.advance(5)
        assert t.fire_due() == 0

    def test_effects_commit_with_removal_or_not_at_all(
        self, store: Store, clock: FakeClock
    ) -> None:
        t = store.timers
        t.schedule("a", handler=COUNT, after=1)
        clock.advance(2)
        # Claimed, then re-scheduled by someone else before the handler's commit:
        rows = t._claim(t._due_rows(clock(), 10), clock(), 30)
        assert [r[0] for r in rows] == ["a"]
        t.schedule("a", handler=COUNT, after=100)
        assert t._fire_one(*rows[0], max_attempts=5) is False
        assert _fired(store) == {}  # the effect was dropped with the removal
        assert t.get("a") is not None and t.get("a").due == pytest.approx(clock() + 100)  # type: ignore[union-attr]

    def test_failing_handler_backs_off_then_parks(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        t.schedule("bad", handler=FAIL, after=0, payload=[1])
        due0 = clock()
        delays = []
        for attempt in range(1, 4):
            assert t.fire_due(max_attempts=3) == 0
            info = t.get("bad")
            assert info is not None
            assert info.attempts == attempt
            assert info.last_error == f"RuntimeError: boom {attempt}"
            assert _fired(store) == {}  # the failed handler's write never commits
            if attempt < 3:
                delays.append(info.due - clock())
                assert t.fire_due(max_attempts=3) == 0  # not due yet: backoff
                clock.advance(info.due - clock())
        assert delays == [1.0, 2.0]
        # parked: still visible with its error and original due, never due again
        info = t.get("bad")
        assert info is not None and info.attempts == 3 and info.due < PARKED_DUE
        clock.advance(10**6)
        assert t.fire_due(max_attempts=3) == 0
        assert t.get("bad") is not None
        # re-scheduling a parked timer retries it from scratch
        t.schedule("bad", handler=COUNT, after=0)
        assert t.fire_due() == 1 and _fired(store) == {"bad": 1}
        assert due0 > 0

    def test_claimed_rows_skipped_until_claim_lapses(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        t.schedule("a", handler=COUNT, after=0)
        other = Timers(store)  # another worker
        assert len(other._claim(other._due_rows(clock(), 10), clock(), 30)) == 1
        assert t.fire_due() == 0  # claimed by the other worker (say it was killed)
        clock.advance(31)
        assert t.fire_due() == 1
        assert _fired(store) == {"a": 1}

    def test_concurrent_fire_due_fires_each_once(self, store: Store, clock: FakeClock) -> None:
        for i in range(60):
            store.timers.schedule(f"t{i}", handler=COUNT, after=0)
        workers = [Timers(store), Timers(store), Timers(store)]
        errors: list[BaseException] = []

        def run(w: Timers) -> None:
            try:
                while w.fire_due(limit=7):
                    pass
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        store.timers.fire_due(limit=100)
        assert _fired(store) == {f"t{i}": 1 for i in range(60)}
        assert sum(w.fired for w in workers) + store.timers.fired == 60

    def test_firing_fields(self, store: Store, clock: FakeClock) -> None:
        SEEN_LOG.clear()
        at = clock() + 3
        store.timers.schedule("f", handler=SEEN, at=at, payload={"x": [1, 2]})
        clock.advance(5)
        assert store.timers.fire_due() == 1
        ((name, attempt, key, payload, due),) = SEEN_LOG
        assert (name, attempt, payload, due) == ("f", 1, {"x": [1, 2]}, at)
        assert key.startswith("timer:f:")
        assert store.timers.lags and store.timers.lags[-1] == pytest.approx(2.0)

    def test_allow_list_refuses_other_modules(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        t.allow_handlers(["myapp.jobs"])
        t.schedule("a", handler=COUNT, after=0)
        assert t.fire_due(max_attempts=1) == 0
        info = t.get("a")
        assert info is not None and "allow-list" in (info.last_error or "")
        assert _fired(store) == {}
        t.allow_handlers([HERE.rpartition(".")[0]])  # the parent package allows it
        t.schedule("a", handler=COUNT, after=0)
        assert t.fire_due() == 1

    def test_missing_handler_is_recorded(self, store: Store) -> None:
        t = store.timers
        t.schedule("a", handler="no_such_module_xyz:f", after=0)
        t.schedule("b", handler=f"{HERE}:no_such_function", after=0)
        assert t.fire_due(max_attempts=1) == 0
        assert "ModuleNotFoundError" in (t.get("a").last_error or "")  # type: ignore[union-attr]
        assert "AttributeError" in (t.get("b").last_error or "")  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("field", "kwargs"),
        [
            ("limit", {"limit": 0}),
            ("limit", {"limit": 10**400}),
            ("limit", {"limit": True}),
            ("max_attempts", {"max_attempts": 0}),
            ("now", {"now": float("nan")}),
            ("now", {"now": "now"}),
        ],
    )
    def test_bad_fire_due_arguments(self, store: Store, field: str, kwargs: dict[str, Any]) -> None:
        store.timers.schedule("t", handler=COUNT, after=0)
        with pytest.raises(InvalidRequest) as info:
            store.timers.fire_due(**kwargs)
        assert info.value.field == field
        assert store.timers.get("t") is not None and _fired(store) == {}

    def test_next_due_and_stats(self, store: Store, clock: FakeClock) -> None:
        t = store.timers
        assert t.next_due() is None
        now = clock()
        t.schedule("a", handler=COUNT, at=now + 5)
        t.schedule("b", handler=COUNT, at=now + 2)
        assert t.next_due() == now + 2
        clock.advance(10)
        st = t.stats()
        assert st["pending"] == 2 and st["overdue"] == 2
        assert st["oldest_overdue"] == now + 2
        assert st["oldest_overdue_age"] == pytest.approx(8)
        t.fire_due()
        assert t.stats()["overdue"] == 0 and t.next_due() is None
