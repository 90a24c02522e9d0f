"""Fuzz pass over the embedded API: every public Store / Namespace / EventStore method
called with generated arguments of every type.

Why: the embedded API is the one every transport ends in, and a Python caller can pass
anything — a ``str`` where a list of keys belongs, ``2**64`` as a version, NaN in a
value, a dict with non-string keys, a generator.  The contract (DESIGN.md, principle 3)
is that bad input raises :class:`clawstate.InvalidRequest` (or another
``ClawStateError``) and changes nothing.  The oracles, on every call:

* an exception outside the ``ClawStateError`` tree is a failure;
* a call refused with a ``ClawStateError`` must leave the store as it was: the change
  log's ``last_seq``, the event log's ``last_position`` and every item the fuzzer can
  write are compared before and after;
* an accepted ``put`` must read back exactly (a value the store cannot keep exactly —
  NaN, infinities, integers beyond 64 bits — must be refused, not altered);
* an argument of a type the signature does not take (a ``str`` for ``keys``, a ``bool``
  or ``"yes"`` for a flag, a float version) must be refused, not coerced.

Failures are collected, one per method and cause with its smallest input, and reported
together.  The count of calls is printed and appended to ``CLAWSTATE_TEST_FUZZ_REPORT``
when set.  ``CLAWSTATE_TEST_FUZZ_EMBEDDED`` sets the examples per backend in
``make test``; the ``slow`` test runs ``CLAWSTATE_TEST_FUZZ_EMBEDDED_SLOW``.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clawstate
from clawstate.errors import ClawStateError
from clawstate.events.store import EventFilter

FAST_EXAMPLES = int(os.environ.get("CLAWSTATE_TEST_FUZZ_EMBEDDED", "1500"))
SLOW_EXAMPLES = int(os.environ.get("CLAWSTATE_TEST_FUZZ_EMBEDDED_SLOW", "40000"))

KEYS = ["k1", "k2", "k3", "", "a/b", "\u00e9", "x" * 1024, "x" * 1025, "\x00", "\ud800", " "]
NAMESPACES = ["fz", "fz2", "vault", "", "_tokens", "A" * 129, "a b", "\x00", "..", "*"]
STREAMS = ["fz-1", "fz-2", "", "a" * 1025, "\x00", "\ud800"]
HUGE = [2**63 - 1, 2**63, 2**63 + 1, 2**64, 10**30, -1, -(2**63) - 1, -(10**30)]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]


class Weird:
    """An object no API takes."""

    def __repr__(self) -> str:
        return "Weird()"


def _gen() -> Iterator[str]:
    yield "k1"


#: Values of every type a caller could pass where some other type belongs.
anything = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            2,
            *HUGE,
            *NON_FINITE,
            1.5,
            -0.0,
            "",
            "abc",
            "yes",
            "1",
            b"k1",
            bytearray(b"x"),
            [],
            {},
            set(),
            (),
            ["k1"],
            ("k1", 1),
            ("k1", 1, 2),
            {"k1": 1},
            {1: 2},
            {("t",): 1},
            Decimal("1.5"),
            Decimal("NaN"),
            1j,
            Weird(),
            object,
            len,
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five: most calls get past the first check and reach the
    store, where the deeper defects are."""
    return st.sampled_from([True] * 4 + [False]).flatmap(lambda ok: good if ok else bad)


key = mostly(
    st.sampled_from(KEYS[:3]), st.one_of(st.sampled_from(KEYS), st.text(max_size=6), anything)
)
ns_name = mostly(st.sampled_from(NAMESPACES[:2]), st.one_of(st.sampled_from(NAMESPACES), anything))
stream = mostly(st.sampled_from(STREAMS[:2]), st.one_of(st.sampled_from(STREAMS), anything))
version = mostly(
    st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.sampled_from(HUGE), anything)
)
ttl = mostly(
    st.sampled_from([None, 1, 0.5, 3600]), st.one_of(st.sampled_from([0, -1, 10**30]), anything)
)
flag = mostly(st.booleans(), anything)
idem = mostly(
    st.sampled_from([None, "i1", "i2"]), st.one_of(st.sampled_from(["", "k" * 257]), anything)
)


def _deep(depth: int, leaf: Any) -> Any:
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


good_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
bad_leaf = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.sampled_from([*HUGE, *NON_FINITE, Decimal("1"), b"\x00", Weird(), 1j]),
)
json_leaf = st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: good_leaf if ok else bad_leaf)
json_value = st.recursive(
    json_leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=3),
        st.dictionaries(st.text(max_size=4), c, max_size=3),
        st.lists(c, max_size=3),
        st.dictionaries(st.text(max_size=4), c, max_size=3),
        st.dictionaries(st.sampled_from([1, None, (1,), b"k"]), c, max_size=2),
        st.tuples(c, c),
    ),
    max_leaves=8,
)
value = st.one_of(
    json_value,
    json_value,
    st.builds(_deep, st.sampled_from([10, 200, 1000, 5000]), json_leaf),
    st.builds(lambda n: "x" * n, st.sampled_from([10, 1 << 20, (1 << 20) + 1])),
)
event = mostly(
    st.builds(
        clawstate.Event,
        st.sampled_from(["Created", "Paid"]),
        st.dictionaries(st.text(max_size=3), json_value, max_size=2),
    ),
    st.one_of(
        st.builds(
            clawstate.Event,
            st.one_of(st.sampled_from(["Created", "$deleted", ""]), anything),
            st.one_of(st.dictionaries(st.text(max_size=3), json_value, max_size=2), anything),
            st.one_of(st.none(), st.just({"correlation_id": "c"}), anything),
            st.one_of(
                st.sampled_from(["0190a6f1-5b1c-7000-8000-000000000001", "not-a-uuid", ""]),
                anything,
            ),
            st.one_of(st.sampled_from([1, 2]), st.sampled_from(HUGE), anything),
        ),
        anything,
    ),
)
events = mostly(st.lists(event, max_size=3), anything)
expected = st.one_of(
    st.sampled_from([clawstate.ANY, clawstate.NO_STREAM, clawstate.STREAM_EXISTS]),
    st.integers(-1, 4),
    st.sampled_from(HUGE),
    anything,
)
keys = st.one_of(st.lists(key, max_size=4), st.sampled_from(["abc", "k1"]), anything)
pairs = st.one_of(
    st.lists(st.tuples(key, value), max_size=3),
    st.dictionaries(st.sampled_from(KEYS[:3]), value, max_size=3),
    st.lists(anything, max_size=3),
    anything,
)
query = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "filter": st.one_of(
                st.builds(lambda v: {"EQ": {"a": v}}, json_value),
                st.builds(lambda v: {"IN": {"a": v}}, json_value),
                st.builds(lambda v: {"AND": v}, st.lists(json_value, max_size=2)),
                anything,
            ),
            "sort": st.one_of(st.lists(st.fixed_dictionaries({"key": key}), max_size=2), anything),
            "page": st.one_of(st.fixed_dictionaries({"limit": version}), anything),
        },
    ),
    anything,
)
evfilter = st.one_of(
    st.none(),
    st.builds(
        EventFilter, st.one_of(st.text(max_size=3), anything), st.one_of(st.tuples(), anything)
    ),
    anything,
)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist = 4, 60, 60, 6


@dataclass
class Call:
    """One generated call: a method name and its arguments."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: why this call must be refused (an argument of a type the signature does not take)
    must_refuse: str | None = None

    def show(self) -> str:
        def short(v: Any) -> str:
            return _REPR.repr(v)  # bounded: a value nested 5,000 deep has no plain repr

        parts = [short(a) for a in self.args] + [f"{k}={short(v)}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"

    def size(self) -> int:
        return len(self.show())


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad_version(v: Any) -> bool:
    return v is not None and not (_is_int(v) and 0 <= v < 2**63)


def _bad_flag(v: Any) -> bool:
    return not isinstance(v, bool)


def _bad_keys(v: Any) -> bool:
    return isinstance(v, str | bytes | bytearray | dict) or not hasattr(v, "__iter__")


def _non_finite(v: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, list | tuple):
        return any(_non_finite(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return any(_non_finite(x, depth + 1) for x in v.values())
    return False


@st.composite
def calls(draw: st.DrawFn) -> Call:
    which = draw(st.sampled_from(METHODS))
    return which(draw)


def _ns_call(draw: st.DrawFn) -> Call:
    return Call("ns.get", (draw(key),), {})


def c_get_many(draw: st.DrawFn) -> Call:
    k = draw(keys)
    return Call(
        "ns.get_many", (k,), {}, "keys is not a collection of keys" if _bad_keys(k) else None
    )


def c_scan(draw: st.DrawFn) -> Call:
    kw = {}
    if draw(st.booleans()):
        kw["prefix"] = draw(st.one_of(st.sampled_from(["", "k"]), anything))
    if draw(st.booleans()):
        kw["limit"] = draw(version)
    if draw(st.booleans()):
        kw["cursor"] = draw(st.one_of(st.none(), st.text(max_size=8), anything))
    return Call("ns.scan", (), kw)


def c_query(draw: st.DrawFn) -> Call:
    return Call("ns.query", (draw(query),), {})


def c_count(draw: st.DrawFn) -> Call:
    return Call("ns.count", (), {})


def c_put(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        kw["ttl"] = draw(ttl)
    if draw(st.integers(0, 2)) == 0:
        kw["if_version"] = draw(version)
    if draw(st.integers(0, 3)) == 0:
        kw["if_absent"] = draw(flag)
    if draw(st.integers(0, 3)) == 0:
        kw["idempotency_key"] = draw(idem)
    why = None
    if "if_version" in kw and _bad_version(kw["if_version"]):
        why = "if_version is not a version"
    if "if_absent" in kw and _bad_flag(kw["if_absent"]):
        why = "if_absent is not a bool"
    return Call("ns.put", (draw(key), draw(value)), kw, why)


def c_put_many(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        kw["ttl"] = draw(ttl)
    if draw(st.integers(0, 3)) == 0:
        kw["idempotency_key"] = draw(idem)
    items = draw(pairs)
    why = None
    if isinstance(items, str | bytes) or (
        isinstance(items, list) and any(not (isinstance(p, tuple) and len(p) == 2) for p in items)
    ):
        why = "items are not (key, value) pairs"
    return Call("ns.put_many", (items,), kw, why)


def c_delete(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["if_version"] = draw(version)
    if draw(st.integers(0, 3)) == 0:
        kw["idempotency_key"] = draw(idem)
    why = "if_version is not a version" if _bad_version(kw.get("if_version")) else None
    return Call("ns.delete", (draw(key),), kw, why)


def c_ns_watch(draw: st.DrawFn) -> Call:
    return Call(
        "ns.watch",
        (draw(version),),
        {"prefix": draw(st.one_of(st.just(""), anything)), "timeout": draw(ttl)},
    )


def c_namespace(draw: st.DrawFn) -> Call:
    return Call("store.namespace", (draw(ns_name),), {})


def c_namespace_options(draw: st.DrawFn) -> Call:
    opts = draw(
        st.dictionaries(
            st.sampled_from(
                # "self" and "name" once collided with namespace()'s own parameters
                # (a bare TypeError, found by this pass); now unknown options
                [
                    "self",
                    "name",
                    "encrypt",
                    "cache",
                    "compress_above",
                    "compression_level",
                    "serializer",
                    "default_ttl",
                    "cache_l2",
                    "bogus",
                ]
            ),
            anything,
            max_size=2,
        )
    )
    return Call("store.namespace_options", ("fzopt",), opts)


def c_tx(draw: st.DrawFn) -> Call:
    writes = []
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["put", "delete", "append"]))
        if op == "put":
            kw: dict[str, Any] = {}
            if draw(st.booleans()):
                kw["if_version"] = draw(version)
            if draw(st.integers(0, 3)) == 0:
                kw["if_absent"] = draw(flag)
            if draw(st.integers(0, 3)) == 0:
                kw["ttl"] = draw(ttl)
            writes.append(("put", draw(ns_name), draw(key), draw(value), kw))
        elif op == "delete":
            writes.append(("delete", draw(ns_name), draw(key), None, {"if_version": draw(version)}))
        else:
            writes.append(
                ("append", draw(stream), draw(events), None, {"expected_version": draw(expected)})
            )
    why = None
    for w in writes:
        if _bad_version(w[4].get("if_version")):
            why = "if_version is not a version"
        if "if_absent" in w[4] and _bad_flag(w[4]["if_absent"]):
            why = "if_absent is not a bool"
    return Call("store.transaction", (writes,), {"idempotency_key": draw(idem)}, why)


def c_store_watch(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["namespace"] = draw(st.one_of(st.none(), ns_name))
    if draw(st.booleans()):
        kw["prefix"] = draw(st.one_of(st.just(""), anything))
    if draw(st.booleans()):
        kw["backend"] = draw(st.one_of(st.none(), st.sampled_from(["default", "x"]), anything))
    return Call("store.watch", (draw(version),), kw)


def c_admin(draw: st.DrawFn) -> Call:
    return Call(draw(st.sampled_from(["store.sweep", "store.stats", "store.namespaces"])), (), {})


def c_append(draw: st.DrawFn) -> Call:
    kw = {}
    if draw(st.booleans()):
        kw["expected_version"] = draw(expected)
    return Call("events.append", (draw(stream), draw(events)), kw)


def c_append_many(draw: st.DrawFn) -> Call:
    appends = draw(
        st.one_of(
            st.lists(st.tuples(stream, events, expected), max_size=3),
            st.lists(anything, max_size=2),
            anything,
        )
    )
    return Call("events.append_many", (appends,), {})


def c_read(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["backwards"] = draw(flag)
    if draw(st.booleans()):
        kw["limit"] = draw(version)
    return Call("events.read", (draw(stream), draw(version)), kw)


def c_read_all(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["limit"] = draw(version)
    if draw(st.booleans()):
        kw["filter"] = draw(evfilter)
    return Call("events.read_all", (draw(version),), kw)


def c_metadata(draw: st.DrawFn) -> Call:
    if draw(st.booleans()):
        return Call("events.stream_metadata", (draw(stream),), {})
    kw = {
        name: draw(strat)
        for name, strat in (
            ("max_age", ttl),
            ("max_count", version),
            ("truncate_before", version),
            ("expected_version", expected),
        )
        if draw(st.booleans())
    }
    return Call("events.set_stream_metadata", (draw(st.sampled_from(["fz-meta", ""])),), kw)


def c_delete_stream(draw: st.DrawFn) -> Call:
    return Call(
        "events.delete_stream",
        (draw(st.one_of(st.just("fz-del"), stream)),),
        {"expected_version": draw(expected)},
    )


def c_subscribe(draw: st.DrawFn) -> Call:
    kw: dict[str, Any] = {"timeout": 0}
    if draw(st.booleans()):
        kw["filter"] = draw(evfilter)
    if draw(st.booleans()):
        kw["batch"] = draw(version)
    return Call(
        "events.subscribe",
        (draw(st.one_of(version, st.just("end"), anything)),),
        kw,
    )


METHODS: list[Callable[[st.DrawFn], Call]] = [
    _ns_call,
    c_get_many,
    c_scan,
    c_query,
    c_count,
    c_put,
    c_put,
    c_put,
    c_put_many,
    c_delete,
    c_ns_watch,
    c_namespace,
    c_namespace_options,
    c_tx,
    c_tx,
    c_store_watch,
    c_admin,
    c_append,
    c_append,
    c_append_many,
    c_read,
    c_read_all,
    c_metadata,
    c_delete_stream,
    c_subscribe,
]


# -- running a call ----------------------------------------------------------------------


def _plain(v: Any, depth: int = 0) -> Any:
    """``v`` as a JSON-like reader sees it: tuples are lists."""
    if depth > 6000:
        return v
    if isinstance(v, tuple | list):
        return [_plain(x, depth + 1) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x, depth + 1) for k, x in v.items()}
    return v


def execute(store: clawstate.Store, call: Call) -> Any:
    """Runs ``call`` against ``store``; consumes lazy results (watch, subscribe)."""
    ns = store.namespace("fz")
    name = call.method
    if name.startswith("ns."):
        fn = getattr(ns, name[3:])
        result = fn(*call.args, **call.kwargs)
        if name == "ns.watch":
            try:
                result.poll()
            finally:
                result.close()
        return result
    if name == "store.namespace_options":
        return store.namespace(*call.args, **call.kwargs)
    if name == "store.transaction":
        writes = call.args[0]
        with store.transaction(**call.kwargs) as tx:
            for op, where, k, v, kw in writes:
                if op == "put":
                    tx.namespace(where).put(k, v, **kw)
                elif op == "delete":
                    tx.namespace(where).delete(k, **kw)
                else:
                    tx.events.append(where, k, **kw)
        return None
    if name == "store.watch":
        w = store.watch(*call.args, **call.kwargs)
        try:
            w.poll()
        finally:
            w.close()
        return None
    if name.startswith("store."):
        return getattr(store, name[6:])(*call.args, **call.kwargs)
    if name == "events.subscribe":
        sub = store.events.subscribe(*call.args, **call.kwargs)
        try:
            sub.poll()
        finally:
            close = getattr(sub, "close", None)
            if close is not None:
                close()
        return None
    return getattr(store.events, name[7:])(*call.args, **call.kwargs)


def fingerprint(store: clawstate.Store) -> tuple[Any, ...]:
    """What a refused call must not change."""
    ns = store.namespace("fz")
    items = ns.get_many(["k1", "k2", "k3"])
    return (
        store.last_seq,
        store.events.last_position,
        {k: (i.version, i.etag, i.expires_at) for k, i in items.items()},
    )


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "/clawstate/" in frame.filename:
            return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


@dataclass
class Ledger:
    name: str
    tried: int = 0
    refused: int = 0
    started: float = field(default_factory=time.monotonic)
    failures: dict[str, tuple[Call, str]] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def fail(self, sig: str, call: Call, detail: str) -> None:
        old = self.failures.get(sig)
        if old is None or call.size() < old[0].size():
            self.failures[sig] = (call, detail)

    def report(self) -> str:
        lines = [f"{len(self.failures)} distinct failure(s) over {self.tried} calls:"]
        for sig, (call, detail) in self.failures.items():
            lines.append(f"- {sig}\n    input: {call.show()}\n    detail: {detail[:400]}")
        return "\n".join(lines)

    def publish(self) -> None:
        line = {
            "suite": self.name,
            "inputs": self.tried,
            "refused": self.refused,
            "failures": len(self.failures),
            "seconds": round(time.monotonic() - self.started, 1),
            "top_refusals": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])[:6]),
        }
        print(f"\nfuzz {json.dumps(line)}")
        target = os.environ.get("CLAWSTATE_TEST_FUZZ_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")


def check_call(store: clawstate.Store, call: Call, ledger: Ledger) -> None:
    """Every oracle of the module docstring, on one call."""
    ledger.tried += 1
    clock = CLOCKS.get(id(store))
    if clock is not None:
        clock.now += 0.25
    before = fingerprint(store)
    try:
        result = execute(store, call)
    except ClawStateError as exc:
        ledger.refused += 1
        why = f"{type(exc).__name__}:{getattr(exc, 'field', '')}"
        ledger.reasons[why] = ledger.reasons.get(why, 0) + 1
        after = fingerprint(store)
        if after != before:
            ledger.fail(
                f"{call.method}: refused ({type(exc).__name__}) but changed the store",
                call,
                f"{exc}; before {before} after {after}",
            )
        return
    except RecursionError as exc:
        ledger.fail(f"{call.method}: RecursionError {_where(exc)}", call, repr(exc)[:300])
        return
    except Exception as exc:
        ledger.fail(f"{call.method}: {type(exc).__name__} {_where(exc)}", call, repr(exc)[:300])
        return
    if call.must_refuse:
        ledger.fail(f"{call.method}: accepted ({call.must_refuse})", call, repr(result)[:200])
    if call.method == "ns.put" and isinstance(result, clawstate.Item):
        stored = store.namespace("fz").get(result.key)
        sent = _plain(call.args[1])
        if stored is not None and stored.version == result.version and stored.value != sent:
            ledger.fail(
                "ns.put: the value read back differs from the value written",
                call,
                f"read {stored.value!r}"[:300],
            )


def run_fuzz(store: clawstate.Store, ledger: Ledger, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(calls())
    def one(call: Call) -> None:
        check_call(store, call, ledger)

    try:
        one()
    finally:
        ledger.publish()
    assert not ledger.failures, ledger.report()
    assert store.check().ok


class Tick:
    """The store's clock: it moves only between calls (by a quarter second), so an item
    cannot expire between the two fingerprints of one call, yet TTLs do run out."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


CLOCKS: dict[int, Tick] = {}


def _open(tmp: Path, backend: str) -> clawstate.Store:
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp}/state.db"
    clock = Tick()
    store = clawstate.open(
        url,
        clock=clock,
        keyring=f"file:{tmp}/keyring.json",
        sweep_interval=0,
        namespaces={"vault": {"encrypt": True}, "fz2": {"compress_above": 8}},
    )
    CLOCKS[id(store)] = clock
    return store


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_fuzz_embedded(tmp_path: Path, backend: str) -> None:
    """Every public method, generated arguments: only ClawStateErrors, and a refused call
    changes nothing."""
    store = _open(tmp_path, backend)
    try:
        run_fuzz(store, Ledger(f"embedded-{backend}"), FAST_EXAMPLES)
    finally:
        store.close()


def slow_size(request: pytest.FixtureRequest, large: int, small: int) -> int:
    """``large`` when the slow tests were asked for (``pytest -m slow``), else ``small``:
    ``make test`` runs every test, so the large runs shrink there instead of skipping."""
    return large if slow_selected(request) else small


def slow_selected(request: pytest.FixtureRequest) -> bool:
    """Whether ``-m`` asked for the slow tests (``make slow``: ``-m slow``)."""
    expr = request.config.getoption("markexpr") or ""
    return "slow" in expr and "not slow" not in expr


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_embedded_large(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The large run quoted in docs/reliability.md (SQLite)."""
    store = _open(tmp_path, "sqlite")
    try:
        run_fuzz(
            store, Ledger("embedded-slow"), slow_size(request, SLOW_EXAMPLES, FAST_EXAMPLES // 5)
        )
    finally:
        store.close()


def test_oracle_catches_a_foreign_exception_and_a_coercion(tmp_path: Path) -> None:
    """The checks can fail: a TypeError, an accepted wrong type and a changed store
    are each reported."""
    store = _open(tmp_path, "memory")
    try:
        ledger = Ledger("self-test")
        boom = Call("store.namespace_options", ("fzopt",), {})

        def raising(_store: clawstate.Store, _call: Call) -> Any:
            raise TypeError("boom")

        global execute
        real = execute
        execute = raising
        try:
            check_call(store, boom, ledger)
        finally:
            execute = real
        assert any("TypeError" in sig for sig in ledger.failures)
        check_call(store, Call("ns.count", (), {}, "a test reason"), ledger)
        assert any("accepted (a test reason)" in sig for sig in ledger.failures)
    finally:
        store.close()
