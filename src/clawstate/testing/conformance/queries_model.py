"""Queries against a model: every backend, with and without declared indexes, answers
exactly as the Python evaluator does over a dict of what the store holds.

Why a model test: a query compiler (SQL on SQLite and PostgreSQL, index sets on Redis,
dicts in memory) re-expresses the evaluator's typed semantics — numbers never equal
strings, ``true`` never equals ``1``, a missing path is not ``null``, the total sort
order across types — in another engine, and each rule is a place to drift.  Here
Hypothesis writes random documents (mixed types, nested paths, arrays, non-ASCII
strings), expires some by TTL, and asks random filters and sorts page by page while
other writes land between pages; each page, items *and* next-page token, must equal
:func:`clawstate.query.run_query` over the model's live rows at that moment.  The
same programs run on a store whose every namespace declares indexes on the queried
paths, so indexed plans are held to the same answers as scans.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawstate import Store
from clawstate.query import parse_query, run_query
from clawstate.testing.fakes import FakeClock

from .helpers import StoreFactory

#: The paths documents hold and queries name; ``"gone"`` is never written (missing).
_PATHS = ("a", "b.c", "n", "t.0", "gone")
#: Declared on every namespace of the indexed store.
_INDEXED = ["a", "b.c", "n"]
_KEYS = [f"k{i:02d}" for i in range(16)] + ["é1", "Z"]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.5, -1.5]),
    st.sampled_from(["", "x", "y", "é", "Z", "10", "xy"]),
)
_values = st.fixed_dictionaries(
    {},
    optional={
        "a": _scalars,
        "b": st.one_of(st.fixed_dictionaries({}, optional={"c": _scalars}), _scalars),
        "n": st.one_of(st.integers(-3, 3), st.sampled_from([2.5, "3"])),
        "t": st.lists(_scalars, max_size=2),
    },
)
_writes = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.sampled_from(_KEYS),
            _values,
            st.one_of(st.none(), st.integers(1, 20)),
        ),
        st.tuples(st.just("delete"), st.sampled_from(_KEYS)),
        st.tuples(st.just("advance"), st.integers(1, 15)),
    ),
    max_size=25,
)
#: The writes before the first page: enough rows that pages, ties and expiry matter.
_setup = st.lists(
    st.tuples(
        st.just("put"), st.sampled_from(_KEYS), _values, st.one_of(st.none(), st.integers(1, 20))
    ),
    min_size=6,
    max_size=18,
)


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    path = st.sampled_from(_PATHS)
    eq = st.builds(lambda p, v: {"EQ": {p: v}}, path, _scalars)
    in_ = st.builds(lambda p, vs: {"IN": {p: vs}}, path, st.lists(_scalars, min_size=1, max_size=3))
    bound = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, "", "x", "é", "10"]))
    rng = st.builds(
        lambda op, p, v: {op: {p: v}}, st.sampled_from(["GT", "GTE", "LT", "LTE"]), path, bound
    )
    return st.one_of(eq, in_, rng)


_filters = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda fs: {"AND": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"OR": fs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)
_sorts = st.lists(
    st.builds(
        lambda p, o: {"key": p, "order": o},
        st.sampled_from(_PATHS),
        st.sampled_from(["ASC", "DESC"]),
    ),
    max_size=2,
    unique_by=lambda s: s["key"],
)
_queries = st.builds(
    lambda f, s, limit: {
        **({"filter": f} if f is not None else {}),
        **({"sort": s} if s else {}),
        "page": {"limit": limit},
    },
    st.one_of(st.none(), _filters),
    _sorts,
    st.integers(1, 5),
)


class _Model:
    """What the store should hold: key -> (value, expires_at)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[Any, float | None]] = {}

    def live(self) -> list[tuple[str, Any, str]]:
        now = self.clock()
        return [
            (k, v, k)
            for k, (v, exp) in sorted(self.rows.items(), key=lambda kv: kv[0].encode())
            if exp is None or exp > now
        ]


def _apply(store_ns: list[Any], model: _Model, clock: FakeClock, writes: list[Any]) -> None:
    for w in writes:
        if w[0] == "put":
            _, key, value, ttl = w
            for ns in store_ns:
                ns.put(key, value, ttl=ttl)
            model.rows[key] = (value, None if ttl is None else clock() + ttl)
        elif w[0] == "delete":
            for ns in store_ns:
                ns.delete(w[1])
            model.rows.pop(w[1], None)
        else:
            clock.advance(w[1])


class QueryModelConformance:
    """Queries answer as the evaluator over a model, with and without declared indexes."""

    @pytest.fixture
    def model_stores(self, open_store: StoreFactory, clock: FakeClock) -> tuple[Store, Store]:
        plain = open_store(clock=clock)
        indexed = open_store(clock=clock, namespaces={"*": {"indexes": _INDEXED}})
        return plain, indexed

    def test_queries_answer_as_the_evaluator_over_a_model(
        self, model_stores: tuple[Store, Store], clock: FakeClock
    ) -> None:
        plain, indexed = model_stores
        names = itertools.count()

        @settings(
            max_examples=50,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(before=_setup, more=_writes, query=_queries, between=st.lists(_writes, max_size=3))
        def run(
            before: list[Any], more: list[Any], query: dict[str, Any], between: list[list[Any]]
        ) -> None:
            name = f"m{next(names)}"
            spaces = [plain.namespace(name), indexed.namespace(name)]
            model = _Model(clock)
            _apply(spaces, model, clock, before + more)
            tokens: list[str | None] = [None, None]
            for page_no in range(50):
                for i, ns in enumerate(spaces):
                    doc = {**query, "page": {**query["page"], "token": tokens[i]}}
                    got = ns.query(doc)
                    want = run_query(parse_query(doc), model.live())
                    expected = [(k, model.rows[k][0]) for k in want.items]
                    assert [(it.key, it.value) for it in got.items] == expected, (
                        f"{'indexed' if i else 'plain'} page {page_no} of {doc}"
                    )
                    assert got.cursor == want.token, doc
                    tokens[i] = got.cursor
                if tokens[0] is None:
                    break
                if page_no < len(between):
                    _apply(spaces, model, clock, between[page_no])

        run()

    def test_expired_rows_never_answer_even_when_indexed(
        self, model_stores: tuple[Store, Store], clock: FakeClock
    ) -> None:
        for store in model_stores:
            ns = store.namespace("ttl")
            ns.put("gone", {"a": "x", "n": 1}, ttl=5)
            ns.put("kept", {"a": "x", "n": 2})
            clock.advance(10)
            for q in (
                {"filter": {"EQ": {"a": "x"}}},
                {"filter": {"GT": {"n": 0}}},
                {"sort": [{"key": "n", "order": "DESC"}]},
            ):
                assert [it.key for it in ns.query(q).items] == ["kept"], q
