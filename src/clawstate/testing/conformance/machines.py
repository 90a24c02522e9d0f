"""Conformance: persisted state machines (``store.machine``) on a store that keeps events.

The mixin :class:`MachineConformance` runs over any ``store_factory`` whose stores have
an event store (memory, SQLite, PostgreSQL; the HTTP client once its routes exist).
Timeouts and actions are timers; :func:`run_due_timers` fires the due ones with
``store.timers.fire_due`` — the worker's own step: each handler with an open
transaction that commits together with the conditional removal of the timer row — so
the tests drive timeouts on a fake clock without a worker thread.
"""

from __future__ import annotations

import re
import threading
from typing import Any, ClassVar

import pytest

from clawstate import (
    ConfigError,
    InvalidTransition,
    Store,
    VersionConflict,
)
from clawstate.machines import StateMachine, list_machines
from clawstate.testing.fakes import FakeClock
from clawstate.timers import Firing

from .fixtures import StoreFixtures
from .helpers import StoreFactory, assert_refused, snapshot

__all__ = [
    "ACTIONS_RUN",
    "ORDER",
    "Counter",
    "MachineConformance",
    "record_action",
    "run_due_timers",
]

#: The order machine of the docs and the design.
ORDER: dict[str, Any] = {
    "initial": "pending",
    "states": ["pending", "paid", "shipped", "cancelled"],
    "final": ["shipped", "cancelled"],
    "transitions": [
        {
            "event": "pay",
            "from": "pending",
            "to": "paid",
            "guard": {"GTE": {"payload.amount": 9}},
            "actions": ["clawstate.testing.conformance.machines:record_action"],
        },
        {"event": "ship", "from": "paid", "to": "shipped"},
        {"event": "cancel", "from": ["pending", "paid"], "to": "cancelled"},
    ],
    "timeouts": [{"state": "pending", "after": "30m", "event": "cancel"}],
}

#: (idempotency_key, payload) of every action :func:`record_action` ran, in order.
ACTIONS_RUN: list[tuple[str, Any]] = []


def record_action(firing: Any) -> None:
    """An outbox action for the tests: records its key and payload."""
    ACTIONS_RUN.append((firing.idempotency_key, firing.payload))


class Counter(StateMachine):
    """A class-based machine: a self-loop with an update method, a method guard, a
    method action and a timeout that re-arms on every transition."""

    initial = "open"
    states: ClassVar = ["open", "closed"]
    final: ClassVar = ["closed"]
    transitions: ClassVar = [
        {"event": "inc", "from": "open", "to": "open", "update": "bump", "actions": ["note"]},
        {"event": "close", "from": "open", "to": "closed", "guard": "may_close"},
    ]
    timeouts: ClassVar = [{"state": "open", "after": 60, "event": "close"}]

    notes: ClassVar[list[Any]] = []

    def bump(self, data: Any, payload: Any) -> Any:
        return {"n": (data or {}).get("n", 0) + (payload or {}).get("by", 1)}

    def may_close(self, data: Any, payload: Any) -> bool:
        return not (payload or {}).get("keep", False)

    def note(self, firing: Any) -> None:
        Counter.notes.append((firing.idempotency_key, firing.payload["version"]))


def run_due_timers(store: Store) -> int:
    """Fire every timer due by the store's clock with the timers' own
    :meth:`~clawstate.timers.Timers.fire_due` (what ``clawstate worker`` runs): each
    handler gets ``firing.tx``, committed with the timer row's removal.  Timers that
    firings arm due at once (actions) fire too.  Returns how many firings committed."""
    total = 0
    while n := store.timers.fire_due(limit=1000):
        total += n
    return total


def _timer_names(store: Store, id: str, machine: str = "order") -> list[str]:
    return [t.name for t in store.timers.list(f"machine:{machine}:{id}:", 1000)]


class MachineConformance(StoreFixtures):
    """``store.machine``: create/fire/get/history/query, guards, actions through the
    outbox, timeouts, definition versions and ``migrate``, rebuild, bad input."""

    # -- the basics ----------------------------------------------------------------------

    def test_create_fire_get_history_query(self, store: Store, clock: FakeClock) -> None:
        orders = store.machine("order", ORDER)
        assert orders.version == 1
        created = orders.create("o1", data={"total": 9})
        assert (created.state, created.version, created.data) == ("pending", 1, {"total": 9})
        assert created.created_at == created.updated_at == clock()
        assert created.machine == "order" and created.definition_version == 1
        clock.advance(5)
        paid = orders.fire("o1", "pay", payload={"amount": 9})
        assert (paid.state, paid.version, paid.updated_at) == ("paid", 2, clock())
        assert paid.created_at == created.created_at
        assert orders.get("o1") == paid
        assert orders.get("nope") is None
        hist = orders.history("o1")
        assert [(h.event, h.source, h.target, h.version) for h in hist] == [
            ("create", "", "pending", 1),
            ("pay", "pending", "paid", 2),
        ]
        assert hist[1].payload == {"amount": 9} and hist[1].at == clock()
        assert orders.history("nope") == []
        orders.create("o2")
        assert [i.id for i in orders.query("paid")] == ["o1"]
        assert [i.id for i in orders.query("pending")] == ["o2"]
        assert [i.id for i in orders.query()] == ["o1", "o2"]
        assert orders.counts() == {"pending": 1, "paid": 1, "shipped": 0, "cancelled": 0}

    def test_query_pages_through_an_index_on_state(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        ids = [f"o{i:03d}" for i in range(25)]
        for id in ids:
            orders.create(id)
        for id in ids[::2]:
            orders.fire(id, "cancel")
        got: list[str] = []
        cursor = None
        while True:
            page = orders.query("cancelled", limit=4, cursor=cursor)
            assert len(page) <= 4
            got += [i.id for i in page]
            cursor = page.cursor
            if cursor is None:
                break
        assert got == ids[::2]
        assert all(i.state == "cancelled" for i in orders.query("cancelled", limit=100))

    def test_the_projection_commits_with_the_event(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        orders.fire("o1", "cancel")
        events = store.events.read("machine:order:o1")
        assert [e.type for e in events] == ["create", "cancel"]
        assert events[-1].data["target"] == "cancelled"
        changes = store.watch(0, namespace="_machine.order", timeout=0).poll()
        assert [c.key for c in changes] == ["o1", "o1"]

    def test_create_twice_is_a_conflict_and_changes_nothing(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1", data={"a": 1})
        before = snapshot(store)
        with pytest.raises(VersionConflict, match="already has an instance"):
            orders.create("o1", data={"a": 2})
        assert snapshot(store) == before
        assert orders.get("o1").data == {"a": 1}  # type: ignore[union-attr]

    # -- refusals --------------------------------------------------------------------------

    def test_illegal_events_are_invalid_transitions_and_write_nothing(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        before = snapshot(store)
        with pytest.raises(InvalidTransition) as info:
            orders.fire("o1", "ship")
        err = info.value
        assert (err.machine, err.id, err.state, err.event) == ("order", "o1", "pending", "ship")
        assert "pay" in (err.reason or "")
        with pytest.raises(InvalidTransition, match="guard"):
            orders.fire("o1", "pay", payload={"amount": 8})
        with pytest.raises(InvalidTransition, match="guard"):
            orders.fire("o1", "pay")  # a missing path never matches
        with pytest.raises(InvalidTransition):
            orders.fire("o1", "refund")
        assert snapshot(store) == before
        orders.fire("o1", "cancel")
        with pytest.raises(InvalidTransition, match="final"):
            orders.fire("o1", "pay", payload={"amount": 100})
        assert len(orders.history("o1")) == 2

    def test_firing_a_missing_instance_is_refused(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        err = assert_refused(store, "id", lambda: orders.fire("ghost", "pay"))
        assert "ghost" in str(err)

    def test_a_stale_expected_version_is_a_conflict(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        before = snapshot(store)
        with pytest.raises(VersionConflict) as info:
            orders.fire("o1", "cancel", expected_version=2)
        assert (info.value.expected, info.value.actual) == (2, 1)
        assert snapshot(store) == before
        assert orders.fire("o1", "cancel", expected_version=1).version == 2

    @pytest.mark.parametrize(
        ("field", "call"),
        [
            ("id", lambda m: m.create("")),
            ("id", lambda m: m.create("a\x00b")),
            ("id", lambda m: m.create("x" * 257)),
            ("id", lambda m: m.create(7)),
            ("id", lambda m: m.create(None)),
            ("data", lambda m: m.create("ok", data={"x": float("nan")})),
            ("data", lambda m: m.create("ok", data={"x": b"raw"})),
            ("data", lambda m: m.create("ok", data={1: "non-string key"})),
            ("data", lambda m: m.create("ok", data={"x": 1 << 70})),
            ("data", lambda m: m.create("ok", data={"x": "y" * 2_000_000})),
            ("event", lambda m: m.fire("o1", "")),
            ("event", lambda m: m.fire("o1", 3)),
            ("event", lambda m: m.fire("o1", "x" * 10_000)),
            ("event", lambda m: m.fire("o1", "create")),
            ("event", lambda m: m.fire("o1", "pay\n")),
            ("payload", lambda m: m.fire("o1", "pay", payload={"amount": float("inf")})),
            ("payload", lambda m: m.fire("o1", "pay", payload={"amount": 10**400})),
            ("expected_version", lambda m: m.fire("o1", "cancel", expected_version=True)),
            ("expected_version", lambda m: m.fire("o1", "cancel", expected_version=0)),
            ("expected_version", lambda m: m.fire("o1", "cancel", expected_version=-1)),
            ("expected_version", lambda m: m.fire("o1", "cancel", expected_version=1 << 80)),
            ("expected_version", lambda m: m.fire("o1", "cancel", expected_version="1")),
            ("limit", lambda m: m.query("pending", limit=0)),
            ("limit", lambda m: m.query("pending", limit=10**12)),
            ("limit", lambda m: m.query("pending", limit=2.5)),
            ("state", lambda m: m.query(["pending"])),
            ("cursor", lambda m: m.query("pending", cursor=5)),
            ("format", lambda m: m.render("svg")),
        ],
    )
    def test_bad_input_is_refused_and_changes_nothing(
        self, open_store: StoreFactory, field: str, call: Any
    ) -> None:
        store = open_store(limits={"max_value_bytes": 1_000_000})
        orders = store.machine("order", ORDER)
        orders.create("o1")
        assert_refused(store, field, lambda: call(orders))

    @pytest.mark.parametrize("name", ["", "a:b", "_machines", "x" * 65, "a b", "ü", None, 7])
    def test_bad_machine_names_are_refused(self, store: Store, name: Any) -> None:
        assert_refused(store, "machine", lambda: store.machine(name, ORDER))

    def test_an_unknown_machine_without_a_definition_is_a_config_error(self, store: Store) -> None:
        with pytest.raises(ConfigError, match="no definition stored"):
            store.machine("nothing")

    # -- class-based machines, concurrency ------------------------------------------------

    def test_class_based_guards_updates_and_actions(self, store: Store, clock: FakeClock) -> None:
        counter = store.machine("counter", Counter)
        counter.create("c1", data={"n": 0})
        assert counter.fire("c1", "inc", payload={"by": 5}).data == {"n": 5}
        assert counter.fire("c1", "inc").data == {"n": 6}
        assert [e.data.get("data") for e in store.events.read("machine:counter:c1")][1:] == [
            {"n": 5},
            {"n": 6},
        ]
        with pytest.raises(InvalidTransition, match="guard"):
            counter.fire("c1", "close", payload={"keep": True})
        actions = [t for t in store.timers.list("machine:counter:c1:a", 100)]
        assert [t.handler for t in actions] == ["clawstate.machines.timeouts:run_action"] * 2
        assert [t.payload["action"] for t in actions] == ["note", "note"]
        Counter.notes.clear()
        assert run_due_timers(store) == 2
        assert sorted(v for _, v in Counter.notes) == [2, 3]
        assert len({k for k, _ in Counter.notes}) == 2
        assert counter.fire("c1", "close").state == "closed"

    def test_concurrent_fires_without_expected_version_all_apply(self, store: Store) -> None:
        counter = store.machine("counter", Counter)
        counter.create("c1", data={"n": 0})
        threads, per = 4, 10
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(per):
                    counter.fire("c1", "inc")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        inst = counter.get("c1")
        assert inst is not None
        assert inst.data == {"n": threads * per} and inst.version == threads * per + 1
        assert [h.version for h in counter.history("c1")] == list(range(1, inst.version + 1))
        # Exactly one armed timeout: each transition cancelled its predecessor's.
        names = _timer_names(store, "c1", "counter")
        assert [n for n in names if n.rsplit(":", 1)[1].startswith("t")] == [
            f"machine:counter:c1:t{inst.version}.0"
        ]
        assert sum(1 for n in names if n.rsplit(":", 1)[1].startswith("a")) == threads * per

    def test_concurrent_fires_with_the_same_expected_version_one_wins(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        results: list[Any] = []
        barrier = threading.Barrier(2)

        def work(event: str, payload: Any) -> None:
            barrier.wait()
            try:
                results.append(orders.fire("o1", event, payload, expected_version=1))
            except VersionConflict as exc:
                results.append(exc)

        ts = [
            threading.Thread(target=work, args=("cancel", None)),
            threading.Thread(target=work, args=("pay", {"amount": 10})),
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wins = [r for r in results if not isinstance(r, VersionConflict)]
        assert len(wins) == 1 and len(results) == 2
        assert orders.get("o1") == wins[0]
        assert len(orders.history("o1")) == 2

    # -- timers: actions and timeouts ------------------------------------------------------

    def test_actions_are_outbox_timers_due_now_with_a_stable_key(
        self, store: Store, clock: FakeClock
    ) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1", data={"total": 9})
        assert _timer_names(store, "o1") == ["machine:order:o1:t1.0"]
        orders.fire("o1", "pay", payload={"amount": 9})
        action = store.timers.get("machine:order:o1:a2.0")
        assert action is not None and action.due == clock()
        assert action.handler == "clawstate.testing.conformance.machines:record_action"
        assert action.payload == {
            "machine": "order",
            "id": "o1",
            "event": "pay",
            "source": "pending",
            "target": "paid",
            "version": 2,
            "data": {"total": 9},
            "payload": {"amount": 9},
        }
        ACTIONS_RUN.clear()
        assert run_due_timers(store) == 1
        assert len(ACTIONS_RUN) == 1 and ACTIONS_RUN[0][1]["version"] == 2
        assert store.timers.get("machine:order:o1:a2.0") is None
        # A refused transition records no action.
        with pytest.raises(InvalidTransition):
            orders.fire("o1", "pay", payload={"amount": 9})
        assert _timer_names(store, "o1") == []

    def test_timeouts_are_armed_on_entry_cancelled_on_exit(
        self, store: Store, clock: FakeClock
    ) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        orders.create("o2")
        t = store.timers.get("machine:order:o1:t1.0")
        assert t is not None and t.due == clock() + 1800
        assert t.handler == "clawstate.machines.timeouts:fire_timeout"
        orders.fire("o2", "pay", payload={"amount": 10})
        assert store.timers.get("machine:order:o2:t1.0") is None  # left pending: cancelled
        clock.advance(1799)
        run_due_timers(store)
        assert orders.get("o1").state == "pending"  # type: ignore[union-attr]
        clock.advance(1)
        assert run_due_timers(store) == 1
        inst = orders.get("o1")
        assert inst is not None and (inst.state, inst.version) == ("cancelled", 2)
        assert orders.history("o1")[-1].event == "cancel"
        assert _timer_names(store, "o1") == []
        assert orders.get("o2").state == "paid"  # type: ignore[union-attr]

    def test_a_timeout_that_no_longer_applies_does_nothing(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        from clawstate.machines.timeouts import fire_timeout

        # The instance moved on after the timer was read: the stale firing is a no-op.
        orders.fire("o1", "pay", payload={"amount": 10})
        tx = store.transaction()
        firing = Firing(
            "machine:order:o1:t1.0",
            {"machine": "order", "id": "o1", "version": 1, "event": "cancel"},
            0.0,
            1,
            "k",
            store,
            tx,
        )
        before = snapshot(store)
        fire_timeout(firing)
        tx.commit()
        assert snapshot(store) == before
        assert orders.get("o1").state == "paid"  # type: ignore[union-attr]

    def test_a_timeout_racing_a_transition_commits_once(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        from clawstate.machines.timeouts import fire_timeout
        from clawstate.timers import TIMERS

        name = "machine:order:o1:t1.0"
        item = store._system_namespace(TIMERS).get(name)
        assert item is not None
        tx = store.transaction()
        firing = Firing(name, item.value["payload"], 0.0, 1, "k", store, tx)
        fire_timeout(firing)  # buffered: cancel
        orders.fire("o1", "pay", payload={"amount": 10})  # commits first
        tx._system_namespace(TIMERS).delete(name, if_version=item.version)
        with pytest.raises(VersionConflict):
            tx.commit()
        inst = orders.get("o1")
        assert inst is not None and (inst.state, inst.version) == ("paid", 2)

    # -- definitions: versions and migrate -------------------------------------------------

    def test_definition_versions(self, store: Store) -> None:
        v1 = store.machine("order", ORDER)
        assert v1.version == 1
        assert store.machine("order", dict(ORDER)).version == 1
        v1.create("o1")
        v2_doc = {**ORDER, "states": [*ORDER["states"], "held"]}
        v2_doc["transitions"] = [
            *ORDER["transitions"],
            {"event": "hold", "from": "paid", "to": "held"},
            {"event": "release", "from": "held", "to": "paid"},
        ]
        v2 = store.machine("order", v2_doc)
        assert v2.version == 2
        v2.create("o2")
        assert v2.get("o1").definition_version == 1  # type: ignore[union-attr]
        assert v2.get("o2").definition_version == 2  # type: ignore[union-attr]
        v2.fire("o1", "pay", payload={"amount": 9})
        assert v2.fire("o1", "hold").definition_version == 2
        # The same content again keeps its version; the old one keeps its own.
        assert store.machine("order", v2_doc).version == 2
        assert store.machine("order").version == 2
        assert list_machines(store) == ["order"]

    def test_migrate_maps_a_removed_state(self, store: Store) -> None:
        v2_doc = {**ORDER, "states": [*ORDER["states"], "held"]}
        v2_doc["transitions"] = [
            *ORDER["transitions"],
            {"event": "hold", "from": "paid", "to": "held"},
            {"event": "release", "from": "held", "to": "paid"},
        ]
        m = store.machine("order", v2_doc)
        m.create("o1")
        m.fire("o1", "pay", payload={"amount": 9})
        m.fire("o1", "hold")
        before = snapshot(store)
        with pytest.raises(ConfigError, match="removes state 'held'"):
            store.machine("order", ORDER)
        assert snapshot(store) == before
        v3 = store.machine("order", {**ORDER, "migrate": {"held": "paid"}})
        assert v3.version == 2
        assert v3.get("o1").state == "held"  # type: ignore[union-attr]  # lazily migrated
        assert v3.counts()["held"] == 1
        # Dropping the mapping while an instance is still there is refused as well.
        with pytest.raises(ConfigError, match="removes state 'held'"):
            store.machine("order", {**ORDER, "timeouts": []})
        shipped = v3.fire("o1", "ship")
        assert (shipped.state, shipped.definition_version) == ("shipped", 2)
        assert v3.history("o1")[-1].source == "held"

    # -- rebuild ----------------------------------------------------------------------------

    def test_rebuild_recomputes_rows_without_running_timers_or_actions(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        for id in ("o1", "o2", "o3"):
            orders.create(id, data={"id": id})
        orders.fire("o1", "pay", payload={"amount": 9})
        orders.fire("o2", "cancel")
        want = {id: orders.get(id) for id in ("o1", "o2", "o3")}
        proj = store._system_namespace("_machine.order")
        timers_before = [t.name for t in store.timers.list("", 1000)]
        proj.delete("o1")
        proj.put(
            "o2",
            {"state": "shipped", "version": 99, "data": None, "created_at": 0, "updated_at": 0},
        )
        proj.put(
            "zombie",
            {"state": "paid", "version": 1, "data": None, "created_at": 0, "updated_at": 0},
        )
        assert orders.rebuild("o1") == want["o1"]
        assert orders.rebuild_all() == 3
        assert {id: orders.get(id) for id in ("o1", "o2", "o3")} == want
        assert orders.get("zombie") is None
        assert [t.name for t in store.timers.list("", 1000)] == timers_before
        assert orders.rebuild("never") is None
        # The rebuilt rows keep working: o1's armed timers are known again.
        assert orders.fire("o3", "cancel").state == "cancelled"
        assert _timer_names(store, "o3") == []

    # -- pictures --------------------------------------------------------------------------

    def test_render_mermaid_and_dot_with_counts(self, store: Store) -> None:
        orders = store.machine("order", ORDER)
        orders.create("o1")
        orders.create("o2")
        orders.fire("o2", "cancel")
        mermaid = orders.render()
        assert mermaid.startswith("stateDiagram-v2\n")
        assert 'state "pending (1)" as s0' in mermaid
        assert 'state "cancelled (1)" as s3' in mermaid
        assert "[*] --> s0" in mermaid and "s3 --> [*]" in mermaid
        assert "s0 --> s3: after 30m#58; cancel" in mermaid
        dot = orders.render("dot")
        assert dot.startswith('digraph "order" {') and dot.rstrip().endswith("}")
        assert 's0 [label="pending (1)"];' in dot
        assert "peripheries=2" in dot
        assert "(1)" not in orders.render(counts=False)

    def test_hostile_state_names_cannot_break_the_pictures(self, store: Store) -> None:
        odd = ['a"b', "x --> y", "c\\d", "semi;colon", "{br}"]
        m = store.machine(
            "odd",
            {
                "initial": odd[0],
                "states": odd,
                "transitions": [
                    {"event": f"e{i}", "from": odd[i], "to": odd[i + 1]} for i in range(4)
                ],
            },
        )
        mermaid = m.render()
        shapes = re.compile(
            r'    state "(?:[^"\n;{}#]|#\d+;)*" as s\d+'
            r"|    (s\d+|\[\*\]) --> (s\d+|\[\*\])(: (?:[^\"\n;{}#>]|#\d+;)*)?"
        )
        for line in mermaid.splitlines()[2:]:
            assert shapes.fullmatch(line), line
        dot = m.render("dot")
        assert 'label="a\\"b (0)"' in dot and 'label="c\\\\d (0)"' in dot

    # -- definitions from TOML and stored ----------------------------------------------------

    def test_toml_definition_and_the_stored_copy(self, store: Store) -> None:
        toml = """
initial = "draft"
states = ["draft", "review", "published"]
final = ["published"]

[[transitions]]
event = "submit"
from = "draft"
to = "review"

[[transitions]]
event = "approve"
from = "review"
to = "published"
guard = { EQ = { "payload.ok" = true } }

[[timeouts]]
state = "review"
after = "2d"
event = "approve"
"""
        m = store.machine("doc", toml)
        m.create("d1")
        m.fire("d1", "submit")
        with pytest.raises(InvalidTransition):
            m.fire("d1", "approve", payload={"ok": False})
        # The stored definition (what a worker loads) is the same definition.
        assert store.machine("doc").definition.fingerprint == m.definition.fingerprint
        assert m.fire("d1", "approve", payload={"ok": True}).state == "published"
