"""State machines (issue 13): definitions, the conformance suite over memory, SQLite and
PostgreSQL, the refusal on Redis, the async twin, and a Hypothesis model test against
a reference FSM (legal and illegal fires, stale versions, concurrent fires from two
threads, timeouts on a fake clock)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import clawstate
from _backends import DEFAULT_OPTIONS, drop_schema, new_schema, pg, pg_url, prefixes, raw, redis_url
from clawstate import ConfigError, InvalidRequest, InvalidTransition, Store, VersionConflict
from clawstate.machines import StateMachine, parse_definition
from clawstate.machines.definition import load_class, registered
from clawstate.testing.conformance import StoreFactory
from clawstate.testing.conformance.machines import (
    ORDER,
    MachineConformance,
    run_due_timers,
)
from clawstate.testing.fakes import FakeClock

__all__ = ["pg", "prefixes", "raw"]  # fixtures, re-exported for pytest

KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=KINDS)
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
            url = f"sqlite:///{tmp_path}/m-{len(opened)}.db"
        else:
            schemas.append(new_schema("cs_machines"))
            url = pg_url(schemas[-1])
        store = clawstate.open(url, clock=clock, **{**DEFAULT_OPTIONS, **options})
        assert isinstance(store, Store)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
    for schema in schemas:
        drop_schema(schema)


class TestMachines(MachineConformance):
    """The conformance suite over memory, SQLite and PostgreSQL."""


# -- definitions -----------------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    return {**ORDER, **changes}


BAD_DEFINITIONS: list[tuple[Any, str, str]] = [
    ({"states": ["a"]}, "initial", "missing"),
    ({"initial": "a"}, "states", "missing"),
    (_with(initial="nowhere"), "initial", "unknown state 'nowhere'"),
    (_with(states=[]), "states", "must not be empty"),
    (_with(states=["pending", "pending"]), "states[1]", "listed twice"),
    (_with(states="pending"), "states", "must be a list"),
    (_with(states=["pending", ""]), "states[1]", "1-128"),
    (_with(states=["pending", " x"]), "states[1]", "printable"),
    (_with(states=["pending", 5]), "states[1]", "must be a string"),
    (_with(final=["pending"]), "initial", "cannot also be final"),
    (_with(final=["ghost"]), "final[0]", "unknown state"),
    (
        _with(states=[*ORDER["states"], "limbo"]),
        "states",
        "state 'limbo' is unreachable",
    ),
    (
        _with(
            transitions=[
                *ORDER["transitions"],
                {"event": "reopen", "from": "shipped", "to": "paid"},
            ]
        ),
        "transitions[3].from",
        "final state",
    ),
    (
        _with(
            transitions=[
                *ORDER["transitions"],
                {"event": "pay", "from": "pending", "to": "cancelled"},
            ]
        ),
        "transitions[3].event",
        "already defined by transitions[0]",
    ),
    (
        _with(transitions=[{"event": "pay", "from": "pending", "to": "ghost"}]),
        "transitions[0].to",
        "unknown state 'ghost'",
    ),
    (_with(transitions=[{"event": "pay", "to": "paid"}]), "transitions[0].from", "missing"),
    (
        _with(transitions=[{"event": "pay", "from": "pending", "to": "paid", "when": 1}]),
        "transitions[0].when",
        "unknown key",
    ),
    (
        _with(transitions=[{"event": "create", "from": "pending", "to": "paid"}]),
        "transitions[0].event",
        "reserved",
    ),
    (
        _with(transitions=[{"event": "pay", "from": [], "to": "paid"}]),
        "transitions[0].from",
        "at least one",
    ),
    (
        _with(transitions=[{"event": "pay", "from": ["pending", "pending"], "to": "paid"}]),
        "transitions[0].from",
        "twice",
    ),
    (
        _with(
            transitions=[{"event": "pay", "from": "pending", "to": "paid", "guard": {"NOPE": 1}}]
        ),
        "transitions[0].guard",
        "unknown operator",
    ),
    (
        _with(transitions=[{"event": "pay", "from": "pending", "to": "paid", "guard": "ok"}]),
        "transitions[0].guard",
        "query filter",
    ),
    (
        _with(transitions=[{"event": "pay", "from": "pending", "to": "paid", "update": "f"}]),
        "transitions[0].update",
        "StateMachine class",
    ),
    (
        _with(
            transitions=[{"event": "pay", "from": "pending", "to": "paid", "actions": ["nomodule"]}]
        ),
        "transitions[0].actions[0]",
        "package.module:function",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": "soon", "event": "cancel"}]),
        "timeouts[0].after",
        "",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": 0, "event": "cancel"}]),
        "timeouts[0].after",
        "> 0",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": -5, "event": "cancel"}]),
        "timeouts[0].after",
        "",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": float("nan"), "event": "cancel"}]),
        "timeouts[0].after",
        "",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": 10**30, "event": "cancel"}]),
        "timeouts[0].after",
        "100 years",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": True, "event": "cancel"}]),
        "timeouts[0].after",
        "",
    ),
    (
        _with(timeouts=[{"state": "shipped", "after": 5, "event": "cancel"}]),
        "timeouts[0].state",
        "final",
    ),
    (
        _with(timeouts=[{"state": "pending", "after": 5, "event": "ship"}]),
        "timeouts[0].event",
        "could never fire",
    ),
    (_with(timeouts=[{"state": "pending", "event": "cancel"}]), "timeouts[0].after", "missing"),
    (_with(migrate={"pending": "paid"}), "migrate.pending", "still a state"),
    (_with(migrate={"old": "ghost"}), "migrate.old", "unknown state"),
    (_with(migrate=["old"]), "migrate", "table/dict"),
    (_with(colour="red"), "definition.colour", "unknown key"),
    ("initial = [", "definition", "TOML"),
    ('initial = "a"\ninitial = "b"\nstates = ["a"]', "definition", "TOML"),
    (42, "definition", "dict, TOML text or a StateMachine"),
    (StateMachine, "definition", "subclass"),
]


@pytest.mark.parametrize(("definition", "field", "words"), BAD_DEFINITIONS)
def test_invalid_definitions_name_the_problem(definition: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_definition(definition)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)


def test_equal_definitions_have_equal_fingerprints_in_any_form() -> None:
    toml = """
initial = "pending"
states = ["pending", "paid", "shipped", "cancelled"]
final = ["shipped", "cancelled"]
transitions = [
  { event = "pay", from = "pending", to = "paid", guard = { GTE = { "payload.amount" = 9 } }, \
actions = ["clawstate.testing.conformance.machines:record_action"] },
  { event = "ship", from = "paid", to = "shipped" },
  { event = "cancel", from = ["pending", "paid"], to = "cancelled" },
]
timeouts = [{ state = "pending", after = 1800, event = "cancel" }]
"""
    a, b = parse_definition(ORDER), parse_definition(toml)
    assert a.fingerprint == b.fingerprint
    assert parse_definition(_with(final=["cancelled", "shipped"])).fingerprint == a.fingerprint
    changed = _with(timeouts=[{"state": "pending", "after": "31m", "event": "cancel"}])
    assert parse_definition(changed).fingerprint != a.fingerprint
    with pytest.raises(AttributeError):
        a.initial = "paid"


class _Broken(StateMachine):
    initial = "a"
    states: ClassVar = ["a", "b"]
    transitions: ClassVar = [{"event": "go", "from": "a", "to": "b", "guard": "missing"}]


def test_class_definitions_check_their_methods() -> None:
    with pytest.raises(ConfigError, match="has no method 'missing'") as info:
        parse_definition(_Broken)
    assert info.value.field == "transitions[0].guard"


def test_a_stored_class_definition_needs_its_class_registered(
    store_factory: StoreFactory,
) -> None:
    """The worker runs a class-based machine's methods only for classes registered
    by module path (``clawstate worker --machine``); an unregistered one says so."""
    from clawstate.testing.conformance.machines import Counter

    store = store_factory()
    store.machine("counter", Counter).create("c1")
    doc = dict(parse_definition(Counter).document)
    assert doc["class"] == "clawstate.testing.conformance.machines:Counter"
    doc["class"] = "clawstate.testing.conformance.machines:Unregistered"
    detached = parse_definition(doc)
    assert detached.cls is None
    with pytest.raises(ConfigError, match=r"--machine clawstate\.testing"):
        detached.updated(detached.transitions[0], {}, None)
    assert load_class("clawstate.testing.conformance.machines:Counter") is Counter
    assert registered("clawstate.testing.conformance.machines:Counter") is Counter
    for spec, words in [
        ("nocolon", "package.module:Class"),
        ("no_such_module_xyz:Thing", "cannot import"),
        ("clawstate:nothing_here", "no attribute"),
        ("clawstate:Store", "not a StateMachine"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_class(spec)


# -- backends without events, the async twin --------------------------------------------------


def test_redis_refuses_machines_clearly(prefixes: Any) -> None:
    store = clawstate.open(redis_url(prefixes.new()), **DEFAULT_OPTIONS)
    try:
        with pytest.raises(InvalidRequest, match="keeps no events") as info:
            store.machine("order", ORDER)  # type: ignore[attr-defined]
        assert info.value.field == "machine"
    finally:
        store.close()


@pytest.mark.anyio
async def test_the_async_twin(tmp_path: Path) -> None:
    clock = FakeClock()
    astore = clawstate.open_async(f"sqlite:///{tmp_path}/a.db", clock=clock, **DEFAULT_OPTIONS)
    try:
        with pytest.raises(ConfigError):
            astore.machine("order", {"initial": "x"})  # type: ignore[attr-defined]
        orders = astore.machine("order", ORDER)  # type: ignore[attr-defined]
        created = await orders.create("o1", {"total": 9})
        assert created.state == "pending"
        paid = await orders.fire("o1", "pay", {"amount": 9})
        assert (paid.state, paid.version) == ("paid", 2)
        assert await orders.get("o1") == paid
        assert [h.event for h in await orders.history("o1")] == ["create", "pay"]
        assert [i.id for i in await orders.query("paid")] == ["o1"]
        assert (await orders.counts())["paid"] == 1
        assert "paid (1)" in await orders.render()
        with pytest.raises(InvalidTransition):
            await orders.fire("o1", "pay", {"amount": 9})
        assert await orders.rebuild("o1") == paid
        assert await orders.rebuild_all() == 1
    finally:
        await astore.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the model test --------------------------------------------------------------------------

#: The machine under test: a self-loop, a guarded branch, timeouts in three states
#: (one of them firing a guarded event, which then does nothing) and a final state.
MODEL_DEF: dict[str, Any] = {
    "initial": "a",
    "states": ["a", "b", "c", "done"],
    "final": ["done"],
    "transitions": [
        {"event": "go", "from": "a", "to": "b"},
        {"event": "back", "from": "b", "to": "a"},
        {"event": "stay", "from": "a", "to": "a"},
        {"event": "jump", "from": "a", "to": "c", "guard": {"EQ": {"payload.ok": True}}},
        {"event": "finish", "from": ["b", "c"], "to": "done"},
    ],
    "timeouts": [
        {"state": "a", "after": 10, "event": "go"},
        {"state": "b", "after": 5, "event": "finish"},
        {"state": "c", "after": 7, "event": "finish"},
    ],
}
EVENTS = ["go", "back", "stay", "jump", "finish", "nope"]
TIMEOUTS = {"a": (10.0, "go"), "b": (5.0, "finish"), "c": (7.0, "finish")}
TABLE = {
    ("go", "a"): "b",
    ("back", "b"): "a",
    ("stay", "a"): "a",
    ("jump", "a"): "c",
    ("finish", "b"): "done",
    ("finish", "c"): "done",
}


class Ref:
    """The reference FSM: per instance its state, version and armed timeout."""

    def __init__(self) -> None:
        self.inst: dict[str, tuple[str, int, float | None]] = {}

    @staticmethod
    def step(
        cur: tuple[str, int, float | None], event: str, ok: bool, now: float
    ) -> tuple[str, int, float | None] | None:
        state, version, _ = cur
        target = TABLE.get((event, state))
        if target is None or (event == "jump" and not ok):
            return None
        armed = TIMEOUTS.get(target)
        return target, version + 1, None if armed is None else now + armed[0]


class MachineModel(RuleBasedStateMachine):
    factory: ClassVar[Any] = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store: Store = type(self).factory(clock=self.clock)
        self.m = self.store.machine("model", MODEL_DEF)
        self.ref = Ref()

    ids = st.sampled_from(["i1", "i2", "i3"])

    @initialize()
    def start(self) -> None:
        pass

    @rule(id=ids)
    def create(self, id: str) -> None:
        if id in self.ref.inst:
            with pytest.raises(VersionConflict):
                self.m.create(id)
            return
        inst = self.m.create(id)
        assert (inst.state, inst.version) == ("a", 1)
        self.ref.inst[id] = ("a", 1, self.clock() + 10)

    @rule(
        id=ids,
        event=st.sampled_from(EVENTS),
        ok=st.booleans(),
        how=st.sampled_from(["none", "right", "stale"]),
    )
    def fire(self, id: str, event: str, ok: bool, how: str) -> None:
        cur = self.ref.inst.get(id)
        payload = {"ok": ok}
        if cur is None:
            with pytest.raises(InvalidRequest):
                self.m.fire(id, event, payload)
            return
        expected = None if how == "none" else cur[1] if how == "right" else cur[1] + 7
        nxt = Ref.step(cur, event, ok, self.clock())
        if how == "stale":
            with pytest.raises(VersionConflict):
                self.m.fire(id, event, payload, expected_version=expected)
            return
        if nxt is None:
            with pytest.raises((InvalidTransition, InvalidRequest)):
                self.m.fire(id, event, payload, expected_version=expected)
            return
        inst = self.m.fire(id, event, payload, expected_version=expected)
        assert (inst.state, inst.version) == nxt[:2]
        self.ref.inst[id] = nxt

    @rule(id=ids, e1=st.sampled_from(EVENTS), e2=st.sampled_from(EVENTS))
    def concurrent(self, id: str, e1: str, e2: str) -> None:
        cur = self.ref.inst.get(id)
        if cur is None:
            return
        results: dict[int, bool] = {}
        barrier = threading.Barrier(2)

        def work(i: int, event: str) -> None:
            barrier.wait()
            try:
                self.m.fire(id, event, {"ok": True})
                results[i] = True
            except InvalidTransition:
                results[i] = False

        ts = [threading.Thread(target=work, args=(i, e)) for i, e in enumerate((e1, e2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        now = self.clock()
        outcomes = []
        for order in ((0, 1), (1, 0)):
            state: tuple[str, int, float | None] = cur
            ok: dict[int, bool] = {}
            for i in order:
                nxt = Ref.step(state, (e1, e2)[i], True, now)
                ok[i] = nxt is not None
                if nxt is not None:
                    state = nxt
            outcomes.append((state, ok))
        actual = self.m.get(id)
        assert actual is not None
        matching = [
            s
            for s, ok in outcomes
            if (s[0], s[1]) == (actual.state, actual.version) and ok == results
        ]
        assert matching, (outcomes, results, actual)
        self.ref.inst[id] = matching[0]

    @rule(seconds=st.sampled_from([1, 4, 5, 6, 10, 25]))
    def advance(self, seconds: int) -> None:
        now = self.clock.advance(seconds)
        run_due_timers(self.store)
        for id, (state, version, due) in list(self.ref.inst.items()):
            if due is not None and due <= now:
                event = TIMEOUTS[state][1]
                nxt = Ref.step((state, version, due), event, False, now)
                assert nxt is not None
                self.ref.inst[id] = nxt

    @invariant()
    def agrees(self) -> None:
        for id, (state, version, due) in self.ref.inst.items():
            inst = self.m.get(id)
            assert inst is not None and (inst.state, inst.version) == (state, version)
            timers = [t for t in self.store.timers.list(f"machine:model:{id}:t", 100)]
            assert [t.due for t in timers] == ([] if due is None else [due])

    def teardown(self) -> None:
        self.store.close()


@pytest.mark.parametrize("url_kind", ["memory", "sqlite"])
def test_machines_agree_with_a_reference_fsm(url_kind: str, tmp_path: Path) -> None:
    counter = iter(range(10**6))

    def factory(clock: Any) -> Store:
        url = "memory://" if url_kind == "memory" else f"sqlite:///{tmp_path}/h{next(counter)}.db"
        store = clawstate.open(url, clock=clock, **DEFAULT_OPTIONS)
        assert isinstance(store, Store)
        return store

    MachineModel.factory = staticmethod(factory)
    run_state_machine_as_test(
        MachineModel,
        settings=settings(
            max_examples=25 if url_kind == "sqlite" else 60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# -- the worker's --machine --------------------------------------------------------------------


def test_worker_registers_class_machines_by_module_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from clawstate.cli import app

    for name in list(os.environ):
        if name.startswith("CLAWSTATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path])  # the CLI puts the cwd on it: undone
    (tmp_path / "myorders.py").write_text(
        "from clawstate.machines import StateMachine\n"
        "class Order(StateMachine):\n"
        "    initial = 'new'\n"
        "    states = ['new', 'done']\n"
        "    final = ['done']\n"
        "    transitions = [{'event': 'finish', 'from': 'new', 'to': 'done', 'guard': 'ok'}]\n"
        "    def ok(self, data, payload):\n"
        "        return True\n"
    )
    monkeypatch.setenv("CLAWSTATE_URL", f"sqlite:///{tmp_path}/w.db")
    runner = CliRunner()
    result = runner.invoke(app, ["worker", "--once", "--machine", "myorders:Order"])
    assert result.exit_code == 0, result.output
    cls = registered("myorders:Order")
    assert cls is not None and cls.__name__ == "Order"
    bad = runner.invoke(app, ["worker", "--once", "--machine", "myorders:Missing"])
    sys.modules.pop("myorders", None)
    assert bad.exit_code != 0
    assert "has no attribute 'Missing'" in bad.output


def test_a_handle_fires_with_the_newest_definition_another_process_stored(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    a = clawstate.open(url, **DEFAULT_OPTIONS)
    b = clawstate.open(url, **DEFAULT_OPTIONS)
    try:
        old = a.machine("order", ORDER)  # type: ignore[attr-defined]
        v2 = {
            **ORDER,
            "states": [*ORDER["states"], "held"],
            "transitions": [
                *ORDER["transitions"],
                {"event": "hold", "from": "paid", "to": "held"},
                {"event": "release", "from": "held", "to": "paid"},
            ],
        }
        new = b.machine("order", v2)  # type: ignore[attr-defined]
        assert (old.version, new.version) == (1, 2)
        new.create("o1")
        new.fire("o1", "pay", payload={"amount": 9})
        # The instance was written by version 2: the old handle re-reads the definition
        # at once and knows "hold".
        held = old.fire("o1", "hold")
        assert (held.state, held.definition_version) == ("held", 2)
        assert old.version == 2
    finally:
        a.close()
        b.close()
