"""The PostgreSQL backend: the conformance suites, the model test, and what only a
shared server brings — several processes, lost connections, SIGKILL, queries in SQL.

Every store here lives in its own schema (``cs_test_<hex>``), dropped at teardown.
Without a server on ``CLAWSTATE_TEST_POSTGRES_URL`` (default
``postgresql://root@127.0.0.1:5432/test``) the tests skip, saying what to start;
with ``CLAWSTATE_REQUIRE_SERVICES=1`` they fail instead.
"""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import clawstate
from _backends import (
    DEFAULT_OPTIONS,
    ROOT,
    drop_schema,
    new_schema,
    pg,
    pg_async_store_factory,
    pg_store_factory,
    read_acks,
    run_child,
    schemas,
    start_crash_writer,
)
from _backends import pg_admin as _admin
from _backends import pg_probe as _probe
from _backends import pg_url as url_for
from clawstate import BackendUnavailable, ConfigError, InvalidRequest, VersionConflict
from clawstate.backends.postgres import (
    OPAQUE_ENCRYPTED,
    OPAQUE_NONE,
    OPAQUE_PLAIN,
    SCHEMA_VERSION,
    PostgresBackend,
    value_doc,
)
from clawstate.codec import Codec, CodecPolicy
from clawstate.keyring import Keyring
from clawstate.query import parse_query
from clawstate.testing import FakeClock
from clawstate.testing.conformance import (
    AsyncStoreConformance,
    Clock,
    StoreConformance,
)
from test_model import StoreMachine

#: Fixtures from ``_backends`` (pytest finds them by name here) and the helpers other
#: test modules still import from this one.
__all__ = [
    "DEFAULT_OPTIONS",
    "ROOT",
    "_admin",
    "_probe",
    "drop_schema",
    "new_schema",
    "pg",
    "pg_async_store_factory",
    "pg_store_factory",
    "schemas",
    "url_for",
]


# -- fixtures & helpers ------------------------------------------------------------------


def terminate(application_name: str) -> int:
    """Cut every server connection opened under ``application_name``."""
    with _admin() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return len(rows)


def get_all(ns: clawstate.Namespace, keys: list[str]) -> dict[str, clawstate.Item]:
    """``get_many`` in chunks the facade accepts."""
    out: dict[str, clawstate.Item] = {}
    for start in range(0, len(keys), 500):
        out.update(ns.get_many(keys[start : start + 500]))
    return out


def backend_of(store: clawstate.Store) -> PostgresBackend:
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    return backend


@pytest.fixture
def open_pg(schemas: Callable[[], str]) -> Iterator[Callable[..., clawstate.Store]]:
    """``open_pg(schema=None, clock=None, **url_params_and_options)``: stores closed at
    teardown; URL parameters are the keyword arguments named in ``URL_PARAMS``."""
    opened: list[clawstate.Store] = []

    def factory(
        schema: str | None = None, clock: Clock | None = None, **kw: Any
    ) -> clawstate.Store:
        params = {k: kw.pop(k) for k in list(kw) if k in URL_PARAMS}
        store = clawstate.open(
            url_for(schema or schemas(), **params), clock=clock, **{**DEFAULT_OPTIONS, **kw}
        )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


URL_PARAMS = {"application_name", "pool_timeout", "poll_interval", "pool_max", "encrypted_query"}


# -- the conformance suites, unchanged ---------------------------------------------------


class TestPostgresStore(StoreConformance):
    """The whole sync conformance suite on PostgreSQL."""


class TestPostgresAsyncStore(AsyncStoreConformance):
    """The async conformance suite on PostgreSQL."""


# -- the Hypothesis model test -----------------------------------------------------------


class PostgresStoreMachine(StoreMachine):
    """tests/test_model.py's state machine, on a fresh schema per example."""

    def __init__(self) -> None:
        super().__init__("memory")
        self.store.close()
        self.schema = new_schema()
        self.store = clawstate.open(url_for(self.schema), clock=self.clock, sweep_interval=0)
        assert isinstance(self.store.backend, PostgresBackend)

    def teardown(self) -> None:
        super().teardown()
        drop_schema(self.schema)


def test_model_state_machine(pg: None) -> None:
    run_state_machine_as_test(
        PostgresStoreMachine,
        settings=settings(
            max_examples=int(os.environ.get("CLAWSTATE_TEST_PG_MODEL_EXAMPLES", "50")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- values as jsonb documents -----------------------------------------------------------


def test_value_doc_decides_from_the_codec_header(tmp_path: Path) -> None:
    plain = Codec(CodecPolicy())
    as_json = Codec(CodecPolicy(serializer="json"))
    small = Codec(CodecPolicy(compress_above=8))
    sealed = Codec(CodecPolicy(encrypt=True), Keyring.from_source(f"file:{tmp_path}/k.json"))
    doc = {"a": [1, 2.5, "x"], "b": {"c": None, "d": True}}
    for codec in (plain, as_json, small):
        text, opaque = value_doc(codec.encode("n", "k", doc))
        assert opaque == OPAQUE_NONE and text is not None
        assert json.loads(text) == doc
    assert value_doc(small.encode("n", "k", {"long": "x" * 500})) == (
        '{"long":"' + "x" * 500 + '"}',
        0,
    )
    assert value_doc(sealed.encode("n", "k", doc)) == (None, OPAQUE_ENCRYPTED)
    assert value_doc(plain.encode("n", "k", b"raw")) == (None, OPAQUE_NONE)
    # What jsonb cannot hold exactly is kept out of it (queried in Python instead).
    for odd in ({"s": "a\x00b"}, {"a\x00": 1}, [b"x"]):
        assert value_doc(plain.encode("n", "k", odd)) == (None, OPAQUE_PLAIN), odd
    # NaN and infinities are refused on write now (docs/configuration.md, "Values"), but
    # values stored before that policy are still read, and kept out of jsonb.
    for odd in ({"x": float("nan")}, [float("inf")]):
        stored = b"\x01\x01" + msgspec.msgpack.encode(odd)
        assert value_doc(stored) == (None, OPAQUE_PLAIN), odd
    assert value_doc(as_json.encode("n", "k", {"s": "a\x00b"})) == (None, OPAQUE_PLAIN)
    # Bytes that merely look suspicious (0xc4 in UTF-8 text) still get a document.
    assert value_doc(plain.encode("n", "k", {"s": "Ą"}))[1] == OPAQUE_NONE


def test_documents_are_stored_and_checked(open_pg: Callable[..., clawstate.Store]) -> None:
    store = open_pg()
    ns = store.namespace("d")
    ns.put("plain", {"n": 1})
    ns.put("nan", {"n": "a\x00b"})  # NUL: a value jsonb cannot hold
    ns.put("raw", b"\x00\x01")
    b = backend_of(store)
    with _admin() as conn:
        rows = conn.execute(
            f'SELECT key, doc, opaque FROM "{b.schema}".items ORDER BY key'
        ).fetchall()
        assert rows == [("nan", None, OPAQUE_PLAIN), ("plain", {"n": 1}, 0), ("raw", None, 0)]
        assert store.check().ok
        conn.execute(f"""UPDATE "{b.schema}".items SET doc = '{{"n": 2}}' WHERE key = 'plain'""")
    report = store.check()
    assert not report.ok and "d/plain: its jsonb document does not match" in report.problems[0]


# -- queries in SQL ----------------------------------------------------------------------

PATHS = ["a", "b", "a.b", "a.0", "a.-1", "a.+1", "0", "c.x.y", "s"]
KEYS = ["a", "b", "c", "0", "-1", "x", "y", "s"]
OPERANDS = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    1.5,
    -2,
    2**70,
    "",
    "a",
    "b",
    "a\x00",
    "Ą",
    "😀",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.sampled_from([0, 1, -1, 2**63, 1.0, 1.5, -0.0, 1e300, 0.1]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["", "a", "b", "ab", "a\x00", "Ą", "😀", "\uffff", "B"]),
)
docs = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
odd = st.sampled_from(["a\x00", {"a": "b\x00"}, {"a": [b"x"]}])  # values jsonb cannot hold
values = st.one_of(docs, docs, docs, odd, st.just(b"raw bytes"))


def leaf(path: str) -> st.SearchStrategy[dict[str, Any]]:
    eq = st.builds(lambda o: {"EQ": {path: o}}, st.sampled_from(OPERANDS))
    in_ = st.builds(
        lambda os_: {"IN": {path: os_}}, st.lists(st.sampled_from(OPERANDS), min_size=1, max_size=4)
    )
    rng = st.builds(
        lambda op, o: {op: {path: o}},
        st.sampled_from(["GT", "GTE", "LT", "LTE"]),
        st.sampled_from([0, 1, 1.5, -2, 2**70, -(2**70), "", "a", "a\x00", "b", "😀"]),
    )
    return st.one_of(eq, in_, rng)


filters = st.recursive(
    st.sampled_from(PATHS).flatmap(leaf),
    lambda inner: st.one_of(
        st.builds(lambda cs: {"AND": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"OR": cs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)
sorts = st.lists(
    st.builds(
        lambda k, o: {"key": k, "order": o},
        st.sampled_from(PATHS),
        st.sampled_from(["ASC", "DESC"]),
    ),
    max_size=2,
    unique_by=lambda s: s["key"],
)
queries = st.builds(
    lambda f, s, limit: {"filter": f, "sort": s, "page": {"limit": limit}},
    st.one_of(st.none(), filters),
    sorts,
    st.integers(1, 4),
)


def _pages(
    ns: clawstate.Namespace, query: dict[str, Any]
) -> tuple[list[list[str]], list[str | None]]:
    pages: list[list[str]] = []
    tokens: list[str | None] = []
    token: str | None = None
    for _ in range(100):
        page = ns.query({**query, "page": {**query["page"], "token": token}})
        pages.append([it.key for it in page.items])
        tokens.append(page.cursor)
        token = page.cursor
        if token is None:
            break
    return pages, tokens


@pytest.fixture
def query_stores(
    open_pg: Callable[..., clawstate.Store],
) -> Iterator[tuple[clawstate.Store, clawstate.Store]]:
    reference = clawstate.open("memory://", sweep_interval=0)
    yield open_pg(), reference
    reference.close()


def test_sql_queries_match_the_reference_evaluator(
    query_stores: tuple[clawstate.Store, clawstate.Store],
) -> None:
    """Random documents and queries: PostgreSQL (SQL, plus Python for opaque rows)
    returns the same pages and tokens as the in-memory reference, and tokens from
    one resume on the other."""
    pg_store, ref_store = query_stores
    counter = iter(range(10**6))

    @settings(
        max_examples=int(os.environ.get("CLAWSTATE_TEST_PG_QUERY_EXAMPLES", "200")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(values, min_size=0, max_size=12), st.lists(queries, min_size=1, max_size=3))
    def check(items: list[Any], qs: list[dict[str, Any]]) -> None:
        name = f"q{next(counter)}"
        pairs = [(f"k{i:02d}", v) for i, v in enumerate(items)]
        pg_ns, ref_ns = pg_store.namespace(name), ref_store.namespace(name)
        if pairs:
            pg_ns.put_many(pairs)
            ref_ns.put_many(pairs)
        for q in qs:
            got, got_tokens = _pages(pg_ns, q)
            want, want_tokens = _pages(ref_ns, q)
            assert got == want, (q, pairs)
            assert got_tokens == want_tokens
            for token in want_tokens[:-1]:  # a reference token resumes on PostgreSQL
                resumed = pg_ns.query({**q, "page": {**q["page"], "token": token}})
                expected = ref_ns.query({**q, "page": {**q["page"], "token": token}})
                assert [it.key for it in resumed.items] == [it.key for it in expected.items]

    check()


def test_query_uses_a_declared_expression_index(open_pg: Callable[..., clawstate.Store]) -> None:
    store = open_pg(namespaces={"orders": {"indexes": ["status", "customer.id"]}})
    b = backend_of(store)
    orders = store.namespace("orders")
    for start in range(0, 3000, 500):
        orders.put_many(
            [
                (f"o{i:05d}", {"status": "rare" if i == 7 else "open", "customer": {"id": i % 50}})
                for i in range(start, start + 500)
            ]
        )
    names = b.ensure_index("orders", ["status", "customer.id"])
    assert b.ensure_index("orders", ["status"]) == names[:1]  # idempotent
    with _admin() as conn:
        conn.execute(f'ANALYZE "{b.schema}".items')
        nid = b._ns_ids["orders"]
        for doc, index in (
            ({"filter": {"EQ": {"status": "rare"}}}, names[0]),
            ({"filter": {"IN": {"customer.id": [3, 4]}}}, names[1]),
            ({"filter": {"GT": {"customer.id": 48}}}, names[1]),
        ):
            query = parse_query(doc)
            text, params = b.compile_query(nid, query, time.time())
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + text, params).fetchone()
            assert plan is not None and index in json.dumps(plan[0]), (doc, plan)
    assert [it.key for it in orders.query({"filter": {"EQ": {"status": "rare"}}}).items] == [
        "o00007"
    ]
    assert (
        len(orders.query({"filter": {"GT": {"customer.id": 48}}, "page": {"limit": 100}}).items)
        == 60
    )


def test_a_rare_value_uses_the_index_not_a_key_order_walk(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    """The planner ignores a partial index's statistics: without the expression
    statistics ``index_path`` creates, ``status = 'rare'`` is guessed at 0.5% of the
    rows (100 of 20,000), so ``limit 1`` looks cheapest as a primary-key walk in key
    order, which here reads all 20,000 rows to find the one match at the end."""
    store = open_pg(namespaces={"orders": {"indexes": ["status"]}})
    b = backend_of(store)
    orders = store.namespace("orders")
    n = 20_000
    for start in range(0, n, 1000):
        orders.put_many(
            [
                (f"o{i:05d}", {"status": "rare" if i == n - 1 else f"s{i % 10}", "pad": "x" * 300})
                for i in range(start, start + 1000)
            ]
        )
    (index,) = b.ensure_index("orders", ["status"])
    with _admin() as conn:
        conn.execute(f'ANALYZE "{b.schema}".items')  # as autovacuum does after a load
    page = orders.query({"filter": {"EQ": {"status": "rare"}}, "page": {"limit": 1}}, explain=True)
    assert [it.key for it in page.items] == [f"o{n - 1:05d}"]
    assert page.plan is not None and page.plan.index == index, page.plan


def test_explain_names_the_index_and_max_scan_refuses_only_unserved_queries(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    """``explain`` reports the expression index EXPLAIN shows; ``max_scan`` refuses a
    query no valid index serves on a namespace holding more rows than the bound,
    naming the count and the index to declare, and never refuses a served one."""
    store = open_pg(namespaces={"orders": {"indexes": ["status"]}})
    b = backend_of(store)
    orders = store.namespace("orders")
    for start in range(0, 3000, 500):
        orders.put_many(
            [
                (f"o{i:05d}", {"status": "rare" if i == 7 else "open", "customer": {"id": i % 50}})
                for i in range(start, start + 500)
            ]
        )
    (status_index,) = b.ensure_index("orders", ["status"])
    with _admin() as conn:
        conn.execute(f'ANALYZE "{b.schema}".items')
    rare = {"filter": {"EQ": {"status": "rare"}}}
    page = orders.query(rare, explain=True)
    assert [it.key for it in page.items] == ["o00007"]
    assert page.plan is not None and page.plan.index == status_index, page.plan
    assert page.plan.strategy == "index" and page.plan.detail
    unserved = {"filter": {"EQ": {"customer.id": 3}}, "page": {"limit": 100}}
    plan = orders.query(unserved, explain=True).plan
    assert plan is not None and plan.index is None and plan.strategy == "sql"

    def run(doc: dict[str, Any], max_scan: int) -> list[str]:
        found = b.query("orders", parse_query(doc), orders._decode, time.time(), False, max_scan)
        return [it.key for it in found.items]

    with pytest.raises(InvalidRequest) as info:
        run(unserved, 2999)
    assert info.value.field == "query"
    assert "3000" in str(info.value) and "'customer.id'" in str(info.value)
    assert len(run(unserved, 3000)) == 60  # not more rows than the bound: answered
    assert run(rare, 10) == ["o00007"]  # served: never refused, whatever the size
    store.namespace("small").put_many([(f"s{i}", {"customer": {"id": 3}}) for i in range(5)])
    small = b.query(
        "small", parse_query(unserved), store.namespace("small")._decode, time.time(), max_scan=10
    )
    assert len(small.items) == 5
    # Declaring the index (a backfill over the 3000 rows, reported) makes it served.
    # A writer's open transaction holds the concurrent build in its first wait for a
    # second: the progress view is polled meanwhile, and reports short of the total.
    heard: list[tuple[int, int]] = []
    writer = _admin()
    writer.execute("BEGIN")
    writer.execute(f'LOCK TABLE "{b.schema}".items IN ROW EXCLUSIVE MODE')
    release = threading.Timer(1.5, writer.execute, ("COMMIT",))
    release.start()
    try:
        b.ensure_index(
            "orders", ["customer.id"], progress=lambda done, total: heard.append((done, total))
        )
    finally:
        release.join()
        writer.close()
    assert heard[0] == (0, 3000) and heard[-1] == (3000, 3000), heard
    assert len(heard) > 2 and all(0 < done < 3000 for done, _ in heard[1:-1]), heard
    assert [done for done, _ in heard] == sorted({done for done, _ in heard}), heard
    assert len(run(unserved, 10)) == 60
    # An OR with one unserved branch still reads everything: refused.
    mixed = {"filter": {"OR": [{"EQ": {"status": "rare"}}, {"EQ": {"total": 1}}]}}
    with pytest.raises(InvalidRequest, match="3000"):
        run(mixed, 10)


def test_encrypted_namespace_query_can_be_refused(
    open_pg: Callable[..., clawstate.Store], tmp_path: Path
) -> None:
    store = open_pg(
        encrypted_query="refuse",
        namespaces={"secret": {"encrypt": True}},
        keyring=f"file:{tmp_path}/keys.json",
    )
    store.namespace("secret").put("c1", {"cvv": "123"})
    store.namespace("plain").put("c1", {"cvv": "123"})
    with pytest.raises(
        InvalidRequest, match="encrypted or compressed namespace cannot be queried"
    ) as info:
        store.namespace("secret").query({"filter": {"EQ": {"cvv": "123"}}})
    assert info.value.field == "query"
    assert len(store.namespace("plain").query({"filter": {"EQ": {"cvv": "123"}}}).items) == 1


# -- schema, URL, migrations -------------------------------------------------------------


def test_url_parameters_and_errors(pg: None, schemas: Callable[[], str]) -> None:
    schema = schemas()
    store = clawstate.open(url_for(schema, pool_max=3, pool_timeout=2, application_name="cs-x"))
    try:
        b = backend_of(store)
        assert b.schema == schema and b._pool.max_size == 3
        assert "application_name=cs-x" in b.conninfo
    finally:
        store.close()
    with pytest.raises(ConfigError, match="schema"):
        clawstate.open(url_for('bad"name'))
    with pytest.raises(ConfigError, match="pool_max"):
        clawstate.open(url_for(schemas(), pool_max="many"))
    with pytest.raises(ConfigError, match="connection option"):
        clawstate.open(url_for(schemas(), no_such_option=1))
    with pytest.raises(ConfigError, match="encrypted_query"):
        clawstate.open(url_for(schemas(), encrypted_query="maybe"))


def test_unreachable_server_is_backend_unavailable(pg: None) -> None:
    with pytest.raises(BackendUnavailable, match="cannot open the PostgreSQL store"):
        clawstate.open("postgresql://root@127.0.0.1:1/test?connect_timeout=1&pool_timeout=1")


def test_concurrent_openers_migrate_once_and_newer_schemas_are_refused(
    pg: None, schemas: Callable[[], str]
) -> None:
    schema = schemas()
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def opener() -> None:
        try:
            barrier.wait(10)
            clawstate.open(url_for(schema), sweep_interval=0).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with _admin() as conn:
        row = conn.execute(
            f"SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"
        ).fetchone()
        assert row == (str(SCHEMA_VERSION),)
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 99"):
        clawstate.open(url_for(schema))


def test_stats_report_namespaces_server_and_pool(open_pg: Callable[..., clawstate.Store]) -> None:
    store = open_pg()
    store.namespace("a").put_many([("x", "1234"), ("y", "5678")])
    stats = backend_of(store).stats()
    size = len(Codec(CodecPolicy()).encode("a", "x", "1234"))
    assert stats["namespaces"] == {"a": {"items": 2, "bytes": 2 * size}}
    assert stats["server_version"].split(".")[0].isdigit()
    assert stats["pool"]["pool_max"] == 10 and "requests_num" in stats["pool"]
    assert stats["changelog"] == {"first_seq": 1, "last_seq": 2, "rows": 2}
    assert "synchronous_commit" in stats["durability"]
    with backend_of(store)._pool.connection() as conn:  # no JIT on OLTP statements
        assert conn.execute("SHOW jit").fetchone() == ("off",)


def test_sweep_purges_expired_and_trims_the_log_keeping_its_end(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    clock = FakeClock()
    store = open_pg(clock=clock, changelog_retention=100)
    ns = store.namespace("t")
    ns.put("gone", 1, ttl=5)
    ns.put("stays", 2)
    ns.put("k", 3, idempotency_key="req-1")
    clock.advance(60)
    result = store.sweep()
    assert result["expired"] == 1 and result["idempotency_keys"] == 0
    changes = list(store.watch(0, timeout=0))
    assert [(c.key, c.op) for c in changes][-1] == ("gone", "expire")
    assert store.last_seq == 4
    clock.advance(86400 * 2)
    result = store.sweep()
    assert result["idempotency_keys"] == 1 and result["changes"] == 3
    assert store.last_seq == 4 and backend_of(store).first_seq() == 4
    ns.put("new", 1)
    assert store.last_seq == 5  # seqs never go back
    assert store.check().ok


# -- group commit ------------------------------------------------------------------------


def test_concurrent_plain_puts_share_batches_and_mixed_batches_stay_exact(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    store = open_pg()
    b = backend_of(store)
    ns = store.namespace("g")
    ns.put("warm", 0)  # the namespace exists: plain puts may take the one-statement path
    errors: list[BaseException] = []

    def plain(t: int) -> None:
        try:
            for i in range(150):
                ns.put(f"p{t}-{i % 20}", i)
                ns.put("shared", i)  # the same key from every thread: repeats in a batch
        except BaseException as exc:
            errors.append(exc)

    def cas(t: int) -> None:
        try:
            for _ in range(40):
                while True:
                    cur = ns.get("cas")
                    try:
                        if cur is None:
                            ns.put("cas", 1, if_absent=True)
                        else:
                            ns.put("cas", cur.value + 1, if_version=cur.version)
                        break
                    except VersionConflict:
                        pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=plain, args=(t,)) for t in range(8)]
    threads += [threading.Thread(target=cas, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    cas_item, shared = ns.get("cas"), ns.get("shared")
    assert cas_item is not None and cas_item.value == 120 and cas_item.version == 120
    assert shared is not None and shared.version == 8 * 150
    gc = b.stats()["group_commit"]
    assert gc["bulk_batches"] > 0 and gc["general_batches"] > 0
    assert gc["largest_batch"] > 1
    changes = list(store.watch(0, timeout=0))
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert store.check().ok


# -- several processes -------------------------------------------------------------------

_CAS_CHILD = textwrap.dedent(
    """
    import sys, clawstate
    url, counters, m, me = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = clawstate.open(url, sweep_interval=0)
    ns = store.namespace("counters")
    done = 0
    while done < m:
        key = f"c{(me + done) % counters}"
        cur = ns.get(key)
        try:
            if cur is None:
                ns.put(key, 1, if_absent=True)
            else:
                ns.put(key, cur.value + 1, if_version=cur.version)
        except clawstate.VersionConflict:
            continue
        done += 1
    store.close()
    """
)


def test_cas_across_processes_is_exact(open_pg: Callable[..., clawstate.Store]) -> None:
    store = open_pg()
    b = backend_of(store)
    url = url_for(b.schema)
    procs = [run_child(_CAS_CHILD, url, "2", "100", str(i)) for i in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    ns = store.namespace("counters")
    items = ns.get_many(["c0", "c1"])
    assert sum(it.value for it in items.values()) == 400
    for key, it in items.items():
        assert it.value == it.version
        versions = [c.version for c in store.watch(0, timeout=0) if c.key == key]
        assert versions == list(range(1, it.version + 1))
    assert store.check().ok


_WRITER_CHILD = textwrap.dedent(
    """
    import random, sys, clawstate
    url, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = clawstate.open(url, sweep_interval=0)
    rnd = random.Random(me)
    a, b = store.namespace("a"), store.namespace("b")
    for i in range(n):
        r = rnd.random()
        if r < 0.5:
            a.put(f"{me}-{i % 37}", i)
        elif r < 0.8:
            with store.transaction() as tx:
                tx.namespace("a").put(f"{me}-t{i % 11}", i)
                tx.namespace("b").put(f"{me}-t{i % 11}", i)
        else:
            cur = b.get("shared")
            try:
                if cur is None:
                    b.put("shared", 1, if_absent=True)
                else:
                    b.put("shared", cur.value + 1, if_version=cur.version)
            except clawstate.VersionConflict:
                pass
    store.close()
    """
)


def test_watchers_see_a_gap_free_log_while_processes_write(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    """Commit order is seq order: a reader that always resumes after the last seq it saw
    (and trusts last_seq() as a watermark) never misses a change, with writers in
    several processes committing concurrently."""
    store = open_pg()
    b = backend_of(store)
    store.namespace("a").put("start", 0)
    seen: list[int] = []
    watermark_problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        after = 0
        while True:
            done = stop.is_set()
            mark = b.last_seq()
            rows = b.changes(after, 100_000)
            if rows:
                seen.extend(c.seq for c in rows)
                after = rows[-1].seq
            if after < mark:  # every seq up to the watermark must already be readable
                watermark_problems.append(f"last_seq {mark} but changes stop at {after}")
            if done and not rows:
                return

    watcher = threading.Thread(target=reader)
    watcher.start()
    procs = [run_child(_WRITER_CHILD, url_for(b.schema), str(i), "250") for i in range(3)]
    try:
        for p in procs:
            assert p.wait(timeout=180) == 0
    finally:
        stop.set()
        watcher.join(60)
    assert not watermark_problems, watermark_problems[:3]
    final = [c.seq for c in store.watch(0, timeout=0)]
    assert seen == final == list(range(1, len(final) + 1))
    assert len(final) > 3 * 150  # most of the 750 writes changed something
    assert store.check().ok


def test_watch_wakes_on_notify_from_another_backend(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    """No polling: with a 30 s poll interval, a commit by another backend (as another
    process would) reaches a waiting watcher at once through LISTEN/NOTIFY."""
    watcher_store = open_pg(poll_interval=30)
    schema = backend_of(watcher_store).schema
    writer = open_pg(schema=schema)
    watch = watcher_store.watch(None, timeout=20)
    got: list[tuple[str, float]] = []

    def consume() -> None:
        for change in watch:
            got.append((change.key, time.monotonic()))
            if len(got) == 3:
                return

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)  # the watcher is waiting now
    sent = []
    for key in ("x", "y", "z"):
        sent.append(time.monotonic())
        writer.namespace("n").put(key, 1)
        time.sleep(0.1)
    t.join(10)
    assert [k for k, _ in got] == ["x", "y", "z"]
    assert max(at - s for (_, at), s in zip(got, sent, strict=True)) < 2.0
    assert backend_of(watcher_store)._listening


# -- losing the connection ---------------------------------------------------------------


def test_connection_loss_fails_cleanly_loses_nothing_and_recovers(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    app = f"cs-loss-{uuid.uuid4().hex[:6]}"
    store = open_pg(application_name=app, pool_timeout=3, poll_interval=0.2)
    b = backend_of(store)
    ns = store.namespace("w")
    ns.put("warm", 0)
    acked: dict[str, int] = {}
    acked_lock = threading.Lock()
    failures: list[BaseException] = []
    unexpected: list[BaseException] = []
    stop = threading.Event()

    def writer(t: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"k{t}-{i}"
            try:
                if i % 3 == 0:
                    with store.transaction() as tx:
                        tx.namespace("w").put(key, i)
                        tx.namespace("w2").put(key, i)
                else:
                    ns.put(key, i)
            except BackendUnavailable as exc:
                failures.append(exc)
            except BaseException as exc:
                unexpected.append(exc)
                return
            else:
                with acked_lock:
                    acked[key] = i
            i += 1

    watched: list[int] = []

    watch_stop = threading.Event()

    def watcher() -> None:
        position: int | None = None
        while not watch_stop.is_set():
            try:
                watch = store.watch(position, timeout=0.5)
                for change in watch:
                    watched.append(change.seq)
                    position = change.seq
            except BackendUnavailable:
                time.sleep(0.05)  # a watch fails like any operation; resume where it was

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    watching = threading.Thread(target=watcher)
    for t in [*threads, watching]:
        t.start()
    try:
        for _ in range(4):
            time.sleep(0.4)
            assert terminate(app) >= 1
            # Reads retry once on a fresh connection: this one does not fail.
            assert ns.get("warm") is not None
    finally:
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)
        final = store.last_seq
        deadline = time.monotonic() + 15
        while (not watched or watched[-1] < final) and time.monotonic() < deadline:
            time.sleep(0.05)
        watch_stop.set()
        watching.join(30)
    assert not unexpected, unexpected
    assert failures, "no operation saw the connection loss"
    got = get_all(ns, list(acked))
    assert {k: it.value for k, it in got.items()} == acked, "an acknowledged write was lost"
    tx_keys = [k for k, i in acked.items() if i % 3 == 0]
    assert set(get_all(store.namespace("w2"), tx_keys)) == set(tx_keys)
    assert ns.put("after", 1).version == 1  # recovered without restarting anything
    deadline = time.monotonic() + 10
    while not b._listening and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b._listening, "the listener did not reconnect"
    # The watch went through the outage and missed nothing.
    assert watched == list(range(watched[0], final + 1))
    assert store.check().ok


# -- SIGKILL -----------------------------------------------------------------------------


def test_sigkill_loses_nothing_acknowledged(
    open_pg: Callable[..., clawstate.Store], tmp_path: Path
) -> None:
    cycles = int(os.environ.get("CLAWSTATE_TEST_PG_CRASH_CYCLES", "12"))
    store = open_pg()
    schema = backend_of(store).schema
    app = f"crash-{schema}"
    url = url_for(schema, application_name=app)
    rng = random.Random(int(os.environ.get("CLAWSTATE_TEST_CRASH_SEED", "7")))
    acked_puts: dict[str, int] = {}
    max_cas = 0
    acked_tx: set[str] = set()
    for cycle in range(cycles):
        child = start_crash_writer(url, tmp_path, cycle, idempotent_tx=True)
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        _settle(app)
        for doc in read_acks(tmp_path / f"put-{cycle}.log"):
            acked_puts[doc["key"]] = doc["i"]
        for doc in read_acks(tmp_path / f"cas-{cycle}.log"):
            max_cas = max(max_cas, doc["n"])
        for doc in read_acks(tmp_path / f"tx-{cycle}.log"):
            acked_tx.add(doc["tid"])
        if cycle % 4 == 3 or cycle == cycles - 1:
            _verify(store, acked_puts, max_cas, acked_tx)
    assert acked_puts and acked_tx and max_cas > 0, "the child never got a write acknowledged"


def _settle(app: str) -> None:
    """Return once the killed child's server sessions are gone: a COMMIT it sent just
    before its SIGKILL still commits when the server reads it, and a check that scans
    two namespaces in two snapshots would otherwise see half of that transaction."""
    deadline = time.monotonic() + 30
    with _admin() as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the killed child's sessions linger"
            time.sleep(0.01)


def _verify(
    store: clawstate.Store, acked_puts: dict[str, int], max_cas: int, acked_tx: set[str]
) -> None:
    found = get_all(store.namespace("puts"), list(acked_puts))
    lost = [k for k in acked_puts if k not in found]
    assert not lost, f"acknowledged puts lost: {lost[:5]}"
    assert all(found[k].value["i"] == i for k, i in acked_puts.items())
    counter = store.namespace("counter").get("c")
    assert counter is not None
    assert counter.value["n"] >= max_cas, "an acknowledged compare-and-set was lost"
    assert counter.value["n"] == counter.version - 1, "counter value and version disagree"
    a_keys = {it.key for it in _scan(store.namespace("tx-a"))}
    b_keys = {it.key for it in _scan(store.namespace("tx-b"))}
    assert a_keys == b_keys, f"partial transactions visible: {sorted(a_keys ^ b_keys)[:5]}"
    assert not acked_tx - a_keys, f"acknowledged transactions lost: {sorted(acked_tx - a_keys)[:5]}"
    report = store.check(deep=True)
    assert report.ok, report.problems
    seqs = [c.seq for c in store.watch(0, timeout=0)]
    assert seqs == list(range(1, len(seqs) + 1)), "the change log has a gap"


def _scan(ns: clawstate.Namespace) -> list[clawstate.Item]:
    out: list[clawstate.Item] = []
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        out.extend(page.items)
        cursor = page.cursor
        if cursor is None:
            return out


# -- versions never repeat, even when a delete commits while a put waits (no ABA) -------------


def test_a_put_waiting_for_the_head_sees_a_floor_raised_meanwhile(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    """The one-statement put reads the version floor in a snapshot taken before it
    waits for the head's row lock.  A delete that commits during that wait raised the
    floor unseen; ``head.floor_seq`` must make the put give the re-created key a
    version above the deleted one anyway (otherwise a stale ``if_version`` of the old
    incarnation would match the new one).  The delete is played by hand on a second
    connection that holds the head, exactly as the general path writes one."""
    store = open_pg()
    ns = store.namespace("race")
    for i in range(3):
        ns.put("k", i)
    ns.put("other", 0)  # the namespace exists and is known to the bulk path
    b = backend_of(store)
    s = b._s
    nid = b._ns_ids["race"]
    result: list[clawstate.Item | BaseException] = []
    with _admin() as conn:
        conn.execute("BEGIN")
        (seq,) = conn.execute(f"UPDATE {s}.head SET seq = seq WHERE one RETURNING seq").fetchone()

        def put() -> None:
            try:
                result.append(ns.put("k", "new incarnation"))
            except BaseException as exc:  # reported by the assertion below
                result.append(exc)

        writer = threading.Thread(target=put)
        writer.start()
        deadline = time.monotonic() + 30
        while True:  # the put's statement is waiting for our row lock on the head
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s",
                (f"%{s}.items%",),
            ).fetchone()
            if waiting:
                break
            assert time.monotonic() < deadline, "the put never waited for the head"
            time.sleep(0.02)
        conn.execute(f"DELETE FROM {s}.items WHERE ns = %s AND key = 'k'", (nid,))
        conn.execute(
            f"INSERT INTO {s}.changes (seq, ns, key, op, version, ts) "
            "VALUES (%s, %s, 'k', 1, 3, extract(epoch from now()))",
            (seq + 1, nid),
        )
        conn.execute(
            f"INSERT INTO {s}.version_floors AS f (ns, floor) VALUES (%s, 3) "
            "ON CONFLICT (ns) DO UPDATE SET floor = GREATEST(f.floor, excluded.floor)",
            (nid,),
        )
        conn.execute(f"UPDATE {s}.head SET seq = %s, floor_seq = %s WHERE one", (seq + 1, seq + 1))
        conn.execute("COMMIT")
        writer.join(30)
    assert len(result) == 1 and isinstance(result[0], clawstate.Item), result
    again = result[0]
    assert again.version > 3, again
    for old in (1, 2, 3):
        with pytest.raises(VersionConflict):
            ns.put("k", "stale", if_version=old)
    assert store.check().ok


def test_version_state_reports_the_row_and_the_floor(
    open_pg: Callable[..., clawstate.Store],
) -> None:
    """What the write-back cache predicts versions from (docs/backends.md)."""
    clock = FakeClock()
    store = open_pg(clock=clock)
    b = backend_of(store)
    ns = store.namespace("vs")
    assert b.version_state("vs", "k") == (None, 0)
    ns.put("k", 1)
    ns.put("k", 2)
    assert b.version_state("vs", "k") == (2, 0)
    ns.delete("k")
    assert b.version_state("vs", "k") == (None, 2)
    ns.put("t", 1, ttl=5)
    clock.advance(5)
    assert b.version_state("vs", "t") == (3, 2)  # expired, not yet swept: still stored
    store.sweep()
    assert b.version_state("vs", "t") == (None, 3)
    assert b.version_state("elsewhere", "k") == (None, 0)
