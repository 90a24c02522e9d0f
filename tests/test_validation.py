"""Input validation on the embedded API (sync and async) and the CLI — issue 10,
items 7, 8 and 10.  The HTTP side is ``tests/test_server_validation.py``.

Each class tries a whole family of hostile inputs on every path that takes them, and
asserts the one behaviour the project promises (DESIGN.md, principle 3): an
``InvalidRequest`` naming the field (and the limit), and nothing changed — no item,
no change-log row, no event.

* integers: beyond 64 bits (these escaped as a bare ``OverflowError`` from the
  driver), negative, bool, float, str — for every seq, position, version and limit;
* non-finite floats: NaN and ±infinity anywhere in a value are refused on every path
  (they used to be stored under msgpack and read back as ``null`` by JSON readers);
* sloppy types: a str where a key list is expected (``get_many("abc")`` read keys
  a, b, c), None, bytes, pairs of the wrong arity, truthy strings as flags.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import struct
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

import clawstate
from _backends import drop_schema, new_schema, pg_probe, pg_url
from clawstate import Event, InvalidRequest, Store, VersionConflict
from clawstate.aio import AsyncStore
from clawstate.backends.base import OP_PUT, Write, WriteUnit
from clawstate.testing.conformance import snapshot
from services import require

INT64_MAX = 2**63 - 1  # every backend keeps seqs, positions and versions in 64 bits
BIG = [2**63, 2**63 + 1, 99999999999999999999, 10**400, -(2**63) - 1]
NOT_INTS = [True, False, 1.5, math.nan, "5", b"5", [1]]


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "memory", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One store per backend for the module: tests use their own keys and streams, and
    every refusal is checked against a snapshot of the whole store."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('validation') / 'state.db'}"
    elif request.param == "memory":
        url = "memory://"
    else:
        require("postgresql", pg_probe)
        schema = new_schema("val")
        url = pg_url(schema)
    s = clawstate.open(url, sweep_interval=0)
    s.namespace("v").put("k", 1)
    s.events.append("s", [Event("Seeded", {"n": 1})])
    yield s
    s.close()
    if schema is not None:
        drop_schema(schema)


@pytest.fixture(scope="module")
def astore(store: Store) -> Iterator[AsyncStore]:
    a = AsyncStore(store, max_workers=2)
    yield a
    a._run.shutdown()


def _state(store: Store) -> Any:
    """Everything a refused request must leave as it was: items, the change log's end,
    the event log's end."""
    return snapshot(store), store.events.last_position


def refused(store: Store, field: str, action: Callable[[], object]) -> InvalidRequest:
    """``action`` raises InvalidRequest naming ``field`` and changes nothing."""
    before = _state(store)
    with pytest.raises(InvalidRequest) as info:
        action()
    assert info.value.field == field, str(info.value)
    assert _state(store) == before, "a refused request changed the store"
    return info.value


def run(coro: Awaitable[object]) -> object:
    async def main() -> object:
        return await coro

    return asyncio.run(main())


def _tx(store: Store, body: Callable[[Any], None]) -> None:
    with store.transaction() as tx:
        body(tx)


# -- item 7: integers ------------------------------------------------------------------------

#: (id, field, smallest valid value, largest valid value or None for 2**63-1, call)
IntCall = Callable[[Store, AsyncStore, Any], object]
INT_PATHS: list[tuple[str, str, int, int | None, IntCall]] = [
    ("ns.watch", "from_seq", 0, None, lambda s, a, v: s.namespace("v").watch(v, timeout=0)),
    ("store.watch", "from_seq", 0, None, lambda s, a, v: s.watch(v, timeout=0)),
    (
        "store.watch(namespace)",
        "from_seq",
        0,
        None,
        lambda s, a, v: s.watch(v, namespace="v", timeout=0),
    ),
    (
        "put.if_version",
        "if_version",
        1,
        None,
        lambda s, a, v: s.namespace("v").put("k", 2, if_version=v),
    ),
    (
        "delete.if_version",
        "if_version",
        1,
        None,
        lambda s, a, v: s.namespace("v").delete("k", if_version=v),
    ),
    (
        "tx.put.if_version",
        "if_version",
        1,
        None,
        lambda s, a, v: _tx(s, lambda tx: tx.namespace("v").put("k", 2, if_version=v)),
    ),
    (
        "tx.delete.if_version",
        "if_version",
        1,
        None,
        lambda s, a, v: _tx(s, lambda tx: tx.namespace("v").delete("k", if_version=v)),
    ),
    ("scan.limit", "limit", 1, 10_000, lambda s, a, v: s.namespace("v").scan(limit=v)),
    (
        "append.expected_version",
        "expected_version",
        0,
        INT64_MAX - 1,
        lambda s, a, v: s.events.append("s", [Event("T")], expected_version=v),
    ),
    (
        "append_many.expected_version",
        "expected_version",
        0,
        INT64_MAX - 1,
        lambda s, a, v: s.events.append_many([("s", [Event("T")], v)]),
    ),
    (
        "tx.events.append.expected_version",
        "expected_version",
        0,
        INT64_MAX - 1,
        lambda s, a, v: _tx(s, lambda tx: tx.events.append("s", [Event("T")], expected_version=v)),
    ),
    (
        "append.schema_version",
        "events[0].schema_version",
        1,
        2**31 - 1,  # PostgreSQL's integer column; every backend takes the same values
        lambda s, a, v: s.events.append("s", [Event("T", schema_version=v)]),
    ),
    ("read.from_version", "from_version", 0, None, lambda s, a, v: s.events.read("s", v)),
    ("read.limit", "limit", 1, None, lambda s, a, v: s.events.read("s", limit=v)),
    ("read_all.from_position", "from_position", 0, None, lambda s, a, v: s.events.read_all(v)),
    ("read_all.limit", "limit", 1, 10_000, lambda s, a, v: s.events.read_all(0, v)),
    (
        "subscribe.from_position",
        "from_position",
        0,
        None,
        lambda s, a, v: s.events.subscribe(v, timeout=0),
    ),
    (
        "subscribe.batch",
        "batch",
        1,
        None,
        lambda s, a, v: s.events.subscribe("end", timeout=0, batch=v),
    ),
    (
        "subscribe.checkpoint_every",
        "checkpoint_every",
        1,
        None,
        lambda s, a, v: s.events.subscribe("end", timeout=0, checkpoint_every=v),
    ),
    (
        "projection_runner.batch",
        "batch",
        1,
        None,
        lambda s, a, v: s.events.projection_runner([], batch=v),
    ),
    (
        "set_stream_metadata.max_count",
        "max_count",
        1,
        None,
        lambda s, a, v: s.events.set_stream_metadata("s", max_count=v),
    ),
    (
        "set_stream_metadata.truncate_before",
        "truncate_before",
        1,
        None,
        lambda s, a, v: s.events.set_stream_metadata("s", truncate_before=v),
    ),
    (
        "delete_stream.expected_version",
        "expected_version",
        0,
        INT64_MAX - 1,
        lambda s, a, v: s.events.delete_stream("s", expected_version=v),
    ),
    ("async.watch", "from_seq", 0, None, lambda s, a, v: a.watch(v, timeout=0)),
    (
        "async.put.if_version",
        "if_version",
        1,
        None,
        lambda s, a, v: run(a.namespace("v").put("k", 2, if_version=v)),
    ),
    (
        "async.append.expected_version",
        "expected_version",
        0,
        INT64_MAX - 1,
        lambda s, a, v: run(a.events.append("s", [Event("T")], expected_version=v)),
    ),
    (
        "async.read.from_version",
        "from_version",
        0,
        None,
        lambda s, a, v: run(a.events.read("s", v)),
    ),
    (
        "async.read_all.from_position",
        "from_position",
        0,
        None,
        lambda s, a, v: run(a.events.read_all(v)),
    ),
]
INT_CASES = [
    pytest.param(field, call, bad, low, high, id=f"{name}-{i}")
    for name, field, low, high, call in INT_PATHS
    for i, bad in enumerate([*BIG, *NOT_INTS, low - 1, (high or INT64_MAX) + 1])
]


class TestIntegers:
    """Item 7: every seq, position, version and limit, on every embedded path, refuses
    what is not an integer in range — with the field and the range in the message."""

    @pytest.mark.parametrize(("field", "call", "bad", "low", "high"), INT_CASES)
    def test_refused_naming_the_field_and_the_range(
        self,
        store: Store,
        astore: AsyncStore,
        field: str,
        call: IntCall,
        bad: Any,
        low: int,
        high: int | None,
    ) -> None:
        err = refused(store, field, lambda: call(store, astore, bad))
        assert f"from {low} to {high or INT64_MAX}" in str(err), str(err)
        if isinstance(bad, int) and abs(bad) > 10**30:
            assert "digits" in str(err) and len(str(err)) < 400  # not echoed back whole

    @pytest.mark.parametrize(
        ("field", "call", "high"),
        [pytest.param(f, c, h, id=n) for n, f, low, h, c in INT_PATHS if "async" not in n],
    )
    def test_the_largest_value_is_accepted(
        self, store: Store, astore: AsyncStore, field: str, call: IntCall, high: int | None
    ) -> None:
        """The bound is 2**63-1 exactly: it reaches the backend (which answers, at
        worst, with a conflict), never an OverflowError."""
        top = high or INT64_MAX
        try:
            out = call(store, astore, top)
        except VersionConflict:
            return  # a version no item has: the honest answer
        if hasattr(out, "poll"):
            assert out.poll() == []  # nothing after the last possible position
        if isinstance(out, list) and field in ("from_version", "from_position"):
            assert out == []

    def test_append_schema_version_at_the_bound_round_trips(self, store: Store) -> None:
        stream = f"sv-{uuid.uuid4().hex[:8]}"
        store.events.append(stream, [Event("T", schema_version=2**31 - 1)])
        assert store.events.read(stream)[0].schema_version == 2**31 - 1


# -- item 8: non-finite floats --------------------------------------------------------------

NON_FINITE = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(float("1e999"), id="1e999"),
]
#: (id, how the float is placed, the path the error must name)
SHAPES: list[tuple[str, Callable[[float], Any], str]] = [
    ("top", lambda x: x, "$"),
    ("in-list", lambda x: [1, "a", x], "$[2]"),
    ("map-value", lambda x: {"a": 1, "b": x}, "$.b"),
    ("nested", lambda x: {"a": [{"b c": [0, x]}]}, "$.a[0]['b c'][1]"),
    ("deep", lambda x: {"d": [[[[[[[[x]]]]]]]]}, "$.d[0][0][0][0][0][0][0][0]"),
]
ValueCall = Callable[[Store, AsyncStore, Any], object]
VALUE_PATHS: list[tuple[str, str, ValueCall]] = [
    ("put", "value", lambda s, a, v: s.namespace("v").put("nf", v)),
    ("put-existing", "value", lambda s, a, v: s.namespace("v").put("k", v)),
    ("put_many.mapping", "value", lambda s, a, v: s.namespace("v").put_many({"ok": 1, "nf": v})),
    ("put_many.pairs", "value", lambda s, a, v: s.namespace("v").put_many([("ok", 1), ("nf", v)])),
    ("tx.put", "value", lambda s, a, v: _tx(s, lambda tx: tx.namespace("v").put("nf", v))),
    ("async.put", "value", lambda s, a, v: run(a.namespace("v").put("nf", v))),
    ("async.put_many", "value", lambda s, a, v: run(a.namespace("v").put_many({"nf": v}))),
]
EVENT_PATHS: list[tuple[str, str, ValueCall]] = [
    ("append.data", "events[0].data", lambda s, a, v: s.events.append("s", [Event("T", {"x": v})])),
    (
        "append.metadata",
        "events[0].metadata",
        lambda s, a, v: s.events.append("s", [Event("T", {}, {"x": v})]),
    ),
    (
        "append_many.data",
        "events[1].data",
        lambda s, a, v: s.events.append_many([("s", [Event("T"), Event("T", {"x": v})], "any")]),
    ),
    (
        "tx.events.append.data",
        "events[0].data",
        lambda s, a, v: _tx(s, lambda tx: tx.events.append("s", [Event("T", {"x": v})])),
    ),
    (
        "async.append.data",
        "events[0].data",
        lambda s, a, v: run(a.events.append("s", [Event("T", {"x": v})])),
    ),
]


class TestNonFiniteFloats:
    """Item 8: NaN and ±infinity are refused on every embedded path, wherever they sit
    in the value; the error names the path inside the value."""

    @pytest.mark.parametrize("bad", NON_FINITE)
    @pytest.mark.parametrize(("shape", "where"), [pytest.param(f, w, id=i) for i, f, w in SHAPES])
    @pytest.mark.parametrize(
        ("field", "call"), [pytest.param(f, c, id=i) for i, f, c in VALUE_PATHS]
    )
    def test_values(
        self,
        store: Store,
        astore: AsyncStore,
        field: str,
        call: ValueCall,
        shape: Callable[[float], Any],
        where: str,
        bad: float,
    ) -> None:
        err = refused(store, field, lambda: call(store, astore, shape(bad)))
        assert f"non-finite float at {where} " in str(err), str(err)

    @pytest.mark.parametrize("bad", NON_FINITE)
    @pytest.mark.parametrize(
        ("field", "call"), [pytest.param(f, c, id=i) for i, f, c in EVENT_PATHS]
    )
    def test_event_data_and_metadata(
        self, store: Store, astore: AsyncStore, field: str, call: ValueCall, bad: float
    ) -> None:
        for value in (bad, [bad], {"y": bad}):
            err = refused(store, field, lambda v=value: call(store, astore, v))
            assert "non-finite float at $.x" in str(err), str(err)

    @pytest.mark.parametrize("bad", NON_FINITE)
    def test_as_map_keys(self, store: Store, bad: float) -> None:
        """A float key is not a JSON object name (refused as such), NaN or not."""
        refused(store, "value", lambda: store.namespace("v").put("nf", {bad: 1}))
        refused(store, "events[0].data", lambda: store.events.append("s", [Event("T", {bad: 1})]))

    def test_finite_floats_still_round_trip(self, store: Store) -> None:
        value = {"a": [0.1, -0.0, 1e308, -1e-308, 5e-324], "b": 1.5}
        assert store.namespace("v").put("finite", value).value == value
        got = store.namespace("v").get("finite")
        assert got is not None and got.value == value

    @pytest.mark.parametrize("where", ["memory", "sqlite"])
    def test_values_stored_before_the_policy_still_read(self, tmp_path: Path, where: str) -> None:
        """Stored values are not re-validated on read: a NaN written before the policy
        (here: bytes put in place under the codec) still reads back.  (A store of its
        own: NaN != NaN would defeat the module store's before/after snapshots.)"""
        url = "memory://" if where == "memory" else f"sqlite:///{tmp_path / 's.db'}"
        with clawstate.open(url, sweep_interval=0) as store:
            data = b"\x01\x01" + msgspec.msgpack.encode({"x": math.nan, "y": [math.inf]})
            store.backend.write(WriteUnit([Write("legacy", "old", OP_PUT, data)], store._clock()))
            got = store.namespace("legacy").get("old")
            assert got is not None
            assert math.isnan(got.value["x"]) and got.value["y"] == [math.inf]


# -- item 10: sloppy types ------------------------------------------------------------------

NOT_KEY_LISTS = [
    pytest.param("abc", id="str"),
    pytest.param("", id="empty-str"),
    pytest.param(b"ab", id="bytes"),
    pytest.param(bytearray(b"ab"), id="bytearray"),
    pytest.param(memoryview(b"ab"), id="memoryview"),
    pytest.param(None, id="None"),
    pytest.param(5, id="int"),
    pytest.param(1.5, id="float"),
    pytest.param(True, id="bool"),
    pytest.param({"k": 1}, id="mapping"),
    pytest.param(object(), id="object"),
]
BAD_KEY_LISTS = [
    pytest.param(["k", 5], "key", id="int-key"),
    pytest.param(["k", None], "key", id="None-key"),
    pytest.param([b"k"], "key", id="bytes-key"),
    pytest.param([("k",)], "key", id="tuple-key"),
    pytest.param(itertools.repeat("k"), "keys", id="endless-iterator"),
    pytest.param(["k"] * 1001, "keys", id="over-the-limit"),
]
NOT_PAIRS = [
    pytest.param("ab", "items", id="str"),
    pytest.param(b"ab", "items", id="bytes"),
    pytest.param(None, "items", id="None"),
    pytest.param(5, "items", id="int"),
    pytest.param(object(), "items", id="object"),
    pytest.param([("a", 1, 2)], "items[0]", id="triple"),
    pytest.param([("a",)], "items[0]", id="single"),
    pytest.param([()], "items[0]", id="empty-tuple"),
    pytest.param([("a", 1), ["b", 2, 3]], "items[1]", id="list-triple"),
    pytest.param(["ab"], "items[0]", id="str-pair"),
    pytest.param([b"ab"], "items[0]", id="bytes-pair"),
    pytest.param([None], "items[0]", id="None-pair"),
    pytest.param([1], "items[0]", id="int-pair"),
    pytest.param([{"a": 1}], "items[0]", id="dict-pair"),
    pytest.param(itertools.repeat(("a", 1)), "items", id="endless-iterator"),
    pytest.param([(5, 1)], "key", id="int-key"),
]
NOT_FLAGS = [
    pytest.param("yes", id="yes"),
    pytest.param("false", id="str-false"),
    pytest.param("", id="empty-str"),
    pytest.param(1, id="one"),
    pytest.param(0, id="zero"),
    pytest.param(None, id="None"),
    pytest.param([], id="empty-list"),
    pytest.param(1.0, id="float"),
]


class TestSloppyTypes:
    """Item 10: every method taking a key list, a write list or a flag refuses the
    wrong shape with the field named, instead of guessing (or crashing)."""

    @pytest.mark.parametrize("option", ["self", "name"])
    def test_namespace_options_named_like_parameters_are_unknown_options(
        self, store: Store, astore: AsyncStore, option: str
    ) -> None:
        # The name is positional-only, so these reach option validation instead of
        # Python's own "got multiple values for argument" TypeError.
        for opener in (store.namespace, astore.namespace):
            refused(store, f"namespaces.v.{option}", lambda o=opener: o("v", **{option: 1}))

    @pytest.mark.parametrize("keys", NOT_KEY_LISTS)
    def test_get_many_needs_a_list_of_keys(
        self, store: Store, astore: AsyncStore, keys: Any
    ) -> None:
        refused(store, "keys", lambda: store.namespace("v").get_many(keys))
        refused(store, "keys", lambda: run(astore.namespace("v").get_many(keys)))

    @pytest.mark.parametrize(("keys", "field"), BAD_KEY_LISTS)
    def test_get_many_checks_each_key(self, store: Store, keys: Any, field: str) -> None:
        refused(store, field, lambda: store.namespace("v").get_many(keys))

    @pytest.mark.parametrize(
        "make",
        [
            lambda: ["k"],
            lambda: ("k",),
            lambda: {"k"},
            lambda: frozenset({"k"}),
            lambda: iter(["k"]),
            lambda: (k for k in ["k", "nope"]),
            lambda: {"k": 1}.keys(),
        ],
        ids=["list", "tuple", "set", "frozenset", "iterator", "generator", "keys-view"],
    )
    def test_get_many_takes_any_collection_of_keys(
        self, store: Store, astore: AsyncStore, make: Callable[[], Any]
    ) -> None:
        assert list(store.namespace("v").get_many(make())) == ["k"]
        assert list(run(astore.namespace("v").get_many(make()))) == ["k"]  # type: ignore[call-overload]

    @pytest.mark.parametrize(("items", "field"), NOT_PAIRS)
    def test_put_many_needs_key_value_pairs(
        self, store: Store, astore: AsyncStore, items: Any, field: str
    ) -> None:
        refused(store, field, lambda: store.namespace("v").put_many(items))
        refused(store, field, lambda: run(astore.namespace("v").put_many(items)))

    @pytest.mark.parametrize(
        "make",
        [
            lambda: {"p1": 1},
            lambda: [("p1", 1)],
            lambda: [["p1", 1]],
            lambda: (("p1", 1),),
            lambda: (p for p in [("p1", 1)]),
        ],
        ids=["mapping", "tuples", "lists", "tuple-of-tuples", "generator"],
    )
    def test_put_many_takes_mappings_and_pairs(
        self, store: Store, astore: AsyncStore, make: Callable[[], Any]
    ) -> None:
        assert [i.key for i in store.namespace("v").put_many(make())] == ["p1"]
        assert [i.key for i in run(astore.namespace("v").put_many(make()))] == ["p1"]  # type: ignore[attr-defined]

    @pytest.mark.parametrize("flag", NOT_FLAGS)
    def test_if_absent_must_be_a_bool(self, store: Store, astore: AsyncStore, flag: Any) -> None:
        ns = store.namespace("v")
        refused(store, "if_absent", lambda: ns.put("fresh", 1, if_absent=flag))
        refused(store, "if_absent", lambda: ns.put("k", 1, if_absent=flag))
        refused(
            store,
            "if_absent",
            lambda: _tx(store, lambda tx: tx.namespace("v").put("fresh", 1, if_absent=flag)),
        )
        refused(
            store, "if_absent", lambda: run(astore.namespace("v").put("fresh", 1, if_absent=flag))
        )

    @pytest.mark.parametrize("flag", NOT_FLAGS)
    def test_backwards_must_be_a_bool(self, store: Store, astore: AsyncStore, flag: Any) -> None:
        refused(store, "backwards", lambda: store.events.read("s", backwards=flag))
        refused(store, "backwards", lambda: run(astore.events.read("s", backwards=flag)))

    @pytest.mark.parametrize("name", [["default"], 5, b"default"], ids=repr)
    def test_watch_backend_must_be_a_name(self, store: Store, name: Any) -> None:
        refused(store, "backend", lambda: store.watch(0, backend=name, timeout=0))

    @pytest.mark.parametrize(
        "appends",
        [
            pytest.param(v, id=i)
            for i, v in [("str", "abc"), ("None", None), ("int", 5), ("bytes", b"x")]
        ],
    )
    def test_append_many_needs_a_list(self, store: Store, appends: Any) -> None:
        refused(store, "appends", lambda: store.events.append_many(appends))

    @pytest.mark.parametrize(
        ("events", "field"),
        [
            ("abc", "events"),
            (None, "events"),
            (b"x", "events"),
            (Event("T"), "events"),
            ([None], "events[0]"),
        ],
        ids=["str", "None", "bytes", "bare-event", "None-event"],
    )
    def test_append_needs_a_list_of_events(
        self, store: Store, astore: AsyncStore, events: Any, field: str
    ) -> None:
        refused(store, field, lambda: store.events.append("s", events))
        refused(store, field, lambda: run(astore.events.append("s", events)))

    @pytest.mark.parametrize(
        "bad", [pytest.param(v, id=str(v)) for v in ["1", b"1", [1], True, math.nan, -1]]
    )
    def test_watch_timeout_and_prefix(self, store: Store, bad: Any) -> None:
        refused(store, "timeout", lambda: store.watch(0, timeout=bad))
        refused(store, "timeout", lambda: store.events.subscribe(0, timeout=bad))
        if not isinstance(bad, str):
            refused(store, "prefix", lambda: store.namespace("v").watch(0, prefix=bad))


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run the CLI in-process against a fresh SQLite store: ``cli("put", "n", "k", "1")``."""
    from clawstate.cli import app

    for name in list(__import__("os").environ):
        if name.startswith("CLAWSTATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLAWSTATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("CLAWSTATE_KEYRING", f"file:{tmp_path / 'keys.json'}")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=input)

    invoke("put", "seed", "k", "1")  # the store exists from here on
    return invoke


def _store_of(tmp_path: Path) -> Store:
    return clawstate.open(f"sqlite:///{tmp_path / 'state.db'}", sweep_interval=0)


CLI_BAD_JSON = [
    pytest.param("NaN", id="NaN"),
    pytest.param("Infinity", id="Infinity"),
    pytest.param("-Infinity", id="-Infinity"),
    pytest.param("1e999", id="1e999"),
    pytest.param("-1e999", id="-1e999"),
    pytest.param('{"a": [1, NaN]}', id="nested-NaN"),
    pytest.param('{"a": {"b": 1e400}}', id="nested-1e400"),
    pytest.param('{"a": 1, "a": 2}', id="duplicate-name"),
    pytest.param('[{"x": {"b": 1, "b": 1}}]', id="nested-duplicate"),
]


class TestCLI:
    """The CLI parses JSON exactly as the HTTP API does, refuses what it refuses with
    exit status 2 and the field named, and always prints valid JSON."""

    @pytest.mark.parametrize("text", CLI_BAD_JSON)
    def test_put_refuses_what_http_refuses(
        self, cli: Callable[..., Any], tmp_path: Path, text: str
    ) -> None:
        r = cli("put", "n", "k", "--", text)  # "--": "-1e999" is not an option
        assert r.exit_code == 2, r.output
        assert "InvalidRequest: value:" in r.output
        r = cli("put", "n", "k", "-", input=text)
        assert r.exit_code == 2, r.output
        with _store_of(tmp_path) as s:
            assert s.namespace("n").get("k") is None

    @pytest.mark.parametrize("text", CLI_BAD_JSON)
    def test_events_append_refuses_what_http_refuses(
        self, cli: Callable[..., Any], tmp_path: Path, text: str
    ) -> None:
        doc = text if text.startswith("{") else f'{{"x": {text}}}'
        r = cli("events", "append", "s", "T", doc)
        assert r.exit_code == 2 and "InvalidRequest: data:" in r.output, r.output
        r = cli("events", "append", "s", "T", "{}", "--metadata", doc)
        assert r.exit_code == 2 and "InvalidRequest: metadata:" in r.output, r.output
        with _store_of(tmp_path) as s:
            assert s.events.last_position == 0

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            (["watch", "--from-seq", "99999999999999999999", "--timeout", "0"], "from_seq"),
            (["watch", "--from-seq", "-1", "--timeout", "0"], "from_seq"),
            (["delete", "seed", "k", "--if-version", str(2**63)], "if_version"),
            (["put", "seed", "k", "2", "--if-version", str(2**63)], "if_version"),
            (["scan", "seed", "--limit", "99999999999999999999"], "limit"),
            (["events", "read", "s", "--from-version", str(2**63)], "from_version"),
            (["events", "read", "s", "--limit", "0"], "limit"),
            (["events", "tail", "--from-position", "99999999999999999999"], "from_position"),
            (["events", "tail", "--from-position", "1_0", "--timeout", "0"], "from_position"),
            (
                ["events", "append", "s", "T", "--expected-version", str(2**63 + 1)],
                "expected_version",
            ),
            (["events", "append", "s", "T", "--expected-version", "1_0"], "expected_version"),
            (
                ["events", "append", "s", "T", "--schema-version", str(2**63)],
                "events[0].schema_version",
            ),
        ],
        ids=lambda v: " ".join(v) if isinstance(v, list) else v,
    )
    def test_integers_out_of_range_exit_2_naming_the_field(
        self, cli: Callable[..., Any], args: list[str], field: str
    ) -> None:
        r = cli(*args)
        assert r.exit_code == 2, r.output
        assert f"InvalidRequest: {field}:" in r.output, r.output

    def test_prints_valid_json_for_values_stored_before_the_policy(
        self, cli: Callable[..., Any], tmp_path: Path
    ) -> None:
        """``json.dumps`` printed ``NaN``, which no JSON reader accepts; the CLI prints
        what HTTP's JSON shows: null."""
        with _store_of(tmp_path) as s:
            data = b"\x01\x01" + msgspec.msgpack.encode({"x": math.nan, "y": [math.inf, 1.5]})
            s.backend.write(WriteUnit([Write("old", "k", OP_PUT, data)], s._clock()))
        r = cli("get", "old", "k", "--value")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output, parse_constant=lambda c: pytest.fail(c)) == {
            "x": None,
            "y": [None, 1.5],
        }

    def test_nested_bytes_print_as_bytes_docs(
        self, cli: Callable[..., Any], tmp_path: Path
    ) -> None:
        with _store_of(tmp_path) as s:
            s.namespace("b").put("k", {"raw": b"\x00\x01"})
        r = cli("get", "b", "k", "--value")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output) == {"raw": {"$bytes": "AAE="}}

    def test_valid_json_is_stored_as_before(self, cli: Callable[..., Any], tmp_path: Path) -> None:
        r = cli("put", "n", "k", '{"a": [1, 2.5, "x", null, true], "b": {"c": -0.0}}')
        assert r.exit_code == 0, r.output
        with _store_of(tmp_path) as s:
            got = s.namespace("n").get("k")
            assert got is not None and got.value == {
                "a": [1, 2.5, "x", None, True],
                "b": {"c": -0.0},
            }


# -- the msgpack duplicate-key check, both paths ---------------------------------------------


class _Pairs(list):  # type: ignore[type-arg]
    """A map as its wire pairs (duplicates kept), for the encoder below."""


def _mp(node: Any, draw: Any) -> bytes:
    """msgpack for ``node``, choosing canonical or wider encodings at random, so that
    both the fast path (canonical bytes) and the exact walk run."""
    from hypothesis import strategies as st

    wide = draw(st.booleans())
    if node is None:
        return b"\xc0"
    if node is True or node is False:
        return b"\xc3" if node else b"\xc2"
    if isinstance(node, int):
        if not wide and 0 <= node < 128:
            return bytes([node])
        return b"\xd3" + node.to_bytes(8, "big", signed=True)
    if isinstance(node, float):
        return (b"\xca" + struct.pack(">f", node)) if wide else (b"\xcb" + struct.pack(">d", node))
    if isinstance(node, str):
        raw = node.encode()
        if not wide and len(raw) < 32:
            return bytes([0xA0 | len(raw)]) + raw
        return b"\xd9" + bytes([len(raw)]) + raw
    if isinstance(node, _Pairs):
        n = len(node)
        head = bytes([0x80 | n]) if not wide and n < 16 else b"\xde" + n.to_bytes(2, "big")
        return head + b"".join(_mp(k, draw) + _mp(v, draw) for k, v in node)
    n = len(node)
    head = bytes([0x90 | n]) if not wide and n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return head + b"".join(_mp(x, draw) for x in node)


def _has_duplicate(node: Any) -> bool:
    if isinstance(node, _Pairs):
        keys = [k for k, _ in node]
        return len(set(keys)) != len(keys) or any(_has_duplicate(v) for _, v in node)
    if isinstance(node, list):
        return any(_has_duplicate(x) for x in node)
    return False


class TestMsgpackDuplicateKeys:
    """The check behind every msgpack body (``clawstate._wire.decode_body``): a map with
    a key twice is refused, whatever the encoding; nothing else is."""

    def test_random_trees_in_random_encodings(self) -> None:
        from hypothesis import given, settings
        from hypothesis import strategies as st

        from clawstate._wire import MSGPACK, decode_body

        leaves = st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**40), 2**40),
            st.sampled_from([0.5, 1.5, -2.25]),  # exact in float32 too
            st.text(alphabet="abé", max_size=3),
        )
        trees = st.recursive(
            leaves,
            lambda inner: st.one_of(
                st.lists(inner, max_size=4),
                st.lists(st.tuples(st.sampled_from(["a", "b", "c", "é"]), inner), max_size=4).map(
                    _Pairs
                ),
            ),
            max_leaves=12,
        )

        @settings(max_examples=600, deadline=None)
        @given(trees, st.data())
        def check(tree: Any, data: Any) -> None:
            body = _mp(tree, data.draw)
            if _has_duplicate(tree):
                with pytest.raises(InvalidRequest) as info:
                    decode_body(body, MSGPACK, "value")
                assert "duplicate map key" in str(info.value)
            else:
                decode_body(body, MSGPACK, "value")

        check()
