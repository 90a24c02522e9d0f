"""Declared indexes on the memory and Redis backends (issue 12).

* With and without ``indexes``, queries answer exactly as the Python evaluator
  (:func:`clawstate.query.run_query` over the same documents): a Hypothesis test over
  random documents, filters, sorts and page sizes, with TTL-expired rows that must
  never come back; and ``explain`` says ``index`` exactly when
  :func:`clawstate.query.serving_path` says a declared index serves the filter.
* The index follows every write: overwrite, delete, TTL expiry, the sweep's purge,
  a rewrap (key rotation and a rewrap that changes the stored bytes), a transaction.
* An index declared after data exists serves correctly after the backfill, which
  reports progress; on Redis a backfill cut short leaves it building (queries scan)
  and the next ``ensure_index`` resumes it; a writer that computed its entries before
  a declaration is made to resend.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clawstate
from _backends import DEFAULT_OPTIONS, Prefixes, prefixes, raw, redis_url
from clawstate.backends.base import OP_REWRAP, Write, WriteUnit
from clawstate.codec import Codec, CodecPolicy
from clawstate.query import parse_query, run_query, serving_path
from clawstate.testing.fakes import FakeClock

__all__ = ["prefixes", "raw"]

Opener = Callable[..., clawstate.Store]

INDEXED = ["a", "b", "a.0", "c.x"]


@pytest.fixture(params=["memory", "redis"])
def open_store(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """``open_store(**options)`` -> a fresh store on the parametrized backend."""
    opened: list[clawstate.Store] = []
    prefixes: Prefixes | None = None
    if request.param == "redis":
        prefixes = request.getfixturevalue("prefixes")

    def make(**options: Any) -> clawstate.Store:
        url = "memory://" if prefixes is None else redis_url(prefixes.new())
        store = clawstate.open(url, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _keys(store: clawstate.Store, ns: str, query: dict[str, Any]) -> list[str]:
    return [it.key for it in store.namespace(ns).query(query).items]


def _plan(store: clawstate.Store, ns: str, query: dict[str, Any]) -> clawstate.QueryPlan:
    plan = store.namespace(ns).query(query, explain=True).plan
    assert plan is not None
    return plan


def _index_leftovers(store: clawstate.Store) -> list[str]:
    """Index entries still held (a store whose items are all gone must hold none)."""
    backend: Any = store.backend
    if backend.name == "memory":
        left = [
            f"{index.name}: {token}"
            for per_ns in backend._indexes.values()
            for index in per_ns.values()
            for token, keys in index.values.items()
            if keys
        ]
        left += [
            f"{index.name}: opaque"
            for per_ns in backend._indexes.values()
            for index in per_ns.values()
            if index.opaque
        ]
        return left + [f"record {k}" for k in backend._records]
    raw = backend._r
    pattern = backend.prefix.replace("\\", "\\\\").replace("*", "\\*") + "q:*"
    return sorted(k.decode() for k in raw.scan_iter(match=pattern) if raw.exists(k))


# -- the model test ---------------------------------------------------------------------

# Small domains, so that equal values of different types (1, 1.0, True, "1") and
# escapes ("a\x00" vs "a\x01") meet often.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, 2**60 + 1, 1.0, 2.0, 0.5, float(2**60)]),
    st.sampled_from(["", "a", "b", "1", "é", "a\x00", "a\x01", "a\x01b"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["x", "0"]), inner, max_size=2)
    ),
    max_leaves=4,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3)
paths = st.sampled_from(["a", "b", "a.0", "c.x", "c"])
comparable = st.one_of(
    st.sampled_from([0, 1, 2, 1.0, 0.5, 2**60]),
    st.sampled_from(["", "a", "1", "é", "a\x00", "a\x01"]),
)
leaves = st.one_of(
    st.builds(lambda p, v: {"EQ": {p: v}}, paths, scalars),
    st.builds(lambda p, vs: {"IN": {p: vs}}, paths, st.lists(scalars, min_size=1, max_size=3)),
    st.builds(
        lambda op, p, v: {op: {p: v}},
        st.sampled_from(["GT", "GTE", "LT", "LTE"]),
        paths,
        comparable,
    ),
)
filters = st.recursive(
    leaves,
    lambda inner: st.builds(
        lambda op, fs: {op: fs},
        st.sampled_from(["AND", "OR"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=5,
)
_VOCAB: list[Any] = [None, True, False, 0, 1, 2, 2**60 + 1, 1.0, 0.5, float(2**60)]
_VOCAB += ["", "a", "1", "é", "a\x00", "a\x01", "a\x01b"]
BATTERY: list[dict[str, Any]] = [
    *({"EQ": {p: v}} for p in ("a", "a.0") for v in _VOCAB),
    *(
        {op: {p: v}}
        for op in ("GT", "GTE", "LT", "LTE")
        for p in ("a", "a.0")
        for v in (0, 1, 0.5, 2**60, "", "a", "a\x00", "a\x01")
    ),
    {"IN": {"a": [1, "1", True]}},
    {"OR": [{"EQ": {"a": 1}}, {"GT": {"b": "a"}}]},
]

sorts = st.lists(
    st.builds(lambda k, o: {"key": k, "order": o}, paths, st.sampled_from(["ASC", "DESC"])),
    max_size=2,
    unique_by=lambda s: s["key"],
)
# (document, expires: None / True = already expired when queried / False = still live)
rows_strategy = st.lists(
    st.tuples(documents, st.sampled_from([None, None, False, True])), max_size=30
)
_names = itertools.count()


def _expected_pages(query: dict[str, Any], rows: list[tuple[str, Any]]) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while True:
        page = dict(query["page"], **({"token": token} if token else {}))
        parsed = parse_query({**query, "page": page})
        run = run_query(parsed, [(k, d, k) for k, d in rows])
        pages.append(run.items)
        token = run.token
        if token is None:
            return pages


def _store_pages(ns: clawstate.Namespace, query: dict[str, Any]) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while True:
        page = dict(query["page"], **({"token": token} if token else {}))
        found = ns.query({**query, "page": page})
        pages.append([it.key for it in found.items])
        token = found.cursor
        if token is None:
            return pages


def test_queries_answer_as_the_evaluator_with_and_without_indexes(open_store: Opener) -> None:
    clock = FakeClock()
    plain = open_store(clock=clock)
    indexed = open_store(clock=clock, namespaces={"*": {"indexes": INDEXED}})
    ready = {tuple(p.split(".")) for p in INDEXED}

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        rows=rows_strategy,
        flt=st.one_of(st.none(), filters),
        sort=sorts,
        limit=st.integers(1, 7),
        extra=documents,
    )
    def check(
        rows: list[tuple[dict[str, Any], bool | None]],
        flt: dict[str, Any] | None,
        sort: list[dict[str, Any]],
        limit: int,
        extra: dict[str, Any],
    ) -> None:
        name = f"n{next(_names)}"
        live: list[tuple[str, Any]] = []
        for store in (plain, indexed):
            ns = store.namespace(name)
            for i, (doc, expires) in enumerate(rows):
                # overwrite some keys: the index must drop what the old value added
                ns.put(f"k{i:02d}", extra)
                ns.put(f"k{i:02d}", doc, ttl=None if expires is None else 10)
            if len(rows) > 2:
                ns.delete("k01")
        clock.advance(5)
        for i, (doc, expires) in enumerate(rows):
            if expires is True:
                for store in (plain, indexed):
                    store.namespace(name).put(f"k{i:02d}", doc, ttl=1)
            if not (len(rows) > 2 and i == 1) and expires is not True:
                live.append((f"k{i:02d}", doc))
        clock.advance(2)  # the ttl=1 rows are expired now, not swept
        # Every vocabulary value at both battery paths, in every example.
        fixed = [(f"v{i:02d}", {"a": v}) for i, v in enumerate(_VOCAB)]
        fixed += [(f"w{i:02d}", {"a": [v]}) for i, v in enumerate(_VOCAB)]
        for store in (plain, indexed):
            store.namespace(name).put_many(fixed)
        live += fixed
        query: dict[str, Any] = {"sort": sort, "page": {"limit": limit}}
        if flt is not None:
            query["filter"] = flt
        want = _expected_pages(query, live)
        for store in (plain, indexed):
            assert _store_pages(store.namespace(name), query) == want, store
        plan = indexed.namespace(name).query(query, explain=True).plan
        assert plan is not None
        served = serving_path(parse_query(query).filter, ready)
        assert (plan.strategy == "index") == (served is not None), (plan, query)
        if served is not None:
            assert plan.index is not None and plan.index.endswith("/" + ".".join(served))
        # Every leaf over the small vocabulary on two indexed paths, one page each:
        # equal values of different types and escaped strings meet here for sure.
        for leaf in BATTERY:
            one = {"filter": leaf, "page": {"limit": 100}}
            assert _store_pages(indexed.namespace(name), one) == _expected_pages(one, live), leaf

    check()


# -- maintenance ------------------------------------------------------------------------


def test_index_follows_overwrite_delete_expiry_and_sweep(open_store: Opener) -> None:
    clock = FakeClock()
    store = open_store(clock=clock, namespaces={"orders": {"indexes": ["status", "total"]}})
    ns = store.namespace("orders")
    ns.put("o1", {"status": "open", "total": 10})
    ns.put("o2", {"status": "open", "total": 20}, ttl=5)
    ns.put("o3", {"status": "paid", "total": 1})
    eq_open = {"filter": {"EQ": {"status": "open"}}}
    assert _keys(store, "orders", eq_open) == ["o1", "o2"]
    plan = _plan(store, "orders", eq_open)
    assert plan.strategy == "index" and plan.index == "orders/status" and plan.rows_read == 2

    ns.put("o1", {"status": "paid", "total": 30})  # overwrite: leaves "open"
    assert _keys(store, "orders", eq_open) == ["o2"]
    assert _keys(store, "orders", {"filter": {"EQ": {"status": "paid"}}}) == ["o1", "o3"]
    assert _keys(store, "orders", {"filter": {"GT": {"total": 15}}}) == ["o1", "o2"]
    assert _plan(store, "orders", {"filter": {"GT": {"total": 15}}}).strategy == "index"

    ns.delete("o3")
    assert _keys(store, "orders", {"filter": {"EQ": {"status": "paid"}}}) == ["o1"]

    clock.advance(10)  # o2 expired, not yet swept: the index still has it, the query not
    assert _keys(store, "orders", eq_open) == []
    assert _keys(store, "orders", {"filter": {"GT": {"total": 15}}}) == ["o1"]
    assert store.sweep()["expired"] == 1
    assert _keys(store, "orders", eq_open) == []

    ns.put("o1", {"status": "open", "total": "high"})  # a number becomes a string
    assert _keys(store, "orders", {"filter": {"GT": {"total": 15}}}) == []
    assert _keys(store, "orders", {"filter": {"GT": {"total": "a"}}}) == ["o1"]
    ns.delete("o1")
    assert _index_leftovers(store) == []
    problems, _ = store.backend.check()
    assert problems == []


def test_typed_values_stay_apart(open_store: Opener) -> None:
    store = open_store(namespaces={"t": {"indexes": ["v"]}})
    ns = store.namespace("t")
    values = {
        "int": 1,
        "float": 1.0,
        "str": "1",
        "true": True,
        "null": None,
        "big": 2**60 + 1,
        "bigf": float(2**60),
        "nul": "a\x00",
        "list": [1],
        "obj": {"v": 1},
    }
    for key, v in values.items():
        ns.put(key, {"v": v})
    ns.put("missing", {"w": 1})
    assert _keys(store, "t", {"filter": {"EQ": {"v": 1}}}) == ["float", "int"]
    assert _keys(store, "t", {"filter": {"EQ": {"v": "1"}}}) == ["str"]
    assert _keys(store, "t", {"filter": {"EQ": {"v": True}}}) == ["true"]
    assert _keys(store, "t", {"filter": {"EQ": {"v": None}}}) == ["null"]
    assert _keys(store, "t", {"filter": {"EQ": {"v": 2**60 + 1}}}) == ["big"]
    assert _keys(store, "t", {"filter": {"EQ": {"v": float(2**60)}}}) == ["bigf"]
    assert _keys(store, "t", {"filter": {"GT": {"v": 2**60}}}) == ["big"]
    assert _keys(store, "t", {"filter": {"IN": {"v": [True, "a\x00", 7]}}}) == ["nul", "true"]
    assert _keys(store, "t", {"filter": {"LT": {"v": "a"}}}) == ["str"]
    assert _keys(store, "t", {"filter": {"GTE": {"v": "a"}}}) == ["nul"]


def test_transaction_writes_are_indexed(open_store: Opener) -> None:
    store = open_store(namespaces={"*": {"indexes": ["s"]}})
    store.namespace("a").put("x", {"s": "old"})
    with store.transaction() as tx:
        tx.namespace("a").put("x", {"s": "new"})
        tx.namespace("a").put("y", {"s": "new"})
        tx.namespace("b").put("z", {"s": "new"})
        tx.namespace("a").delete("y")
    assert _keys(store, "a", {"filter": {"EQ": {"s": "new"}}}) == ["x"]
    assert _keys(store, "a", {"filter": {"EQ": {"s": "old"}}}) == []
    assert _keys(store, "b", {"filter": {"EQ": {"s": "new"}}}) == ["z"]
    assert _plan(store, "b", {"filter": {"EQ": {"s": "new"}}}).strategy == "index"


def test_encrypted_values_are_opaque_candidates_across_key_rotation(
    open_store: Opener, tmp_path: Path
) -> None:
    store = open_store(
        namespaces={"vault": {"encrypt": True, "indexes": ["owner"]}},
        keyring=f"file:{tmp_path / 'keys.json'}",
    )
    ns = store.namespace("vault")
    ns.put_many([("s1", {"owner": "ann"}), ("s2", {"owner": "bob"}), ("s3", {"x": 1})])
    query = {"filter": {"EQ": {"owner": "ann"}}}
    assert _keys(store, "vault", query) == ["s1"]
    plan = _plan(store, "vault", query)
    assert plan.strategy == "index" and plan.rows_read == 3  # every opaque row is a candidate
    if store.backend.name == "redis":
        raw: Any = store.backend._r
        for key in raw.scan_iter(match=store.backend.prefix + "q:*"):  # type: ignore[attr-defined]
            for member in raw.zrange(key, 0, -1):
                assert b"ann" not in member  # no plaintext leaks into an index
    assert store.rotate_keys()["rewrapped"] == 3
    assert _keys(store, "vault", query) == ["s1"]
    ns.delete("s1")
    assert _keys(store, "vault", query) == []
    ns.delete("s2")
    ns.delete("s3")
    assert _index_leftovers(store) == []


def test_a_rewrap_reindexes_the_new_bytes(open_store: Opener) -> None:
    store = open_store(namespaces={"r": {"indexes": ["v"]}})
    ns = store.namespace("r")
    ns.put("k", {"v": "before"})
    st_item = store.backend.get("r", "k", 2e9)
    assert st_item is not None
    data = Codec(CodecPolicy()).encode("r", "k", {"v": "after"})
    write = Write("r", "k", OP_REWRAP, data, if_version=st_item.version, seq=st_item.seq)
    (outcome,) = store.backend.write(WriteUnit([write], 1.0))
    assert outcome.applied
    assert _keys(store, "r", {"filter": {"EQ": {"v": "before"}}}) == []
    assert _keys(store, "r", {"filter": {"EQ": {"v": "after"}}}) == ["k"]


# -- declaring indexes over existing data -----------------------------------------------


def test_index_declared_after_data_is_backfilled_with_progress(open_store: Opener) -> None:
    store = open_store()
    ns = store.namespace("late")
    for start in range(0, 1234, 500):
        ns.put_many(
            [
                (f"k{i:04d}", {"u": f"u{i % 7}", "n": i})
                for i in range(start, min(start + 500, 1234))
            ]
        )
    ns.put("enc-less", b"raw bytes")
    query = {"filter": {"EQ": {"u": "u3"}}, "page": {"limit": 1000}}
    before = _keys(store, "late", query)
    assert _plan(store, "late", query).strategy == "scan"
    calls: list[tuple[int, int]] = []
    names = store.backend.ensure_index(
        "late", ["u", "n"], progress=lambda d, t: calls.append((d, t))
    )
    assert names == ["late/u", "late/n"]
    assert calls and calls[-1][0] == calls[-1][1] == 1235
    assert _keys(store, "late", query) == before and len(before) == 176
    plan = _plan(store, "late", query)
    assert plan.strategy == "index" and plan.index == "late/u" and plan.rows_read == 176
    rng = {"filter": {"AND": [{"GTE": {"n": 100}}, {"LT": {"n": 110}}]}}
    assert _keys(store, "late", rng) == [f"k{i:04d}" for i in range(100, 110)]
    assert store.backend.ensure_index("late", ["u"]) == ["late/u"]  # idempotent


def test_redis_backfill_resumes_after_a_kill_and_stale_writers_resend(
    prefixes: Prefixes,
) -> None:
    from clawstate.backends.redis import backend as redis_backend

    url = redis_url(prefixes.new())
    store = clawstate.open(url, **DEFAULT_OPTIONS)
    other = clawstate.open(url, **DEFAULT_OPTIONS)  # another process's view
    try:
        ns = store.namespace("big")
        for start in range(0, 1200, 600):
            ns.put_many([(f"k{i:04d}", {"u": f"u{i % 5}"}) for i in range(start, start + 600)])
        other.namespace("big").put("warm", {"u": "u1"})  # caches "no indexes"
        backend: Any = store.backend

        # A backfill killed after its first chunk: the index stays building.
        real = backend._evalsha
        calls = 0

        def dying(script: Any, args: Any) -> Any:
            nonlocal calls
            if script is redis_backend._BACKFILL:
                calls += 1
                if calls == 2:
                    raise KeyboardInterrupt("killed")
            return real(script, args)

        backend._evalsha = dying
        with pytest.raises(KeyboardInterrupt):
            backend.ensure_index("big", ["u"])
        backend._evalsha = real
        state = backend._r.hget(backend.prefix + "qdef:big", "u")
        assert state == b"b"
        query = {"filter": {"EQ": {"u": "u1"}}, "page": {"limit": 1000}}
        assert _plan(store, "big", query).strategy == "scan"  # building: not used

        # A writer that never heard of the index is refused by the script and resends.
        other.namespace("big").put("k0001", {"u": "u4"})
        other.namespace("big").put("late", {"u": "u1"})

        calls_seen: list[tuple[int, int]] = []
        backend.ensure_index("big", ["u"], progress=lambda d, t: calls_seen.append((d, t)))
        assert calls_seen[0][0] > 500  # resumed after the first chunk, not from 0
        plan = _plan(store, "big", query)
        assert plan.strategy == "index"
        want = sorted([f"k{i:04d}" for i in range(1200) if i % 5 == 1 and i != 1])
        assert _keys(store, "big", query) == sorted([*want, "late", "warm"])
        assert _keys(other, "big", query) == sorted([*want, "late", "warm"])
        assert store.backend.check()[0] == []
    finally:
        store.close()
        other.close()


def test_redis_two_declared_indexes_keep_check_clean(prefixes: Prefixes) -> None:
    clock = FakeClock()
    store = clawstate.open(
        redis_url(prefixes.new()),
        clock=clock,
        namespaces={"*": {"indexes": ["user", "total"]}},
        **DEFAULT_OPTIONS,
    )
    try:
        ns = store.namespace("orders")
        ns.put_many([(f"o{i}", {"user": f"u{i % 3}", "total": i}) for i in range(50)])
        for i in range(0, 50, 3):
            ns.put(f"o{i}", {"user": "moved", "total": -i}, ttl=1)
        clock.advance(2)
        store.sweep()
        got = _keys(store, "orders", {"filter": {"EQ": {"user": "u1"}}})
        assert got == sorted(f"o{i}" for i in range(50) if i % 3 == 1)
        assert store.backend.check()[0] == []
        # check() recomputes the entries from the values: a lost entry is reported
        backend: Any = store.backend
        index = backend._indexes.get("orders").ready[("user",)]
        backend._r.zrem(index.zlex, "su1\x00o1")
        problems = store.backend.check()[0]
        assert any("disagrees" in p and index.zlex in p for p in problems), problems
        ns.put("o1", {"user": "u2", "total": 1})  # the overwrite repairs nothing it lost…
        ns.put("o1", {"user": "u1", "total": 1})  # …but a rewrite puts it back
        assert store.backend.check()[0] == []
        assert _keys(store, "orders", {"filter": {"EQ": {"user": "moved"}}}) == []
        for i in range(50):
            ns.delete(f"o{i}")
        assert _index_leftovers(store) == []
        assert store.backend.check()[0] == []
    finally:
        store.close()
